"""The root of trust under attack (issue #13): consumers pin only the root keys.

Each test is named for the attack it stages on the repository simulator; each
attack asserts the error the client raises *and* that the attacker's module
never ran (it would leave the marker file behind).  Roots are built with the
project's own format (``_format/root.py``) and real Ed25519 keys.
"""

from __future__ import annotations

import importlib
import sys
import time
from datetime import timedelta

import pytest
from conftest import evil_source
from simulator import RepositorySimulator, assert_never_ran, make_root

from secure_urlimport import (
    ExpiredRootError,
    RollbackError,
    UntrustedKeyError,
    UntrustedRootError,
    WrongTreeError,
    install,
    install_path_hook,
    trust,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport._format.root import root_file_name
from secure_urlimport._trust.root_chain import MAX_ROOT_STEPS
from secure_urlimport.api import registry
from secure_urlimport.errors import ConfigurationError

KEY_NAMES = ("root", "root2", "root3", "ci", "ci2", "leaked", "thief", "b_ci")


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def k() -> dict[str, PrivateKey]:
    return {name: PrivateKey.generate() for name in KEY_NAMES}


def fresh_import(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def refetch() -> None:
    """What a consumer's next manifest fetch is: ``importlib.invalidate_caches()``."""
    importlib.invalidate_caches()


def restart() -> None:
    """A fresh start of the consumer: every tree and pin forgotten, the disk state kept."""
    registry.reset()
    for name in ("mod", "evil"):
        sys.modules.pop(name, None)


def published(sim, k, *, signer="ci", files=None, **release):
    """Root 1 (root key 'root', signer *signer*) and a release signed by *signer*."""
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k[signer]]))
    return sim.publish(files or {"mod.py": "RELEASE = 1\n"}, [k[signer]], **release)


# -- pinning the root only ----------------------------------------------------------


def test_consumer_pinning_only_the_root_key_imports_without_ever_holding_the_signing_key(sim, k):
    published(sim, k)
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1


def test_root_key_pinned_as_a_signing_key_is_refused_as_untrusted(sim, k, marker):
    published(sim, k, files={"mod.py": evil_source(marker)})
    with pytest.raises(UntrustedKeyError):
        install(sim.url, pubkey=k["root"].public.raw, fetcher=sim)
    assert_never_ran(marker, "mod")


def test_tree_without_a_root_is_refused_with_the_command_that_makes_one(sim, k, marker):
    sim.publish({"mod.py": evil_source(marker)}, [k["ci"]])
    with pytest.raises(UntrustedRootError, match="root init") as err:
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert sim.url_of(root_file_name(1)) in str(err.value)
    assert_never_ran(marker, "mod")


def test_pinning_both_pubkey_and_root_or_neither_is_a_configuration_error(sim, k):
    published(sim, k)
    with pytest.raises(ConfigurationError, match="exactly one of pubkey= and root="):
        install(sim.url, pubkey=k["ci"].public.raw, root=k["root"].public.raw, fetcher=sim)
    with pytest.raises(ConfigurationError, match="exactly one of pubkey= and root="):
        install(sim.url, fetcher=sim)
    with pytest.raises(ConfigurationError, match="root_threshold="):
        install(sim.url, root=k["root"].public.raw, threshold=2, fetcher=sim)
    assert sim.requests == []


