"""Rollback, freeze and fast-forward attacks, and edits of the rollback state on disk.

The rollback state is trusted like ``~/.ssh/known_hosts`` (SECURITY.md): the
tests at the end document what a local edit does, and that garbage never
crashes an import.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO, evil_source, write_tree
from simulator import RepositorySimulator, assert_never_ran

from secure_urlimport import (
    ExpiredManifestError,
    RollbackError,
    TamperedFileError,
    UntrustedKeyError,
    install,
    uninstall,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.manifest import MAX_VERSION, format_time
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.publish.signing import sign_tree


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def state_files() -> list[Path]:
    return sorted((Path(os.environ["SECURE_URLIMPORT_CACHE_DIR"]) / "state").glob("*.json"))


# -- rollback ----------------------------------------------------------------------


def test_older_release_after_newer_is_rejected_within_a_process(sim, key, marker):
    # Release 1 had a hole (played here by the marker); release 2 fixed it.
    old = sim.publish({"mod.py": evil_source(marker), "extra.py": evil_source(marker)}, [key])
    sim.publish({"mod.py": "FIXED = True\n", "extra.py": "FIXED = True\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    mod = importlib.import_module("mod")
    sim.serve(old)
    importlib.invalidate_caches()  # the next lookup fetches the manifest again
    with pytest.raises(RollbackError) as err:
        importlib.import_module("extra")
    assert type(err.value) is RollbackError
    assert "version 1" in str(err.value) and "version 2" in str(err.value)
    with pytest.raises(RollbackError):
        importlib.reload(mod)
    assert mod.FIXED
    # A fresh install in the same process reads the recorded state.
    uninstall(sim.url)
    with pytest.raises(RollbackError):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert_never_ran(marker, "extra")


def test_older_release_is_rejected_within_a_process_even_if_state_cannot_be_written(
    sim, key, marker, tmp_path, monkeypatch, caplog
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("SECURE_URLIMPORT_CACHE_DIR", str(blocker))
    old = sim.publish({"mod.py": "", "extra.py": evil_source(marker)}, [key])
    sim.publish({"mod.py": "", "extra.py": "FIXED = True\n"}, [key])
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert "cannot record rollback state" in caplog.text
    importlib.import_module("mod")
    sim.serve(old)
    importlib.invalidate_caches()
    with pytest.raises(RollbackError):
        importlib.import_module("extra")
    assert_never_ran(marker, "extra")


CLIENT = """\
import sys
import secure_urlimport
url, pub, ca = sys.argv[1:4]
try:
    secure_urlimport.install(url, pubkey=pub, cafile=ca)
    import mod
    print("imported release", mod.RELEASE)
except secure_urlimport.SecureImportError as exc:
    print(type(exc).__name__, exc)
