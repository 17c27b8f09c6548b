"""Manifest shards (format 2): the index's pins and the shard files they pin.

A format-2 manifest of a big tree lists no files itself: its signed body
carries ``"shards"``, a list sorted by first path of ``[first_path, digest,
size]``, and every entry lives in exactly one shard file, served at
``secure-urlimport.shards/<sha256 in hex>``.  Shard *i* holds exactly the
paths ``p`` with ``first_path[i] <= p < first_path[i+1]``, and its first
path is ``first_path[i]`` itself.  A shard file is not signed: the signed
index pins its digest and size, as TUF's snapshot pins targets metadata, and
each entry in it still carries its own per-file signatures.

Digests in the index and in shards are SHA-256 in unpadded base64url (43
characters, canonical: the decoded 32 bytes encode back to the same text),
and a shard entry is a list, not an object: at 50,000 files the index and
one shard must stay under 64 KiB, and hex digests and repeated keys made
them 75 KB.  Shard body (no whitespace but the newlines)::

    {"files":{
    "<path>":["<sha256 base64url>",<size>,{"<keyid>":"<signature base64>"}],
    ...
    },"format":1,"type":"secure-urlimport/shard"}\n

Parsed strictly (``load_json``: no repeated key, no float), capped in size
and count.  Whether a shard matches its pin and its range is ``_trust``'s
decision (``_trust/shards.py``); this module only turns bytes into values.
:func:`cut_shards` is how ``sign`` cuts the sorted entries: boundaries
chosen by each path's hash (content-defined), so a change moves at most
the boundaries next to it and unchanged shards keep their bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ManifestFormatError
from .entry import FileEntry, parse_entry
from .paths import SHARD_DIR, path_problem
from .signedfile import load_json

__all__ = [
    "MAX_SHARDS",
    "MAX_SHARD_BYTES",
    "SHARD_DIR",
    "ShardRef",
    "cut_shards",
    "digest_hex",
    "digest_text",
    "encode_shard",
    "encode_shard_refs",
    "parse_shard_body",
    "parse_shard_refs",
    "shard_path",
]

SHARD_TYPE = "secure-urlimport/shard"
SHARD_FORMAT = 1
#: At most this many shards in one index (a 10**6-shard index is refused
#: before any is fetched; the manifest's size cap bounds it too).
MAX_SHARDS = 65_536
#: A shard file is at most this long (``sign`` cuts them at about
#: :data:`SHARD_TARGET_BYTES`); the pin's size says exactly how long.
MAX_SHARD_BYTES = 1 << 20
#: The mean shard size ``sign`` aims at: an index and one shard of a
#: 10,000-file tree stay well under 64 KiB (issue #14).
SHARD_TARGET_BYTES = 24 * 1024


@dataclass(frozen=True)
class ShardRef:
    """One pin of the signed index: the shard's first path, SHA-256 and size."""

    first: str
    sha256: str
    size: int

    @property
    def path(self) -> str:
        """The shard file's path in the tree (``secure-urlimport.shards/<hex>``)."""
        return shard_path(self.sha256)


def shard_path(sha256_hex: str) -> str:
    return f"{SHARD_DIR}/{sha256_hex}"


_B64URL_DIGEST = re.compile(r"[A-Za-z0-9_-]{43}")


def digest_text(sha256_hex: str) -> str:
    """A hex SHA-256 as the index and shards write it: unpadded base64url."""
    return base64.urlsafe_b64encode(bytes.fromhex(sha256_hex)).decode("ascii").rstrip("=")


def digest_hex(text: object, what: str) -> str:
    """The hex SHA-256 of a base64url digest; refuses any other spelling."""
    if not isinstance(text, str) or not _B64URL_DIGEST.fullmatch(text):
        raise ManifestFormatError(f"{what} has a malformed sha256")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise ManifestFormatError(f"{what} has a malformed sha256") from None
    hexed = raw.hex()
    if digest_text(hexed) != text:  # the last character's unused bits must be zero
        raise ManifestFormatError(f"{what} has a non-canonical sha256")
    return hexed


def parse_shard_refs(raw: object) -> tuple[ShardRef, ...]:
    """The index's ``"shards"`` list: sorted, distinct, capped."""
    if not isinstance(raw, list) or len(raw) > MAX_SHARDS:
        raise ManifestFormatError(f"manifest shards is not a list of at most {MAX_SHARDS} pins")
    refs: list[ShardRef] = []
    digests: set[str] = set()
    for item in raw:
        if not isinstance(item, list) or len(item) != 3:
            raise ManifestFormatError("manifest shard pin is not [first_path, sha256, size]")
        first, digest, size = item
        if not isinstance(first, str) or path_problem(first) is not None:
            raise ManifestFormatError(f"manifest shard pin has an invalid first path {first!r}")
        sha = digest_hex(digest, f"manifest shard pin for {first!r}")
        if type(size) is not int or not 0 < size <= MAX_SHARD_BYTES:
            raise ManifestFormatError(
                f"manifest shard pin for {first!r} has a size not in [1, {MAX_SHARD_BYTES}]"
            )
        if refs and first <= refs[-1].first:
            raise ManifestFormatError("manifest shard pins are not sorted by distinct first paths")
        if sha in digests:
            raise ManifestFormatError(f"manifest pins the shard {sha} twice")
        digests.add(sha)
        refs.append(ShardRef(first, sha, size))
    return tuple(refs)