def test_pubkey_positional_pin_keeps_working_unchanged(sim, k):
    published(sim, k)
    install(sim.url, k["ci"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1


def test_installing_the_same_root_pin_twice_returns_the_same_importer(sim, k):
    published(sim, k)
    first = install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert install(sim.url, root=k["root"].public.raw, fetcher=sim) is first
    assert f"root={k['root'].keyid}" in repr(first.tree)


def test_changing_the_pin_from_root_to_pubkey_installs_a_new_tree(sim, k):
    published(sim, k)
    first = install(sim.url, root=k["root"].public.raw, fetcher=sim)
    second = install(sim.url, pubkey=k["ci"].public.raw, fetcher=sim)
    assert second is not first
    assert "keys=" in repr(second.tree) and "root=" not in repr(second.tree)
    third = install(sim.url, root=[k["root"].public.raw, k["root2"].public.raw], fetcher=sim)
    assert third is not second


def test_trust_with_a_root_pin_makes_sys_path_entries_under_the_prefix_importable(sim, k):
    published(sim, k)
    trust(sim.url, root=k["root"].public.raw, fetcher=sim)
    install_path_hook()
    sys.path.append(sim.url)
    assert importlib.import_module("mod").RELEASE == 1


def test_trust_with_a_root_pin_refuses_a_sys_path_tree_signed_by_an_unlisted_key(sim, k, marker):
    published(sim, k, signer="thief", files={"mod.py": evil_source(marker)})
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    trust(sim.url, root=k["root"].public.raw, fetcher=sim)
    install_path_hook()
    sys.path.append(sim.url)
    with pytest.raises(UntrustedKeyError, match="root version 1 lists"):
        importlib.import_module("mod")
    assert_never_ran(marker, "mod")


# -- rotation and revocation without the consumer ---------------------------------------


def test_signing_key_rotation_is_picked_up_on_the_next_manifest_fetch_with_no_consumer_change(
    sim, k
):
    published(sim, k)
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci2"]]))
    sim.publish({"mod.py": "RELEASE = 2\n"}, [k["ci2"]])
    refetch()
    assert fresh_import("mod").RELEASE == 2


def test_release_by_a_new_signing_key_before_the_root_lists_it_is_refused(sim, k, marker):
    published(sim, k)
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    sim.publish({"mod.py": evil_source(marker)}, [k["ci2"]])
    refetch()
    with pytest.raises(UntrustedKeyError, match="root version 1 lists") as err:
        fresh_import("mod")
    assert "pinned key" not in str(err.value) and "Pin the publisher" not in str(err.value)
    assert_never_ran(marker, "mod")


def test_manifest_signed_by_a_key_the_current_root_no_longer_lists_is_refused(sim, k, marker):
    published(sim, k, signer="leaked")
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": evil_source(marker)}, [k["leaked"]])
    refetch()
    with pytest.raises(UntrustedKeyError, match="root version 2") as err:
        fresh_import("mod")
    assert k["leaked"].keyid in str(err.value) and k["ci"].keyid in str(err.value)
    assert "root update" in str(err.value)
    assert_never_ran(marker, "mod")


def test_thief_release_at_version_2_63_minus_1_is_refused_and_stops_counting_once_revoked(
    sim, k, marker
):
    published(sim, k, signer="leaked")
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    # The leak: before anyone notices, the thief's release is accepted (and recorded).
    sim.publish({"mod.py": "RELEASE = 'thief'\n"}, [k["leaked"]], version=2**63 - 1)
    refetch()
    assert fresh_import("mod").RELEASE == "thief"
    # The revocation: root 2 drops the leaked key; the thief keeps serving his releases.
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": evil_source(marker)}, [k["leaked"]], version=2**63 - 1)
    refetch()
    with pytest.raises(UntrustedKeyError):
        fresh_import("mod")
    assert_never_ran(marker, "mod")
    # The legitimate next release is accepted, in this process and after a restart.
    sim.publish({"mod.py": "RELEASE = 2\n"}, [k["ci"]], version=2)
    refetch()
    assert fresh_import("mod").RELEASE == 2
    restart()
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert fresh_import("mod").RELEASE == 2


# -- the chain itself under attack ------------------------------------------------------


def test_root_rollback_an_older_root_replayed_at_the_next_version_is_refused(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["leaked"]]))
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    # Root 1 (which lists the leaked key) served as root 3, with the thief's release.
    sim.put_root(3, sim.roots[1])
    sim.publish({"mod.py": evil_source(marker)}, [k["leaked"]], version=9)
    refetch()
    with pytest.raises(RollbackError, match="old root is being replayed"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_root_rollback_a_stored_newer_root_is_not_undone_by_hiding_it_after_a_restart(
    sim, k, marker
):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["leaked"]]))
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    restart()
    sim.drop_root(2)  # only root 1, which still lists the leaked key
    sim.publish({"mod.py": evil_source(marker)}, [k["leaked"]], version=9)
    sim.requests.clear()
    with pytest.raises(UntrustedKeyError, match="root version 2"):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert sim.requested(root_file_name(1)) == 0  # the walk started from the stored root
    assert_never_ran(marker, "mod")


def test_stored_root_survives_a_restart_so_a_warm_start_asks_only_for_the_next_version(sim, k):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    restart()
    sim.requests.clear()
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert fresh_import("mod").RELEASE == 1
    roots = [p for p in sim.requested_paths() if p.startswith("secure-urlimport.root.")]
    assert roots == [root_file_name(3)]


