"""The manifest memo: a warm start reuses a manifest check only on the very same inputs.

A process that verified a manifest records, under the bytecode cache's MAC
key, the vouch of that check (keys, threshold, signature lines, body digest)
and the parsed manifest (``_store/memo.py``).  The next process whose own
check would get the same inputs takes the parsed manifest from the memo
instead of checking the signatures and parsing the body again.  Here the
memo is edited, forged, replayed for another release and read under another
pin; each time the import runs signed code or fails closed, and the
attacker's code never runs.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import marshal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import evil_source
from simulator import RepositorySimulator, assert_never_ran, cache_root

import secure_urlimport._client.current
import secure_urlimport._format.manifest
import secure_urlimport._trust.verify
from secure_urlimport import ExpiredManifestError, UntrustedKeyError, install, uninstall
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._store.file_names import file_name_for

GOOD = "SIGNED = True\n"
MEMO_MAGIC = b"SUIMEMO1\n"  # the format, as SECURITY.md spells it


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(autouse=True)
def writes_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo conftest's -B: the memo, like the bytecode cache, is not written under it."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per manifest body parsed (the memo stands in for parsing)."""
    seen: list[int] = []
    real = secure_urlimport._format.manifest.parse_manifest_body

    def counting(body: bytes):  # type: ignore[no-untyped-def]
        seen.append(len(body))
        return real(body)

    monkeypatch.setattr(secure_urlimport._trust.verify, "parse_manifest_body", counting)  # type: ignore[attr-defined]
    return seen


def run(
    sim: RepositorySimulator, keys: list[PrivateKey], name: str = "mod", **kw: object
) -> object:
    """One "process": install, import *name*, uninstall (which writes the memo)."""
    install(sim.url, pubkey=[k.public.raw for k in keys], fetcher=sim, **kw)  # type: ignore[arg-type]
    try:
        return importlib.import_module(name)
    finally:
        uninstall(sim.url)
        sys.modules.pop(name, None)


def memo_path(sim: RepositorySimulator) -> Path:
    name = file_name_for(f"{sim.url}\0{sys.version_info[0]}.{sys.version_info[1]}")
    return cache_root() / "memo" / name


def test_the_next_process_reuses_the_checked_manifest_without_parsing_it(sim, key, parses):
    sim.publish({"mod.py": GOOD}, [key])
    assert run(sim, [key]).SIGNED is True  # type: ignore[attr-defined]
    assert len(parses) == 1
    assert memo_path(sim).read_bytes().startswith(MEMO_MAGIC)
    assert run(sim, [key]).SIGNED is True  # type: ignore[attr-defined]
    assert len(parses) == 1  # the memo stood in for the check and the parse


def test_nothing_is_remembered_under_dont_write_bytecode(sim, key, parses, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    sim.publish({"mod.py": GOOD}, [key])
    run(sim, [key])
    run(sim, [key])
    assert len(parses) == 2
    assert not memo_path(sim).exists()


def test_a_memo_of_the_previous_release_is_not_used_for_the_new_one(sim, key, parses):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [key])
    run(sim, [key])
    sim.publish({"mod.py": "RELEASE = 2\n"}, [key])
    assert run(sim, [key]).RELEASE == 2  # type: ignore[attr-defined]
    assert len(parses) == 2  # the body differs: checked and parsed again


def test_a_memo_made_under_another_pin_is_not_used(sim, key, parses):
    other = PrivateKey.generate()
    sim.publish({"mod.py": GOOD}, [key])
    run(sim, [key])
    # A stricter pin: both keys must sign, and only `key` did.  The memo of
    # the one-key check must not stand in for this one.
    with pytest.raises(UntrustedKeyError):
        run(sim, [key, other], threshold=2)
    assert len(parses) == 1


def test_an_edited_memo_fails_its_mac_and_the_manifest_is_checked_again(sim, key, parses, caplog):
    sim.publish({"mod.py": GOOD}, [key])
    run(sim, [key])
    blob = bytearray(memo_path(sim).read_bytes())
    blob[-1] ^= 0x01
    memo_path(sim).write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert run(sim, [key]).SIGNED is True  # type: ignore[attr-defined]
    assert "fails its MAC" in caplog.text
    assert len(parses) == 2


def test_a_memo_forged_with_a_guessed_key_never_lists_the_attackers_module(
    sim, key, marker, caplog
):
    release = sim.publish({"mod.py": GOOD}, [key])
    run(sim, [key])
    blob = memo_path(sim).read_bytes()
    head = len(MEMO_MAGIC)
    vouch, digest = blob[head : head + 32], blob[head + 32 : head + 96]
    # The memo claims the release lists evil.py, with the hash of the attacker's code.
    evil = evil_source(marker).encode()
    sha = hashlib.sha256(evil).hexdigest()
    expires = int((datetime.now(UTC) + timedelta(days=30)).timestamp())
    snapshot: tuple[Any, ...] = (
        release.manifest.version,
        (int(datetime.now(UTC).timestamp()), expires),
        (key.public.keyid,),
        ["evil.py", len(evil), sha, 1, key.public.keyid, b"\0" * 64],
        "",
        1,
        [],
        (key.public.keyid,),
    )
    data = marshal.dumps(snapshot)
    mac = hmac.new(b"\0" * 32, MEMO_MAGIC + vouch + digest + data, hashlib.sha256).digest()
    memo_path(sim).write_bytes(MEMO_MAGIC + vouch + digest + mac + data)
    sim.put("evil.py", evil)
    quiet = caplog.at_level(logging.WARNING, logger="secure_urlimport")
    with quiet, pytest.raises(ModuleNotFoundError):  # the signed release has no evil.py
        run(sim, [key], name="evil")
    assert "fails its MAC" in caplog.text
    assert_never_ran(marker, "evil")


def test_an_expired_release_is_refused_although_its_check_is_remembered(sim, key, monkeypatch):
    sim.publish({"mod.py": GOOD}, [key], expires_in=timedelta(minutes=1))
    run(sim, [key])
    real_now = datetime.now

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return real_now(tz) + timedelta(minutes=5)

    monkeypatch.setattr(secure_urlimport._client.current, "datetime", Later)
    with pytest.raises(ExpiredManifestError):
        run(sim, [key])


def test_a_memo_others_can_write_is_not_read(sim, key, parses):
    sim.publish({"mod.py": GOOD}, [key])
    run(sim, [key])
    memo_path(sim).chmod(0o666)
    assert run(sim, [key]).SIGNED is True  # type: ignore[attr-defined]
    assert len(parses) == 2