def encode_shard_refs(refs: Sequence[ShardRef]) -> str:
    """The ``"shards"`` value as JSON text, one pin per line."""
    lines = [_compact([ref.first, digest_text(ref.sha256), ref.size]) for ref in refs]
    return "[\n" + ",\n".join(lines) + "\n]" if lines else "[]"


def parse_shard_body(data: bytes) -> dict[str, FileEntry]:
    """The entries of a shard file (after its digest matched its pin)."""
    obj = load_json(data, "shard")
    if set(obj) != {"files", "format", "type"}:
        raise ManifestFormatError(f"shard body keys {sorted(obj)} are not files, format, type")
    fmt = obj["format"]
    if obj["type"] != SHARD_TYPE or type(fmt) is not int or fmt != SHARD_FORMAT:
        raise ManifestFormatError("shard body is not a secure-urlimport format-1 shard")
    files_raw = obj["files"]
    if not isinstance(files_raw, dict) or not files_raw:
        raise ManifestFormatError("shard files is not a non-empty object")
    files = {path: _parse_shard_entry(path, raw) for path, raw in files_raw.items()}
    folded: dict[str, str] = {}
    for path in files:
        other = folded.setdefault(path.casefold(), path)
        if other != path:
            raise ManifestFormatError(f"shard paths {other!r} and {path!r} differ only in case")
    return files


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _parse_shard_entry(path: str, raw: object) -> FileEntry:
    if not isinstance(raw, list) or len(raw) != 3:
        raise ManifestFormatError(f"shard entry for {path!r} is not [sha256, size, signatures]")
    digest, size, signatures = raw
    sha = digest_hex(digest, f"shard entry for {path!r}")
    # The rest as a manifest entry: the same checks, the same messages.
    return parse_entry(path, {"sha256": sha, "signatures": signatures, "size": size}, "shard")


def encode_shard_entry(entry: FileEntry) -> str:
    """``"path":["<digest>",size,{"keyid":"sig"}]``: one entry as one compact line."""
    sigs = {k: base64.b64encode(s).decode("ascii") for k, s in sorted(entry.signatures.items())}
    return _compact(entry.path) + ":" + _compact([digest_text(entry.sha256), entry.size, sigs])


def encode_shard(entries: Sequence[FileEntry]) -> bytes:
    """A shard file's bytes: its entries in path order, one per line."""
    lines = [encode_shard_entry(e) for e in sorted(entries, key=lambda e: e.path)]
    text = '{"files":{\n' + ",\n".join(lines) + '\n},"format":1,"type":"' + SHARD_TYPE + '"}\n'
    return text.encode("utf-8")


def cut_shards(
    entries: Sequence[FileEntry], target: int = SHARD_TARGET_BYTES
) -> list[list[FileEntry]]:
    """*entries* (sorted by path) cut into shards of about *target* bytes.

    Content-defined, like rsync's rolling boundaries: a new shard starts at a
    path once the current one holds ``9/10 target`` bytes and the path's hash
    falls under a bar proportional to its entry's size (a mean of ``target``),
    or when the shard would pass ``6/5 target`` (so the largest shard, which
    a lookup may have to read with the index, stays close to the mean).  The choice depends on the
    path and its own entry only, so a changed, added or removed file moves the
    boundaries of its own shard at most (until the next hash boundary): the
    other shards keep their bytes and digests.
    """
    low, high = target * 9 // 10, target * 6 // 5
    shards: list[list[FileEntry]] = []
    current: list[FileEntry] = []
    size = 0
    for entry in entries:
        length = len(encode_shard_entry(entry).encode("utf-8")) + 2
        if current and (
            size + length > high or (size >= low and _boundary(entry, length, target - low))
        ):
            shards.append(current)
            current, size = [], 0
        current.append(entry)
        size += length
    if current:
        shards.append(current)
    return shards


def _boundary(entry: FileEntry, length: int, mean: int) -> bool:
    """Does a shard start at *entry*?  True with probability ``length / mean``."""
    draw = int.from_bytes(hashlib.sha256(entry.path.encode("utf-8")).digest()[:4], "big")
    return draw * mean < length * (1 << 32)