def test_root_freeze_an_expired_newest_root_is_refused(sim, k, marker):
    sim.put_root(
        1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]], expires_in=timedelta(days=-1))
    )
    sim.publish({"mod.py": evil_source(marker)}, [k["ci"]])
    with pytest.raises(ExpiredRootError, match="root update") as err:
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert sim.url_of(root_file_name(1)) in str(err.value)
    assert sim.requested(MANIFEST_NAME) == 0
    assert_never_ran(marker, "mod")


def test_root_freeze_twin_an_expired_intermediate_root_is_walked_past(sim, k):
    old = make_root(1, root_keys=[k["root"]], signers=[k["ci"]], expires_in=timedelta(days=-1))
    sim.put_root(1, old)
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1


def test_root_signed_by_too_few_keys_threshold_two_one_signs_is_refused(sim, k, marker):
    two = [k["root"], k["root2"]]
    sim.put_root(1, make_root(1, root_keys=two, root_threshold=2, signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=[key.public.raw for key in two], root_threshold=2, fetcher=sim)
    forged = make_root(
        2, root_keys=two, root_threshold=2, signers=[k["thief"]], sign_with=[k["root"]]
    )
    sim.put_root(2, forged)
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    refetch()
    with pytest.raises(UntrustedRootError, match="signed by 1 of the previous root's"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_root_signed_by_two_of_two_root_keys_is_accepted(sim, k):
    two = [k["root"], k["root2"]]
    sim.put_root(1, make_root(1, root_keys=two, root_threshold=2, signers=[k["ci"]]))
    sim.put_root(2, make_root(2, root_keys=two, root_threshold=2, signers=[k["ci2"]]))
    sim.publish({"mod.py": "RELEASE = 2\n"}, [k["ci2"]])
    install(sim.url, root=[key.public.raw for key in two], root_threshold=2, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 2


def test_forged_root_n_plus_1_signed_by_a_revoked_root_key_is_refused(sim, k, marker):
    both = [k["root"], k["root2"]]
    sim.put_root(1, make_root(1, root_keys=both, signers=[k["ci"]]))
    # Root 2 revokes root key 'root2' (say it leaked); 'root' and the new one sign.
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    forged = make_root(3, root_keys=[k["root2"]], signers=[k["thief"]])
    sim.put_root(3, forged)
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    refetch()
    with pytest.raises(UntrustedRootError, match="previous root's root keys"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_skipped_version_in_the_chain_is_refused(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    # Served as root 2, but its body says version 3: version 2 is skipped.
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["thief"]], body_version=3))
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    refetch()
    with pytest.raises(UntrustedRootError, match="may not skip a version"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_a_missing_version_ends_the_walk_so_later_roots_are_never_reached(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.put_root(3, make_root(3, root_keys=[k["root"]], signers=[k["thief"]]))
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    with pytest.raises(UntrustedKeyError, match="root version 1"):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert_never_ran(marker, "mod")


def _long_chain(sim, k, count: int) -> None:
    for version in range(1, count + 1):
        sim.put_root(version, make_root(version, root_keys=[k["root"]], signers=[k["ci"]]))


def test_chain_of_10000_roots_is_walked_in_bounded_steps_with_a_clear_error(sim, k, marker):
    _long_chain(sim, k, 10_000)
    sim.publish({"mod.py": evil_source(marker)}, [k["ci"]])
    started = time.perf_counter()
    with pytest.raises(UntrustedRootError, match=f"past {MAX_ROOT_STEPS} versions") as err:
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"walking {MAX_ROOT_STEPS} roots took {elapsed:.1f} s"
    roots = [p for p in sim.requested_paths() if p.startswith("secure-urlimport.root.")]
    assert len(roots) == MAX_ROOT_STEPS + 1
    assert "version 1024 reached and kept" in str(err.value)
    assert sim.requested(MANIFEST_NAME) == 0
    assert_never_ran(marker, "mod")


def test_chain_too_long_for_one_walk_is_caught_up_over_restarts_from_the_kept_progress(sim, k):
    _long_chain(sim, k, MAX_ROOT_STEPS + 50)
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    with pytest.raises(UntrustedRootError):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    restart()
    sim.requests.clear()
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    roots = [p for p in sim.requested_paths() if p.startswith("secure-urlimport.root.")]
    assert len(roots) == 51  # versions 1025..1074, then the 404 at 1075


def test_root_manifest_mix_from_two_trees_chain_and_manifest_of_tree_b_at_tree_a_url(
    sim, k, marker
):
    # One root key governs trees "a" and "b"; the consumer has walked a's chain.
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]], name="a"))
    sim.publish({"mod.py": "RELEASE = 'a'\n"}, [k["ci"]], name="a")
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == "a"
    # Tree b's root 2 and manifest served at tree a's URL.
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["b_ci"]], name="b"))
    sim.publish({"mod.py": evil_source(marker)}, [k["b_ci"]], name="b")
    refetch()
    with pytest.raises(UntrustedRootError, match="two different trees"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_root_manifest_mix_from_two_trees_manifest_of_tree_b_under_tree_a_root(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]], name="a"))
    sim.publish({"mod.py": evil_source(marker)}, [k["ci"]], name="b")
    with pytest.raises(WrongTreeError, match="does not govern"):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert_never_ran(marker, "mod")


