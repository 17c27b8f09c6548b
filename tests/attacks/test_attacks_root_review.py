"""Adversarial review of the root of trust (issue #13 review).

Each test stages one weakness found in review on the repository simulator
and asserts the client refuses it (and that the attacker's code never ran).
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import pytest
from conftest import evil_source
from simulator import RepositorySimulator, assert_never_ran, make_root

from secure_urlimport import SecureImportError, UntrustedKeyError, WrongTreeError, install
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport.api import registry

KEY_NAMES = ("root", "ci", "ci2", "ci3", "b_ci", "thief")


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def k() -> dict[str, PrivateKey]:
    return {name: PrivateKey.generate() for name in KEY_NAMES}


def fresh_import(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_key_the_root_lets_sign_only_tree_b_cannot_sign_a_release_of_tree_a_at_tree_a_url(
    sim, k, marker
):
    # Tree "a" needs 2 of its 3 CI keys; the shared root also lets b_ci alone sign tree "b".
    shared = make_root(
        1,
        root_keys=[k["root"]],
        signers=[k["ci"], k["ci2"], k["ci3"]],
        threshold=2,
        name="a",
        trees={"b": ([k["b_ci"]], 1)},
    )
    sim.put_root(1, shared)
    sim.publish({"mod.py": "RELEASE = 'a'\n"}, [k["ci"], k["ci2"]], name="a")
    # The consumer of tree a pins the root only, as README tells it to.
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert fresh_import("mod").RELEASE == "a"
    # b_ci leaks (or tree b's CI is simply less guarded): its holder signs a
    # release named "b" and serves it at tree a's URL.
    sim.publish({"mod.py": evil_source(marker)}, [k["b_ci"]], name="b", version=2)
    importlib.invalidate_caches()
    with pytest.raises(WrongTreeError, match="name='b'"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_fresh_consumer_of_tree_a_refuses_tree_b_signed_by_tree_b_key(sim, k, marker):
    shared = make_root(
        1, root_keys=[k["root"]], signers=[k["ci"]], name="a", trees={"b": ([k["b_ci"]], 1)}
    )
    sim.put_root(1, shared)
    sim.publish({"mod.py": evil_source(marker)}, [k["b_ci"]], name="b")
    with pytest.raises(WrongTreeError):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_gate_verify_root_agrees_with_the_client_on_tree_b_in_tree_a_directory(k, tmp_path):
    from datetime import UTC, datetime

    from simulator import sign_release

    from secure_urlimport._format.keys import TrustedKeys
    from secure_urlimport._format.paths import MANIFEST_NAME
    from secure_urlimport._format.root import root_file_name
    from secure_urlimport.gate.audit import audit_directory

    shared = make_root(
        1, root_keys=[k["root"]], signers=[k["ci"]], name="a", trees={"b": ([k["b_ci"]], 1)}
    )
    release = sign_release({"mod.py": "X = 1\n"}, [k["b_ci"]], name="b")
    (tmp_path / "mod.py").write_bytes(release.files["mod.py"])
    (tmp_path / MANIFEST_NAME).write_bytes(release.manifest_bytes)
    (tmp_path / root_file_name(1)).write_bytes(shared)
    pin = TrustedKeys.from_arg(k["root"].public.raw, 1)
    now = datetime.now(UTC)
    report = audit_directory(tmp_path, None, now=now, root_pin=pin)
    assert not report.ok
    assert "invalid-manifest" in [p.kind for p in report.problems]
    # Naming the tree is how its own consumers (name="b") and the gate accept it.
    assert audit_directory(tmp_path, None, now=now, root_pin=pin, name="b").ok


def _another_process_walks(sim, pin_key) -> int:
    """What a second consumer process sharing the cache directory does: walk
    the chain from the root stored on disk, and keep what it reaches there."""
    from datetime import UTC, datetime

    from secure_urlimport._client.root_walk import RootOfTrust
    from secure_urlimport._format.keys import TrustedKeys
    from secure_urlimport._store.state import StateStore

    state = registry.tree(sim.url).current._state
    other = RootOfTrust(
        sim.url,
        TrustedKeys.from_arg(pin_key.public.raw, 1),
        sim,
        StateStore(state.directory.parent),
    )
    return other.update(sim.url, now=datetime.now(UTC)).version


def test_a_process_behind_never_overwrites_a_newer_root_another_process_stored(sim, k, marker):
    # Root 2 adds root key root2 beside root; root 3 revokes root (it leaked).
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)  # process 1: root 1 in memory
    assert fresh_import("mod").RELEASE == 1
    sim.put_root(2, make_root(2, root_keys=[k["root"], k["ci2"]], signers=[k["ci"]]))
    sim.put_root(
        3, make_root(3, root_keys=[k["ci2"]], signers=[k["ci"]], sign_with=[k["root"], k["ci2"]])
    )
    # Process 2, sharing the cache directory, walks to root 3 and stores it.
    assert _another_process_walks(sim, k["root"]) == 3
    # Process 1's next fetch meets a CDN edge still answering 404 for root 3:
    # it reaches root 2, and must not write that over the stored root 3.
    sim.drop_root(3)
    importlib.invalidate_caches()
    assert fresh_import("mod").RELEASE == 1
    # The thief of the revoked root key forges a root 3 of his own.
    sim.put_root(
        3, make_root(3, root_keys=[k["root"]], signers=[k["thief"]], sign_with=[k["root"]])
    )
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]], version=2)
    # A process started now goes on from the stored root: root 3, never the forgery.
    registry.reset()
    sys.modules.pop("mod", None)
    with pytest.raises(UntrustedKeyError):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_root_lines_repeating_the_pinned_key_id_cost_one_check_per_version(
    sim, k, marker, monkeypatch
):
    import base64

    from secure_urlimport import UntrustedRootError
    from secure_urlimport._format.keys import PublicKey
    from secure_urlimport._format.root import root_file_name

    # A hostile server's roots 1..1024: 64 signature lines each, all naming the
    # pinned root key, none valid.  A fresh consumer reads every one of them.
    honest = make_root(1, root_keys=[k["thief"]], signers=[k["thief"]])
    magic, rest = honest.split(b"\n", 1)
    body = rest.split(b"\n\n", 1)[1]
    junk = b"signature " + k["root"].keyid.encode() + b" " + base64.b64encode(bytes(64))
    hostile = magic + b"\n" + b"\n".join([junk] * 64) + b"\n\n" + body
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    for version in range(1, 1025):
        sim.put(root_file_name(version), hostile)
    checks = []
    real = PublicKey.verifies
    monkeypatch.setattr(PublicKey, "verifies", lambda self, *a: checks.append(1) or real(self, *a))
    with pytest.raises(UntrustedRootError):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert len(checks) <= 1024  # one per version read, not 64
    assert_never_ran(marker, "mod")


def test_one_stolen_root_key_cannot_move_a_consumer_pinning_root_threshold_two(sim, k, marker):
    from secure_urlimport import UntrustedRootError

    three = [k["root"], k["ci2"], k["ci3"]]  # three root keys; the root lets 1 sign
    sim.put_root(1, make_root(1, root_keys=three, signers=[k["ci"]], root_threshold=1))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    # The consumer asks for 2 of the 3 root keys: one stolen key must not be enough.
    pin = [key.public.raw for key in three]
    # The thief holds one root key and signs root 2, and his release, alone.
    sim.put_root(
        2, make_root(2, root_keys=[k["root"]], signers=[k["thief"]], sign_with=[k["root"]])
    )
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]], version=2)
    with pytest.raises(UntrustedRootError, match="root_threshold"):
        install(sim.url, root=pin, root_threshold=2, fetcher=sim)
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_a_release_verified_under_an_older_root_does_not_stick_after_a_newer_root_revoked_its_key(
    sim, k, marker
):
    import threading
    import time

    from secure_urlimport._format.paths import MANIFEST_NAME

    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["thief"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["thief"]])  # the CI key, about to leak
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert fresh_import("mod").RELEASE == 1
    current = registry.tree(sim.url).current
    thief = sim.publish({"mod.py": evil_source(marker)}, [k["thief"]], version=2**63 - 1)
    legit = sim.publish({"mod.py": "RELEASE = 2\n"}, [k["ci"]], version=2)
    # Thread A walks the chain (root 1, the thief's key still listed), then its
    # manifest download is slow and brings the thief's release.
    fetch = sim.fetch_if_changed
    walked = threading.Event()

    def slow_for_a(url, **kw):
        if threading.current_thread().name == "A" and url.endswith(MANIFEST_NAME):
            walked.set()
            time.sleep(1.0)
            return thief.manifest_bytes, None
        return fetch(url, **kw)

    sim.fetch_if_changed = slow_for_a
    for path, data in thief.files.items():  # the thief's files, where A will look
        sim.put(path, data)
    current.mark_stale()
    a = threading.Thread(target=lambda: _quietly(current.get), name="A")
    a.start()
    assert walked.wait(5)
    # Meanwhile root 2 revokes the leaked key; thread B sees it and the legit release.
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.serve(legit)
    b = threading.Thread(target=lambda: _quietly(current.get), name="B")
    b.start()
    b.join(5)
    a.join(5)
    # From now on this process trusts root 2: the leaked key's release is not the
    # one in use, even where the thief also serves his files.
    sim.fetch_if_changed = fetch
    for path, data in thief.files.items():
        sim.put(path, data)
    assert current.roots.newest.version == 2
    assert current.get().version == 2
    with pytest.raises(SecureImportError, match=r"over the limit|changed after signing"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def _quietly(fn):
    """Run *fn* in a thread; its failure shows in the test's asserts."""
    with contextlib.suppress(Exception):
        fn()


def test_publisher_never_writes_a_root_every_client_refuses_for_its_signature_count():
    from datetime import UTC, datetime, timedelta

    from secure_urlimport.errors import ConfigurationError, SecureImportError
    from secure_urlimport.publish.rootedit import first_root, sign_root

    keys = [PrivateKey.generate() for _ in range(65)]
    signer = PrivateKey.generate()
    now = datetime.now(UTC)

    def root(threshold: int):
        return first_root(
            name="t",
            root_keys=[key.public for key in keys],
            root_threshold=threshold,
            signers=[signer.public],
            threshold=1,
            now=now,
            expires_in=timedelta(days=365),
        )

    # A root threshold no client could ever see met (a file carries at most 64 signatures).
    with pytest.raises(ConfigurationError, match="at most 64 signatures"):
        root(65)
    # 65 root keys signing one root: a file every consumer's walk would refuse.
    with pytest.raises(SecureImportError, match="more than 64 signatures"):
        sign_root(root(1), keys, old=None)
