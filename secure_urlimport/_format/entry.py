"""One signed file's entry, as a manifest (format 1 and 2) and a shard list it.

An entry is ``path: {"sha256": hex, "signatures": {keyid: base64}, "size": n}``.
Parsed strictly (the path must be publishable, the digest lower-case hex,
every signature base64 under a well-formed key id), encoded deterministically
(sorted keys) so an unchanged file gives byte-identical entries.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ManifestFormatError
from .paths import path_problem
from .signedfile import MAX_VERSION, bounded_int, check_keyid

__all__ = ["FileEntry", "encode_entry", "is_sha256_hex", "parse_entry"]

_ENTRY_KEYS = frozenset({"sha256", "signatures", "size"})


@dataclass(frozen=True)
class FileEntry:
    """One signed file: its path in the tree, size, SHA-256 and signatures."""

    path: str
    size: int
    sha256: str
    signatures: Mapping[str, bytes]


def is_sha256_hex(value: object) -> bool:
    """Is *value* 64 lower-case hex digits?"""
    return isinstance(value, str) and len(value) == 64 and not value.strip("0123456789abcdef")


def parse_entry(path: object, raw: object, what: str = "manifest") -> FileEntry:
    """The entry for *path* in a parsed JSON body (*what* names it in messages)."""
    if not isinstance(path, str):
        raise ManifestFormatError(f"{what} lists a path that is not a string: {path!r}")
    if (problem := path_problem(path)) is not None:
        raise ManifestFormatError(f"{what} lists an invalid path {path!r}: {problem}")
    if not isinstance(raw, dict) or raw.keys() != _ENTRY_KEYS:
        raise ManifestFormatError(f"{what} entry for {path!r} is malformed")
    sha = raw["sha256"]
    if not is_sha256_hex(sha):
        raise ManifestFormatError(f"{what} entry for {path!r} has a malformed sha256")
    sigs = raw["signatures"]
    if not isinstance(sigs, dict) or not sigs:
        raise ManifestFormatError(f"{what} entry for {path!r} has no signatures")
    decoded: dict[str, bytes] = {}
    for keyid, sig in sigs.items():
        if not isinstance(sig, str):
            raise ManifestFormatError(f"signature for {path!r} is not a base64 string")
        check_keyid(keyid)
        try:
            # Strict: only the alphabet, padding only at the end (what the
            # signer writes); binascii directly, base64's wrapper costs more.
            decoded[keyid] = binascii.a2b_base64(sig, strict_mode=True)
        except ValueError:  # binascii.Error, and the plain ValueError of a non-ASCII str
            raise ManifestFormatError(f"signature for {path!r} is not base64") from None
    size = bounded_int(raw["size"], f"{what} size of {path!r}", MAX_VERSION)
    return FileEntry(path, size, sha, decoded)


def encode_entry(entry: FileEntry) -> str:
    """``"path": {...}``: one entry as one line of JSON, keys sorted."""
    value = {
        "sha256": entry.sha256,
        "signatures": {
            k: base64.b64encode(s).decode("ascii") for k, s in sorted(entry.signatures.items())
        },
        "size": entry.size,
    }
    return json.dumps(entry.path) + ": " + json.dumps(value, sort_keys=True)