def test_root_manifest_mix_from_two_trees_fresh_consumer_pinning_the_name_refuses_tree_b(
    sim, k, marker
):
    b_root = make_root(1, root_keys=[k["root"]], signers=[k["b_ci"]], name="b")
    sim.put_root(1, b_root)
    sim.publish({"mod.py": evil_source(marker)}, [k["b_ci"]], name="b")
    with pytest.raises(WrongTreeError):
        install(sim.url, root=k["root"].public.raw, name="a", fetcher=sim)
    assert_never_ran(marker, "mod")


def test_tree_listed_under_trees_of_a_shared_root_imports_with_its_own_signers(sim, k):
    shared = make_root(
        1, root_keys=[k["root"]], signers=[k["ci"]], name="a", trees={"b": ([k["b_ci"]], 1)}
    )
    sim.put_root(1, shared)
    sim.publish({"mod.py": "RELEASE = 'b'\n"}, [k["b_ci"]], name="b")
    install(sim.url, root=k["root"].public.raw, name="b", fetcher=sim)
    assert importlib.import_module("mod").RELEASE == "b"


def test_root_key_rotation_old_root_keys_alone_can_no_longer_sign_anything_accepted(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    # The transition: the old root key approves, the new one proves it exists.
    rotated = make_root(
        2, root_keys=[k["root3"]], signers=[k["ci"]], sign_with=[k["root"], k["root3"]]
    )
    sim.put_root(2, rotated)
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    # The old root key alone: a root 3 naming the thief, and a manifest it signs.
    sim.put_root(3, make_root(3, root_keys=[k["root"]], signers=[k["thief"]]))
    sim.publish({"mod.py": evil_source(marker)}, [k["root"]])
    refetch()
    with pytest.raises(UntrustedRootError, match="previous root's root keys"):
        fresh_import("mod")
    sim.drop_root(3)
    refetch()
    with pytest.raises(UntrustedKeyError, match="root version 2"):
        fresh_import("mod")
    assert_never_ran(marker, "mod")


def test_root_key_rotation_a_new_consumer_pinning_the_new_root_key_starts_at_its_first_root(sim, k):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    both = [k["root"], k["root3"]]
    sim.put_root(2, make_root(2, root_keys=[k["root3"]], signers=[k["ci"]], sign_with=both))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root3"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1


def test_root_key_rotation_signed_by_the_old_key_only_is_refused(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    # The new root keys never signed: they are not proven to exist.
    unproven = make_root(2, root_keys=[k["root3"]], signers=[k["thief"]], sign_with=[k["root"]])
    sim.put_root(2, unproven)
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    with pytest.raises(UntrustedRootError, match="its own root keys"):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert_never_ran(marker, "mod")


def test_root_served_by_a_failing_server_fails_the_fetch_like_a_manifest_download(sim, k, marker):
    published(sim, k, files={"mod.py": evil_source(marker)})

    def broken(n: int) -> bytes | None:
        from secure_urlimport.errors import HTTPStatusError

        error = HTTPStatusError("cannot download root: HTTP 503 Service Unavailable")
        error.status = 503
        raise error

    sim.respond(root_file_name(2), broken)
    from secure_urlimport.errors import DownloadError

    with pytest.raises(DownloadError, match="503"):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert_never_ran(marker, "mod")


MIRROR = "https://mirror.simulator.test/tree"


def test_mirror_serving_a_forged_root_chain_is_skipped_for_the_next_mirror_walked_on_its_own(
    sim, k, marker
):
    honest = make_root(1, root_keys=[k["root"]], signers=[k["ci"]])
    release = sim.publish({"mod.py": "RELEASE = 'mirror'\n"}, [k["ci"]])
    # The first URL serves a root 1 the thief signed, and the thief's release.
    sim.put_root(1, make_root(1, root_keys=[k["thief"]], signers=[k["thief"]]))
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    for path, data in {**release.everything(), root_file_name(1): honest}.items():
        sim.put_url(f"{MIRROR}/{path}", data)
    install([sim.url, MIRROR], root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == "mirror"
    assert f"{MIRROR}/{root_file_name(1)}" in sim.requests
    assert not marker.exists()


def test_forged_root_chain_without_a_mirror_to_fall_back_on_is_refused(sim, k, marker):
    sim.put_root(1, make_root(1, root_keys=[k["thief"]], signers=[k["thief"]]))
    sim.publish({"mod.py": evil_source(marker)}, [k["thief"]])
    with pytest.raises(UntrustedRootError, match="pinned root key"):
        install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert_never_ran(marker, "mod")


def test_child_forked_while_a_parent_thread_walks_the_root_chain_walks_on_its_own(sim, k):
    import threading

    from forking import in_child

    published(sim, k)
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci2"]]))
    sim.publish({"mod.py": "RELEASE = 2\n", "other.py": "RELEASE = 2\n"}, [k["ci2"]])
    sim.delay(root_file_name(3), 1.0)  # the parent's walk is caught in the act
    refetch()
    walker = threading.Thread(target=fresh_import, args=("mod",))
    walker.start()
    time.sleep(0.2)

    def child() -> int:
        # (Another module: CPython's per-module import lock of "mod" stays
        # held in the child by the parent's thread, whatever this library does.)
        sim.delay(root_file_name(3), 0.0)
        refetch()
        return fresh_import("other").RELEASE

    assert in_child(child, timeout=10) == 2
    walker.join()
    assert sys.modules["mod"].RELEASE == 2


def _stored_roots(tmp_path):
    return sorted((tmp_path / "client-state").rglob("*.root"))


def test_stored_root_that_no_longer_verifies_is_ignored_and_the_walk_starts_from_the_pin(
    sim, k, tmp_path, caplog
):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.put_root(2, make_root(2, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    (stored,) = _stored_roots(tmp_path)
    assert stored.read_bytes() == sim.roots[2] and stored.stat().st_mode & 0o077 == 0
    stored.write_bytes(sim.roots[2].replace(b'"version": 2', b'"version": 7'))
    restart()
    sim.requests.clear()
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert "ignoring the stored root" in caplog.text
    assert sim.requested(root_file_name(1)) == 1  # walked again from the pin
    assert stored.read_bytes() == sim.roots[2]  # and the good root stored again


def test_stored_root_is_filed_under_the_pin_so_a_changed_pin_starts_afresh(sim, k, tmp_path):
    both = make_root(1, root_keys=[k["root"], k["root2"]], signers=[k["ci"]])
    sim.put_root(1, both)
    sim.put_root(2, make_root(2, root_keys=[k["root"], k["root2"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    restart()
    sim.requests.clear()
    install(sim.url, root=k["root2"].public.raw, fetcher=sim)
    assert sim.requested(root_file_name(1)) == 1
    assert len(_stored_roots(tmp_path)) == 2


def test_stored_root_replaced_by_a_symlink_is_never_followed(sim, k, tmp_path):
    sim.put_root(1, make_root(1, root_keys=[k["root"]], signers=[k["ci"]]))
    sim.publish({"mod.py": "RELEASE = 1\n"}, [k["ci"]])
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    (stored,) = _stored_roots(tmp_path)
    elsewhere = tmp_path / "elsewhere.root"
    elsewhere.write_bytes(stored.read_bytes())
    stored.unlink()
    stored.symlink_to(elsewhere)
    restart()
    sim.requests.clear()
    install(sim.url, root=k["root"].public.raw, fetcher=sim)
    assert sim.requested(root_file_name(1)) == 1  # the link was not read
    assert not stored.is_symlink()  # replaced by the walk's own regular file
