"""Other users of the same machine (issue #11, item 8).

The neighbour is real: a forked child that drops to another user id with
os.setuid (the tests run as root; elsewhere they are skipped).  Under a loose
umask they try to delete the rollback record so an old release can be
replayed; they pre-create the cache directory in a shared place; and a user
id without $HOME or a passwd entry installs a tree.  Each ends in the right
error or in a working import, and the old release's code never runs.
"""

from __future__ import annotations

import importlib
import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import evil_source
from forking import NEIGHBOUR_UID, as_root, in_child
from simulator import RepositorySimulator, assert_never_ran

import secure_urlimport
from secure_urlimport import ConfigurationError, RollbackError, install, uninstall
from secure_urlimport._format.keys import PrivateKey

pytestmark = as_root

GOOD = "SIGNED = True\n"


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory of ours that every user can enter (pytest's tmp_path is 0700,
    which would keep the neighbour out whatever the library did)."""
    path = Path(tempfile.mkdtemp(prefix="secure-urlimport-neighbours-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def modes(root: Path) -> dict[str, str]:
    """Every directory under *root* (itself included) -> its mode, in octal."""
    found = [root, *(p for p in root.rglob("*") if p.is_dir())]
    return {p.relative_to(root).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in found}


def import_once(sim: RepositorySimulator, key: PrivateKey) -> None:
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert importlib.import_module("mod").SIGNED is True
    uninstall(sim.url)
    del sys.modules["mod"]


@pytest.mark.parametrize(
    ("umask", "group"),
    [(0o002, "the owner's group"), (0o000, "a group of its own")],
    ids=["umask-002-neighbour-in-our-group", "umask-000-any-neighbour"],
)
def test_under_a_loose_umask_a_neighbour_cannot_delete_the_rollback_record_to_replay(
    sim, key, marker, shared, monkeypatch, umask, group
):
    cache = shared / "cache" / "secure_urlimport"
    monkeypatch.setenv("SECURE_URLIMPORT_CACHE_DIR", str(cache))
    old = sim.publish({"mod.py": evil_source(marker)}, [key])  # an old, vulnerable release
    sim.publish({"mod.py": GOOD}, [key])
    previous = os.umask(umask)
    try:
        import_once(sim, key)  # release 2 is seen and recorded
    finally:
        os.umask(previous)
    made = modes(shared / "cache")  # "cache" did not exist either: made 0700 too
    records = list((cache / "state").iterdir())
    assert records

    def neighbour() -> list[str]:
        outcome = []
        for record in records:
            try:
                record.unlink()
                outcome.append("deleted")
            except OSError as exc:
                outcome.append(type(exc).__name__)
        return outcome

    gid = os.getgid() if group == "the owner's group" else None
    deleting = in_child(neighbour, uid=NEIGHBOUR_UID, gid=gid)
    sim.serve(old)  # the replay a deleted record would let through
    with pytest.raises(RollbackError):
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
        importlib.import_module("mod")  # would run the old release's code
    assert_never_ran(marker, "mod")
    assert deleting == ["PermissionError"] * len(records)
    assert {"secure_urlimport/state", "secure_urlimport/files"} <= set(made)
    assert set(made.values()) == {"0o700"}, made  # every directory, parents included


@pytest.mark.parametrize("style", ["install", "path hook"])
def test_cache_directory_pre_created_by_another_user_is_refused(
    sim, key, shared, monkeypatch, style
):
    tmp = shared / "tmp"  # like /tmp: anyone may create entries, sticky
    tmp.mkdir()
    tmp.chmod(0o1777)
    planted = tmp / "secure_urlimport"

    def neighbour() -> int:
        planted.mkdir()
        planted.chmod(0o777)  # welcoming: the victim can write into it
        return planted.stat().st_uid

    assert in_child(neighbour, uid=NEIGHBOUR_UID) == NEIGHBOUR_UID
    monkeypatch.delenv("SECURE_URLIMPORT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp))
    sim.publish({"mod.py": GOOD}, [key])
    with pytest.raises(ConfigurationError) as err:
        if style == "install":
            install(sim.url, pubkey=key.public.raw, fetcher=sim)
        else:
            secure_urlimport.trust(sim.url, pubkey=key.public.raw, fetcher=sim)
            secure_urlimport.install_path_hook()
            sys.path.append(sim.url)
            importlib.import_module("mod")
    message = str(err.value)
    assert f"belongs to user id {NEIGHBOUR_UID}" in message
    assert "SECURE_URLIMPORT_CACHE_DIR" in message
    assert list(planted.iterdir()) == []  # nothing of ours was written where they can reach
    assert sim.requests == []  # refused before the first request
    assert "mod" not in sys.modules


def test_cache_directory_that_is_another_users_symlink_to_ours_is_refused(
    sim, key, shared, monkeypatch, tmp_path
):
    """They plant /tmp/secure_urlimport -> a directory of ours: it passes every
    check of ours today, and they can point it elsewhere tomorrow."""
    tmp = shared / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    (ours / "state").mkdir(mode=0o700)
    planted = tmp / "secure_urlimport"

    def neighbour() -> int:
        planted.symlink_to(ours)
        return planted.lstat().st_uid

    assert in_child(neighbour, uid=NEIGHBOUR_UID) == NEIGHBOUR_UID
    monkeypatch.delenv("SECURE_URLIMPORT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp))
    sim.publish({"mod.py": GOOD}, [key])
    with pytest.raises(ConfigurationError) as err:
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert f"belongs to user id {NEIGHBOUR_UID}" in str(err.value)
    assert sim.requests == []
    assert "mod" not in sys.modules


@pytest.mark.parametrize("where", ["cache directory", "state directory"])
def test_own_directory_left_writable_by_others_is_refused_until_tightened(
    sim, key, monkeypatch, tmp_path, where
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SECURE_URLIMPORT_CACHE_DIR", str(cache))
    sim.publish({"mod.py": GOOD}, [key])
    import_once(sim, key)
    loose = cache if where == "cache directory" else cache / "state"
    loose.chmod(0o775)  # as an older version made it under umask 002
    with pytest.raises(ConfigurationError) as err:
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert "other users can write it (mode 0775)" in str(err.value)
    assert f"chmod 700 {loose}" in str(err.value)
    loose.chmod(0o700)  # the fix the message names
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert importlib.import_module("mod").SIGNED is True


def test_without_home_or_a_passwd_entry_install_fails_with_a_configuration_error(
    sim, key, shared, monkeypatch
):
    with pytest.raises(KeyError):
        pwd.getpwuid(NEIGHBOUR_UID)  # the test needs a user id nobody defined
    for name in ("HOME", "XDG_CACHE_HOME", "SECURE_URLIMPORT_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    sim.publish({"mod.py": GOOD}, [key])
    own = shared / "own"
    own.mkdir(mode=0o700)
    os.chown(own, NEIGHBOUR_UID, NEIGHBOUR_UID)

    def container_user() -> tuple[str, str, bool]:
        with pytest.raises(ConfigurationError) as err:  # was a RuntimeError
            install(sim.url, pubkey=key.public.raw, fetcher=sim)
        os.environ["SECURE_URLIMPORT_CACHE_DIR"] = str(own / "cache")  # the fix it names
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
        return type(err.value).__name__, str(err.value), importlib.import_module("mod").SIGNED

    kind, message, signed = in_child(container_user, uid=NEIGHBOUR_UID)
    assert kind == "ConfigurationError"
    assert "$HOME is not set" in message
    assert "SECURE_URLIMPORT_CACHE_DIR" in message
    assert signed is True
    assert modes(own / "cache")["."] == "0o700"
