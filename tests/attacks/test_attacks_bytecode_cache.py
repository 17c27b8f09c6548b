"""The bytecode cache: only code this library compiled from verified source runs.

A warm start loads code objects from ``<cache dir>/bytecode`` instead of
compiling again (bytecode.py).  Each entry is bound to the interpreter, the
module's URL and the SHA-256 the verified manifest lists, and carries an
HMAC under a key only this user can read.  Here a neighbour edits, forges,
moves and replays entries and tampers with the key; each time the import
runs the signed code (compiled from verified source) or fails closed, and
the attacker's code never runs.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import logging
import marshal
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest
from conftest import REPO, evil_source, write_tree
from simulator import (
    IMPORT_PKG_MOD,
    RepositorySimulator,
    assert_never_ran,
    cache_root,
    child_env,
    compose,
    run_fresh,
)

import secure_urlimport._import.loader
import secure_urlimport._trust.verify
import secure_urlimport.api
from secure_urlimport import BadSignatureError, Config, SecureImportError, install, uninstall
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._store.bytecode import (
    KEY_MAGIC,
    KEY_NAME,
    BytecodeCache,
    load_or_create_key,
    pack_name,
    slot_id,
)

GOOD = "SIGNED = True\n\ndef fail():\n    raise RuntimeError('signed line')\n"
PACK_MAGIC = b"SUIPACK2\n"  # the format, as SECURITY.md spells it
HEADER = 32 + 32 + 32 + 8  # slot digest, vouch, MAC, length


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(autouse=True)
def writes_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo conftest's -B: these tests are about the bytecode cache."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the loader compiles source for, in order."""
    seen: list[str] = []

    def counting(source: bytes, filename: str, *args: object, **kwargs: object) -> object:
        seen.append(filename)
        return compile(source, filename, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(secure_urlimport._import.loader, "compile", counting, raising=False)
    return seen


def warm(sim: RepositorySimulator, key: PrivateKey, *names: str) -> None:
    """A first "process": import *names*, then exit (uninstall writes the pack)."""
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    for name in names:
        importlib.import_module(name)
    uninstall(sim.url)
    for name in names:
        sys.modules.pop(name, None)


def next_run(sim: RepositorySimulator, key: PrivateKey) -> None:
    install(sim.url, pubkey=key.public.raw, fetcher=sim)


def writing_interpreter_env(cache: Path) -> dict[str, str]:
    """The environment of a fresh interpreter that writes bytecode (no -B)."""
    env = child_env(cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def import_in_two_runs(sim: RepositorySimulator, key: PrivateKey, config: Config) -> None:
    """Import mod.py in two "processes" with *config*, checking it each time."""
    for _ in range(2):
        install(sim.url, pubkey=key.public.raw, fetcher=sim, config=config)
        assert importlib.import_module("mod").SIGNED is True
        uninstall(sim.url)
        sys.modules.pop("mod", None)


# -- the pack, read and written as SECURITY.md documents it ----------------------------

Pack = dict[bytes, tuple[bytes, bytes, bytes]]  # SHA-256(slot id) -> (vouch, MAC, marshal data)


def pack_path(sim: RepositorySimulator) -> Path:
    return cache_root() / "bytecode" / pack_name(sim.url)


def read_pack(sim: RepositorySimulator) -> Pack:
    blob = pack_path(sim).read_bytes()
    assert blob.startswith(PACK_MAGIC)
    entries: Pack = {}
    offset = len(PACK_MAGIC)
    while offset < len(blob):
        digest, vouch = blob[offset : offset + 32], blob[offset + 32 : offset + 64]
        mac = blob[offset + 64 : offset + 96]
        size = int.from_bytes(blob[offset + 96 : offset + HEADER], "big")
        entries[digest] = (vouch, mac, blob[offset + HEADER : offset + HEADER + size])
        offset += HEADER + size
    return entries


def write_pack(sim: RepositorySimulator, entries: Pack) -> None:
    pack_path(sim).write_bytes(
        PACK_MAGIC
        + b"".join(
            digest + vouch + mac + len(data).to_bytes(8, "big") + data
            for digest, (vouch, mac, data) in entries.items()
        )
    )


def slot_of(sim: RepositorySimulator, relpath: str, source: str) -> bytes:
    return slot_id(sim.url_of(relpath), hashlib.sha256(source.encode()).hexdigest())


def digest_of(sim: RepositorySimulator, relpath: str, source: str) -> bytes:
    return hashlib.sha256(slot_of(sim, relpath, source)).digest()


def forged(
    mac_key: bytes, slot: bytes, source: str, filename: str, vouch: bytes = b"v" * 32
) -> tuple[bytes, bytes, bytes]:
    data = marshal.dumps(compile(source, filename, "exec"))
    return vouch, hmac.new(mac_key, slot + b"\0" + vouch + data, hashlib.sha256).digest(), data


# -- it works, and is a real cache --------------------------------------------------


def test_warm_start_runs_cached_bytecode_without_compiling(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    assert compiles == [sim.url_of("mod.py")]
    assert list(read_pack(sim)) == [digest_of(sim, "mod.py", GOOD)]
    next_run(sim, key)
    mod = importlib.import_module("mod")
    assert mod.SIGNED is True
    assert compiles == [sim.url_of("mod.py")]  # not compiled a second time
    # Source and tracebacks still come from verified bytes.
    assert inspect.getsource(mod) == GOOD
    with pytest.raises(RuntimeError) as err:
        mod.fail()
    assert "raise RuntimeError('signed line')" in "".join(traceback.format_tb(err.tb))


def test_cache_key_file_is_private_to_this_user(sim, key):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    info = (cache_root() / KEY_NAME).stat()
    assert info.st_mode & 0o777 == 0o600
    assert info.st_uid == os.getuid()
    assert info.st_size == len(KEY_MAGIC) + 32


def test_nothing_is_written_under_dont_write_bytecode(sim, key, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    assert not (cache_root() / "bytecode").exists()


def test_bytecode_cache_can_be_turned_off(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    config = Config(bytecode_cache=False)
    import_in_two_runs(sim, key, config)
    assert len(compiles) == 2
    assert not (cache_root() / "bytecode").exists()
    assert not (cache_root() / KEY_NAME).exists()


def test_new_release_is_compiled_and_the_pack_keeps_only_live_code(sim, key, compiles):
    sim.publish({"a.py": "A = 1\n", "b.py": "RELEASE = 1\n"}, [key])
    warm(sim, key, "a", "b")
    sim.publish({"a.py": "A = 1\n", "b.py": "RELEASE = 2\n"}, [key])
    next_run(sim, key)
    assert importlib.import_module("b").RELEASE == 2
    assert len(compiles) == 3
    uninstall(sim.url)
    # a.py is unchanged and still listed, so its code is kept though this run
    # did not import it; release 1's b.py is gone.
    assert set(read_pack(sim)) == {
        digest_of(sim, "a.py", "A = 1\n"),
        digest_of(sim, "b.py", "RELEASE = 2\n"),
    }


def test_bytecode_is_bound_to_the_interpreter(sim, monkeypatch):
    sha = "ab" * 32
    ours = slot_id(sim.url_of("mod.py"), sha)
    name = pack_name(sim.url)
    monkeypatch.setattr(importlib.util, "MAGIC_NUMBER", b"\x00\x00\r\n")
    assert slot_id(sim.url_of("mod.py"), sha) != ours
    monkeypatch.undo()
    monkeypatch.setattr(sys, "flags", type("Flags", (), {"optimize": 2})())
    assert slot_id(sim.url_of("mod.py"), sha) != ours
    assert pack_name(sim.url) != name
    monkeypatch.undo()
    monkeypatch.setattr(sys.implementation, "cache_tag", "cpython-399")
    assert slot_id(sim.url_of("mod.py"), sha) != ours
    assert pack_name(sim.url) != name


# -- attacks on the entries -----------------------------------------------------------


def test_edited_bytecode_fails_its_mac_and_never_runs(sim, key, marker, caplog, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    pack = read_pack(sim)
    [(digest, (vouch, mac, _))] = pack.items()
    evil = marshal.dumps(compile(evil_source(marker), sim.url_of("mod.py"), "exec"))
    write_pack(sim, {digest: (vouch, mac, evil)})  # the old MAC, the attacker's code
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "discarding the cached bytecode" in caplog.text
    assert len(compiles) == 2  # compiled again from the verified source
    uninstall(sim.url)
    assert read_pack(sim) == pack  # and the cache healed
    assert_never_ran(marker)


def test_bytecode_forged_with_a_guessed_key_never_runs(sim, key, marker, caplog):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    slot = slot_of(sim, "mod.py", GOOD)
    write_pack(
        sim,
        {
            hashlib.sha256(slot).digest(): forged(
                b"\0" * 32, slot, evil_source(marker), sim.url_of("mod.py")
            )
        },
    )
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "discarding the cached bytecode" in caplog.text
    assert_never_ran(marker)


def test_bytecode_of_another_module_moved_into_its_slot_never_runs(sim, key, caplog):
    other = "OTHER = True\n"  # signed, and validly cached, but as other.py
    sim.publish({"mod.py": GOOD, "other.py": other}, [key])
    warm(sim, key, "mod", "other")
    pack = read_pack(sim)
    pack[digest_of(sim, "mod.py", GOOD)] = pack[digest_of(sim, "other.py", other)]
    write_pack(sim, pack)
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        mod = importlib.import_module("mod")
    assert mod.SIGNED is True
    assert not hasattr(mod, "OTHER")
    assert "discarding the cached bytecode" in caplog.text


def test_bytecode_of_an_older_release_replayed_for_the_new_one_never_runs(sim, key, caplog):
    old, new = "RELEASE = 1\n", "RELEASE = 2\n"
    sim.publish({"mod.py": old}, [key])
    warm(sim, key, "mod")
    stale = read_pack(sim)[digest_of(sim, "mod.py", old)]
    sim.publish({"mod.py": new}, [key])
    write_pack(sim, {digest_of(sim, "mod.py", new): stale})
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").RELEASE == 2
    assert "discarding the cached bytecode" in caplog.text


def test_truncated_pack_is_compiled_again(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    path = pack_path(sim)
    path.write_bytes(path.read_bytes()[:-10])  # a torn write, or a full disk
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True
    assert len(compiles) == 2


def test_fifo_in_place_of_the_pack_never_blocks_the_import(sim, key):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    pack_path(sim).unlink()
    os.mkfifo(pack_path(sim))
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True


# -- attacks on the key -----------------------------------------------------------------


def plant_known_key_and_forgery(sim: RepositorySimulator, marker: Path) -> bytes:
    """A pack whose mod.py entry is forged with the attacker's own key, which is returned."""
    known = b"k" * 32
    slot = slot_of(sim, "mod.py", GOOD)
    write_pack(
        sim,
        {
            hashlib.sha256(slot).digest(): forged(
                known, slot, evil_source(marker), sim.url_of("mod.py")
            )
        },
    )
    return KEY_MAGIC + known


def test_key_readable_by_others_turns_the_cache_off(sim, key, marker, caplog, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    key_path = cache_root() / KEY_NAME
    key_path.write_bytes(plant_known_key_and_forgery(sim, marker))
    key_path.chmod(0o644)  # e.g. written by a tool with a loose umask
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "not using the bytecode cache" in caplog.text
    assert "mode 0644" in caplog.text
    assert len(compiles) == 2
    assert_never_ran(marker)


def test_symlinked_key_is_refused(sim, key, marker, caplog):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    planted = cache_root() / "attacker-key"
    planted.write_bytes(plant_known_key_and_forgery(sim, marker))
    planted.chmod(0o600)
    key_path = cache_root() / KEY_NAME
    key_path.unlink()
    key_path.symlink_to(planted)
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "is a symbolic link" in caplog.text
    assert_never_ran(marker)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user needs root",
)
def test_key_owned_by_another_user_is_refused(sim, key, marker, caplog):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    key_path = cache_root() / KEY_NAME
    key_path.write_bytes(plant_known_key_and_forgery(sim, marker))
    os.chown(key_path, 54321, 54321)  # the neighbour's own file, mode 0600
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "belongs to user id 54321" in caplog.text
    assert_never_ran(marker)


def test_key_of_the_wrong_length_turns_the_cache_off(sim, key, caplog, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    (cache_root() / KEY_NAME).write_bytes(KEY_MAGIC + b"short")
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "is not a bytecode key written by secure_urlimport" in caplog.text
    assert len(compiles) == 2


def test_key_without_the_header_is_refused_whatever_its_length(sim, key, marker, caplog):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    known = plant_known_key_and_forgery(sim, marker)[len(KEY_MAGIC) :]
    (cache_root() / KEY_NAME).write_bytes(b"x" * len(KEY_MAGIC) + known)  # right length
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "is not a bytecode key written by secure_urlimport" in caplog.text
    assert_never_ran(marker)


def test_our_own_cached_file_renamed_onto_the_key_is_refused(sim, key, marker, caplog):
    known = b"k" * 32  # a public 32-byte data file, verified and cached by us
    sim.publish({"mod.py": GOOD, "data.txt": known}, [key])
    warm(sim, key, "mod")
    slot = slot_of(sim, "mod.py", GOOD)
    write_pack(
        sim,
        {
            hashlib.sha256(slot).digest(): forged(
                known, slot, evil_source(marker), sim.url_of("mod.py")
            )
        },
    )
    digest = hashlib.sha256(known).hexdigest()
    ours = cache_root() / "files" / digest[:2] / digest[2:]
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_bytes(known)  # as the client's own cache writes it: ours, mode 0600
    ours.chmod(0o600)
    os.replace(ours, cache_root() / KEY_NAME)  # the neighbour's rename
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "is not a bytecode key written by secure_urlimport" in caplog.text
    assert_never_ran(marker)


def test_cache_directory_writable_by_others_turns_the_cache_off(sim, key, caplog):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    # install() refuses such a directory (privatedir.py); here it turns
    # writable later, while a process reads the key.
    cache_root().chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert load_or_create_key(cache_root() / KEY_NAME) is None
    assert "can be written by others" in caplog.text


def test_no_key_is_made_under_dont_write_bytecode(sim, key, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    assert not (cache_root() / KEY_NAME).exists()


# -- the cache stands in for a signature check only of exactly the same inputs -------------


def test_cached_code_of_release_n_with_its_entry_inside_release_n_plus_1_never_runs(
    sim, key, marker
):
    v1_source = evil_source(marker) + "V = 1\n"
    old = sim.publish({"mod.py": v1_source, "other.py": ""}, [key])
    warm(sim, key, "mod")  # release 1 is imported and its code cached
    marker.unlink()
    # Release 2's body, signed by the pinned key, carries release 1's entry
    # (hash, size and per-file signature) for mod.py: the SHA-256 finds the
    # cached code, but the per-file signature is for release 1.
    sim.serve(
        compose(
            {"mod.py": v1_source, "other.py": ""},
            version=2,
            manifest_keys=[key],
            entries={"mod.py": old.entry("mod.py")},
        )
    )
    next_run(sim, key)
    with pytest.raises(BadSignatureError) as err:
        importlib.import_module("mod")
    assert type(err.value) is BadSignatureError
    assert_never_ran(marker, "mod")


def test_cached_code_signed_by_too_few_keys_for_a_stricter_pin_never_runs(sim, marker):
    k1, k2, k3 = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    evil = evil_source(marker)
    sim.publish({"evil.py": evil}, [k1])
    warm(sim, k1, "evil")  # a k1-only pin imported it, and cached its code
    marker.unlink()
    sim.serve(compose({"evil.py": evil}, version=2, manifest_keys=[k1, k2], file_keys=[k1]))
    install(sim.url, pubkey=[k1.public.raw, k2.public.raw, k3.public.raw], threshold=2, fetcher=sim)
    with pytest.raises(SecureImportError) as err:
        importlib.import_module("evil")
    assert "threshold" in str(err.value) or "2" in str(err.value)
    assert_never_ran(marker, "evil")


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs whose per-file signatures the loader checks on a cache hit."""
    seen: list[str] = []
    real = secure_urlimport._trust.verify.verify_file_signatures

    def counting(entry, manifest, trusted, *, url):  # type: ignore[no-untyped-def]
        seen.append(url)
        return real(entry, manifest, trusted, url=url)

    monkeypatch.setattr(secure_urlimport._import.loader, "verify_file_signatures", counting)
    return seen


def test_a_hit_whose_recorded_check_still_vouches_needs_no_signature_check(
    sim, key, compiles, signature_checks
):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True
    assert compiles == [sim.url_of("mod.py")]
    assert signature_checks == []  # same keys, threshold, signatures and message


def test_a_hit_recorded_under_other_keys_is_checked_again_then_vouched(
    sim, key, compiles, signature_checks
):
    other = PrivateKey.generate()
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")  # vouched for a pin of `key` alone
    for expected in ([sim.url_of("mod.py")], []):
        install(sim.url, pubkey=[key.public.raw, other.public.raw], fetcher=sim)
        assert importlib.import_module("mod").SIGNED is True
        assert signature_checks == expected  # checked once, then vouched for these keys
        uninstall(sim.url)
        sys.modules.pop("mod", None)
        signature_checks.clear()
    assert compiles == [sim.url_of("mod.py")]  # the code itself was reused each time


def test_an_edited_vouch_fails_the_mac_and_the_source_is_verified_again(
    sim, key, marker, caplog, compiles
):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    [(digest, (_, mac, data))] = read_pack(sim).items()
    write_pack(sim, {digest: (b"\xff" * 32, mac, data)})
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("mod").SIGNED is True
    assert "discarding the cached bytecode" in caplog.text
    assert len(compiles) == 2


def test_processes_racing_to_make_the_key_all_get_the_same_one(tmp_path):
    path = tmp_path / "state" / KEY_NAME
    keys: list[bytes | None] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert keys[0] is not None and len(keys[0]) == 32
    assert set(keys) == {keys[0]}
    assert [p.name for p in path.parent.iterdir()] == [KEY_NAME]  # no temporary left


# -- a real next run: two fresh interpreters ------------------------------------------


def test_edited_bytecode_is_detected_by_the_next_process_and_never_executed(
    tmp_path, serve, tls, publisher, marker
):
    root = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": GOOD})
    publisher.sign(root)
    server = serve(root)
    env = writing_interpreter_env(tmp_path / "cache")

    def run() -> subprocess.CompletedProcess[str]:
        return run_fresh(IMPORT_PKG_MOD, env, server.url, str(publisher.pub), tls.cafile)

    first = run()
    assert first.returncode == 0, first.stderr
    [pack] = (tmp_path / "cache" / "bytecode").iterdir()
    blob = bytearray(pack.read_bytes())
    assert blob.startswith(PACK_MAGIC)
    evil = marshal.dumps(compile(evil_source(marker), "evil", "exec"))
    offset, rewritten = len(PACK_MAGIC), bytearray(PACK_MAGIC)
    while offset < len(blob):  # the neighbour swaps in its code, keeping each MAC
        size = int.from_bytes(blob[offset + 96 : offset + HEADER], "big")
        rewritten += blob[offset : offset + 96] + len(evil).to_bytes(8, "big") + evil
        offset += HEADER + size
    assert offset == len(blob)
    pack.write_bytes(bytes(rewritten))
    second = run()
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "true"
    assert "discarding the cached bytecode" in second.stderr
    assert_never_ran(marker)
    third = run()  # healed: loads from the cache again, silently
    assert third.returncode == 0, third.stderr
    assert third.stderr == ""


# -- still behaves like a local import ---------------------------------------------------


def test_reload_after_a_new_release_runs_the_new_code_not_the_cached(sim, key, compiles):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    warm(sim, key, "mod")
    next_run(sim, key)
    mod = importlib.import_module("mod")  # from the bytecode cache
    assert mod.RELEASE == 1
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    importlib.invalidate_caches()
    assert importlib.reload(mod).RELEASE == 2
    assert compiles == [sim.url_of("mod.py")] * 2


def test_threads_importing_from_the_bytecode_cache_all_get_their_own_module(sim, key, compiles):
    files = {f"m{i}.py": f"VALUE = {i}\n" for i in range(16)}
    sim.publish(files, [key])
    warm(sim, key, *(f"m{i}" for i in range(16)))
    next_run(sim, key)
    results: dict[int, int] = {}

    def load(i: int) -> None:
        results[i] = importlib.import_module(f"m{i}").VALUE

    threads = [threading.Thread(target=load, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i for i in range(16)}
    assert len(compiles) == 16  # all in the first run: the threads loaded cached code


# -- hostile packs, processes and forks ---------------------------------------------------


def test_planted_pack_of_junk_entries_is_not_indexed(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    entries = read_pack(sim)
    for i in range(200_000):  # ~20 MB of entries for modules that do not exist
        entries[hashlib.sha256(b"junk%d" % i).digest()] = (b"\0" * 32, b"\0" * 32, b"")
    write_pack(sim, entries)
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True
    tree = secure_urlimport.api.registry.tree(sim.url)
    assert len(tree.bytecode._packed_entries()) == 0  # far more entries than modules: unused
    assert len(compiles) == 2  # so mod.py was compiled from its verified source
    uninstall(sim.url)
    assert set(read_pack(sim)) == {digest_of(sim, "mod.py", GOOD)}  # and only live code kept


def test_pack_of_a_few_stale_entries_is_used_and_written_back_without_them(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    entries = read_pack(sim)
    for i in range(10):  # an older release's modules, say
        entries[hashlib.sha256(b"stale%d" % i).digest()] = (b"\0" * 32, b"\0" * 32, b"")
    write_pack(sim, entries)
    sim.publish({"mod.py": GOOD, "new.py": "NEW = 1\n"}, [key])
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True
    assert importlib.import_module("new").NEW == 1
    assert compiles == [sim.url_of("mod.py"), sim.url_of("new.py")]  # mod.py from the pack
    uninstall(sim.url)
    assert set(read_pack(sim)) == {
        digest_of(sim, "mod.py", GOOD),
        digest_of(sim, "new.py", "NEW = 1\n"),
    }
    sys.modules.pop("new", None)


def test_oversized_pack_is_ignored_not_read(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    path = pack_path(sim)
    with path.open("ab") as handle:  # a valid pack, padded past the 64 MiB cap
        handle.truncate(64 * 1024 * 1024 + 1)
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True
    assert len(compiles) == 2


def test_processes_writing_one_pack_keep_each_others_code(sim, key):
    sim.publish({"a.py": "A = 1\n", "b.py": "B = 1\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    tree = secure_urlimport.api.registry.tree(sim.url)
    importlib.import_module("a")
    # A second process of the same tree, cache and key, which imports b.py.
    other = BytecodeCache(cache_root(), sim.url)
    other.live_slots = tree.bytecode.live_slots
    b_sha = hashlib.sha256(b"B = 1\n").hexdigest()
    code = compile("B = 1\n", sim.url_of("b.py"), "exec")
    other.put(sim.url_of("b.py"), b_sha, code, b"v" * 32)
    other.flush()  # it exits first
    tree.bytecode.flush()  # then this one: merged, not overwritten
    assert set(read_pack(sim)) == {
        digest_of(sim, "a.py", "A = 1\n"),
        digest_of(sim, "b.py", "B = 1\n"),
    }


MAKE_KEY = """
import sys
from pathlib import Path
from secure_urlimport._store.bytecode import load_or_create_key
key = load_or_create_key(Path(sys.argv[1]))
print(key.hex() if key else "none")
"""


def test_processes_racing_to_make_the_key_agree_on_one(tmp_path):
    path = tmp_path / "state" / KEY_NAME
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MAKE_KEY, str(path)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {child.communicate(timeout=60)[0].strip() for child in children}
    assert len(keys) == 1
    assert keys != {"none"}
    assert bytes.fromhex(keys.pop()) == path.read_bytes()[len(KEY_MAGIC) :]


FORK = """
import importlib, os, sys, threading, secure_urlimport
from secure_urlimport import api
secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])
import pkg.mod
tree = api.registry.tree(sys.argv[1])
inside, leave = threading.Event(), threading.Event()

def busy():  # another thread is inside the cache as the process forks
    with tree.bytecode._lock:
        inside.set()
        leave.wait()

threading.Thread(target=busy).start()
inside.wait()
pid = os.fork()
leave.set()
if pid == 0:
    importlib.import_module("pkg.other")
    tree.bytecode.flush()
    os._exit(0)
import signal, time
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print(os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.05)
else:
    os.kill(pid, signal.SIGKILL)
    print("the child hung")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_the_cache_is_busy_never_deadlocks_the_child(tmp_path, serve, tls, publisher):
    root = write_tree(
        tmp_path / "tree",
        {"pkg/__init__.py": "", "pkg/mod.py": GOOD, "pkg/other.py": "OTHER = 1\n"},
    )
    publisher.sign(root)
    server = serve(root)
    env = writing_interpreter_env(tmp_path / "cache")
    done = run_fresh(
        FORK,
        env,
        server.url,
        str(publisher.pub),
        tls.cafile,
        flags=["-W", "ignore::DeprecationWarning"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


OPTIMIZED = """
import sys, secure_urlimport
secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])
import pkg.mod
print(pkg.mod.DOC)
"""


def test_code_compiled_under_o_is_never_used_without_it(tmp_path, serve, tls, publisher):
    source = '"""doc"""\nDOC = __doc__\n'
    root = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": source})
    publisher.sign(root)
    server = serve(root)
    env = writing_interpreter_env(tmp_path / "cache")

    def run(*flags: str) -> str:
        done = run_fresh(OPTIMIZED, env, server.url, str(publisher.pub), tls.cafile, flags=flags)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run("-OO") == "None"  # docstrings stripped, and cached so
    assert run() == "doc"  # not served the -OO code
    assert run("-OO") == "None"
    assert run() == "doc"
    assert len(list((tmp_path / "cache" / "bytecode").iterdir())) == 2


def test_identical_modules_keep_their_own_file_names(sim, key):
    same = "def where():\n    raise RuntimeError('here')\n"
    sim.publish({"a/__init__.py": same, "b/__init__.py": same}, [key])
    warm(sim, key, "a", "b")
    next_run(sim, key)
    for name in ("a", "b"):
        with pytest.raises(RuntimeError) as err:
            importlib.import_module(name).where()
        assert err.tb.tb_next is not None
        assert err.tb.tb_next.tb_frame.f_code.co_filename == sim.url_of(f"{name}/__init__.py")


def test_max_file_bytes_still_applies_on_a_cache_hit(sim, key):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    install(sim.url, pubkey=key.public.raw, fetcher=sim, config=Config(max_file_bytes=10))
    with pytest.raises(SecureImportError) as err:
        importlib.import_module("mod")
    assert "mod" not in sys.modules
    assert "10" in str(err.value)


def test_no_bytecode_cache_without_the_file_cache(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    config = Config(file_cache=False)
    import_in_two_runs(sim, key, config)
    assert len(compiles) == 2
    assert not (cache_root() / "bytecode").exists()


def test_module_too_deep_to_marshal_still_imports(sim, key):
    deep = "f = " + "lambda: " * 600 + "1\n"  # compiles, but marshal refuses it
    sim.publish({"deep.py": deep}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert callable(importlib.import_module("deep").f)


def test_unsafe_key_under_dont_write_bytecode_warns_once(sim, key, monkeypatch, caplog):
    sim.publish({f"m{i}.py": f"V = {i}\n" for i in range(5)}, [key])
    warm(sim, key, "m0")
    (cache_root() / KEY_NAME).chmod(0o644)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    next_run(sim, key)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        for i in range(5):
            importlib.import_module(f"m{i}")
    assert caplog.text.count("not using the bytecode cache") == 1


def test_pack_planted_by_another_user_is_not_read(sim, key, compiles):
    sim.publish({"mod.py": GOOD}, [key])
    warm(sim, key, "mod")
    pack_path(sim).chmod(0o666)  # anyone could have written it
    next_run(sim, key)
    assert importlib.import_module("mod").SIGNED is True
    assert len(compiles) == 2