"""


def test_older_release_after_newer_is_rejected_across_process_restarts(
    tmp_path, serve, tls, publisher, marker
):
    releases = {}
    for version, source in ((1, evil_source(marker) + "RELEASE = 1\n"), (2, "RELEASE = 2\n")):
        root = write_tree(tmp_path / f"release-{version}", {"mod.py": source})
        sign_tree(root, [publisher.key], version=version)
        releases[version] = root
    served = tmp_path / "served"
    shutil.copytree(releases[2], served)
    server = serve(served)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SECURE_URLIMPORT_CACHE_DIR": str(tmp_path / "shared-cache"),
    }

    def client(cache: str | None = None) -> str:
        run_env = env if cache is None else {**env, "SECURE_URLIMPORT_CACHE_DIR": cache}
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, server.url, str(publisher.pub), tls.cafile],
            capture_output=True,
            text=True,
            env=run_env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert client() == "imported release 2\n"
    for name in ("mod.py", MANIFEST_NAME):  # the server now replays release 1
        shutil.copy2(releases[1] / name, served / name)
    out = client()
    assert out.startswith("RollbackError "), out
    assert "version 1" in out and "version 2" in out
    assert not marker.exists()
    # The twin: the record is what protects; a client without it accepts release 1.
    assert client(cache=str(tmp_path / "fresh-cache")) == "imported release 1\n"
    assert marker.exists()


def test_older_release_signed_by_a_still_pinned_key_is_refused_after_the_first_key_is_dropped(
    tmp_path, serve, tls, marker, monkeypatch
):
    # Releases 1 (with the hole, played by the marker) and 2 are both signed
    # by keys A and B.  A client pinning A+B sees release 2: the record of
    # *every* valid signer must rise to 2, not only the first one that met
    # threshold 1.  The client then drops A (rotation, or A leaked) and the
    # server replays release 1, still validly signed by B.
    a, b = PrivateKey.generate(), PrivateKey.generate()
    releases = {}
    for version, source in ((1, evil_source(marker) + "RELEASE = 1\n"), (2, "RELEASE = 2\n")):
        root = write_tree(tmp_path / f"release-{version}", {"mod.py": source})
        sign_tree(root, [a, b], version=version)
        releases[version] = root
    served = tmp_path / "served"
    shutil.copytree(releases[2], served)
    server = serve(served)
    install(server.url, pubkey=[a.public.raw, b.public.raw], cafile=tls.cafile)
    assert importlib.import_module("mod").RELEASE == 2
    uninstall(server.url)
    [path] = state_files()
    recorded = json.loads(path.read_text())["keys"]
    assert {k: r["version"] for k, r in recorded.items()} == {a.keyid: 2, b.keyid: 2}
    sys.modules.pop("mod")
    shutil.copytree(releases[1], served, dirs_exist_ok=True)  # the replay
    with pytest.raises(RollbackError) as err:
        install(server.url, pubkey=b.public.raw, cafile=tls.cafile)
    assert type(err.value) is RollbackError
    assert "version 1" in str(err.value) and "version 2" in str(err.value)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mod")
    assert_never_ran(marker, "mod")
    # The twin: B's record is what protects; without it release 1 is accepted.
    monkeypatch.setenv("SECURE_URLIMPORT_CACHE_DIR", str(tmp_path / "fresh-cache"))
    install(server.url, pubkey=b.public.raw, cafile=tls.cafile)
    assert importlib.import_module("mod").RELEASE == 1
    assert marker.exists()


def test_same_version_with_different_content_is_rejected(sim, key, marker):
    sim.publish({"mod.py": "", "extra.py": "SAFE = True\n"}, [key], version=5)
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.import_module("mod")
    # Release 5 rewritten: validly signed, same version, other content.
    sim.publish({"mod.py": "", "extra.py": evil_source(marker)}, [key], version=5)
    importlib.invalidate_caches()
    with pytest.raises(RollbackError) as err:
        importlib.import_module("extra")
    assert type(err.value) is RollbackError
    assert "version 5 differs" in str(err.value) and "higher --version" in str(err.value)
    uninstall(sim.url)
    with pytest.raises(RollbackError):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert_never_ran(marker, "extra")


# -- freeze --------------------------------------------------------------------------


def test_expired_manifest_is_rejected_saying_when_and_that_the_publisher_must_resign(
    sim, key, marker
):
    release = sim.publish(
        {"evil.py": evil_source(marker)},
        [key],
        now=datetime.now(UTC) - timedelta(days=3),
        expires_in=timedelta(days=1),
    )
    with pytest.raises(ExpiredManifestError) as err:
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    message = str(err.value)
    assert type(err.value) is ExpiredManifestError
    assert f"expired at {format_time(release.manifest.expires)}" in message
    assert "the publisher must re-sign" in message
    assert sim.requested_paths() == [MANIFEST_NAME]
    assert_never_ran(marker, "evil")


def test_manifest_that_expires_while_installed_is_rejected_from_then_on(sim, key, marker):
    # Valid for one or two more seconds, then frozen: the server keeps serving it.
    release = sim.publish(
        {"early.py": "", "late.py": evil_source(marker)},
        [key],
        now=datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=2),
        expires_in=timedelta(days=1),
    )
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.import_module("early")
    time.sleep(max(0.0, (release.manifest.expires - datetime.now(UTC)).total_seconds()) + 0.05)
    with pytest.raises(ExpiredManifestError) as err:
        importlib.import_module("late")
    assert type(err.value) is ExpiredManifestError and err.value.name == "late"
    assert "re-sign" in str(err.value)
    assert_never_ran(marker, "late")


# -- fast-forward ----------------------------------------------------------------------


def test_leaked_key_fast_forward_to_max_version_is_survived_by_rotating_keys(sim, key):
    leaked = key
    sim.publish({"mod.py": "RELEASE = 'leaked'\n"}, [leaked], version=MAX_VERSION)
    install(sim.url, pubkey=leaked.public.raw, fetcher=sim).uninstall()  # the client saw it
    # The publisher rotates to a new key and starts again at version 1.
    new = PrivateKey.generate()
    sim.publish({"mod.py": "RELEASE = 'rotated'\n"}, [new], version=1)
    # Twins: a client still pinning the leaked key is stuck (by design) ...
    with pytest.raises(RollbackError) as err:
        install(sim.url, pubkey=[leaked.public.raw, new.public.raw], fetcher=sim)
    assert str(MAX_VERSION) in str(err.value)
    with pytest.raises(UntrustedKeyError):
        install(sim.url, pubkey=leaked.public.raw, fetcher=sim)
    # ... and one that pins only the new key is not.
    install(sim.url, pubkey=new.public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == "rotated"


# -- the rollback state on disk (trusted like known_hosts) ---------------------------------


def test_state_edited_to_a_lower_version_reopens_rollback_but_never_unsigned_code(sim, key, marker):
    first = sim.publish({"mod.py": "RELEASE = 1\n", "other.py": "SAFE = 1\n"}, [key])
    for release in (2, 3):
        sim.publish({"mod.py": f"RELEASE = {release}\n", "other.py": "SAFE = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim).uninstall()
    [path] = state_files()
    state = json.loads(path.read_text())
    assert state["keys"][key.keyid]["version"] == 3
    # A local user (or malware) lowers the record, as editing known_hosts would.
    state["keys"][key.keyid] = {"version": 1, "digest": first.manifest.digest}
    path.write_text(json.dumps(state))
    sim.serve(first)
    # ... but it re-opens rollback only to releases the key signed: bytes still verify.
    sim.put("evil.py", evil_source(marker))
    sim.put("other.py", "SAFE = 0\n")
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1  # documented: the state is trusted
    with pytest.raises(TamperedFileError):
        importlib.import_module("other")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evil")
    assert_never_ran(marker, "other", "evil")


GARBAGE_STATE = {
    "empty": b"",
    "not-utf8": b"\xff\xfe\x00garbage",
    "not-json": b"{{{{",
    "json-list": b"[]",
    "keys-not-an-object": b'{"keys": []}',
    "record-not-an-object": b'{"keys": {"KEYID": 5}}',
    "record-missing-fields": b'{"keys": {"KEYID": {}}}',
    "version-not-a-number": b'{"keys": {"KEYID": {"version": "v9", "digest": "x"}}}',
    "version-with-5000-digits": b'{"keys": {"KEYID": {"version": 1'
    + b"0" * 5000
    + b', "digest": "x"}}}',
    "version-nan": b'{"keys": {"KEYID": {"version": NaN, "digest": "x"}}}',
    "version-infinite": b'{"keys": {"KEYID": {"version": 1e400, "digest": "x"}}}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "a-directory": b"",
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE_STATE))
def test_garbage_rollback_state_never_crashes_an_import(sim, key, garbage, caplog):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim).uninstall()
    [path] = state_files()
    path.unlink()
    if garbage == "a-directory":
        path.mkdir()
    else:
        path.write_bytes(GARBAGE_STATE[garbage].replace(b"KEYID", key.keyid.encode()))
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
        assert importlib.import_module("mod").RELEASE == 2
    assert "rollback state" in caplog.text  # treated as missing, and said so
    if garbage != "a-directory":  # replaced by a good record
        assert json.loads(path.read_text())["keys"][key.keyid]["version"] == 2
