"""Manifest shards (format 2): the index's pins and the shard files they pin.

A format-2 manifest of a big tree lists no files itself: its signed body
carries ``"shards"``, a list sorted by first path of ``[first_path,
sha256_hex, size]``, and every entry lives in exactly one shard file, served
at ``secure-urlimport.shards/<sha256_hex>``.  Shard *i* holds exactly the
paths ``p`` with ``first_path[i] <= p < first_path[i+1]``, and its first
path is ``first_path[i]`` itself.  A shard file is not signed: the signed
index pins its digest and size, as TUF's snapshot pins targets metadata, and
each entry in it still carries its own per-file signatures.  Shard body::

    {"files":{
    "<path>": {"sha256": "<hex>", "signatures": {"<keyid>": "<base64>"}, "size": <n>},
    ...
    },"format":1,"type":"secure-urlimport/shard"}\\n

Parsed strictly (``load_json``: no repeated key, no float), capped in size
and count.  Whether a shard matches its pin and its range is ``_trust``'s
decision (``_trust/shards.py``); this module only turns bytes into values.
:func:`cut_shards` is how ``sign`` cuts the sorted entries: boundaries
chosen by each path's hash (content-defined), so a change moves at most
the boundaries next to it and unchanged shards keep their bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ManifestFormatError
from .entry import FileEntry, encode_entry, is_sha256_hex, parse_entry
from .paths import SHARD_DIR, path_problem
from .signedfile import load_json

__all__ = [
    "MAX_SHARDS",
    "MAX_SHARD_BYTES",
    "SHARD_DIR",
    "ShardRef",
    "cut_shards",
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


def parse_shard_refs(raw: object) -> tuple[ShardRef, ...]:
    """The index's ``"shards"`` list: sorted, distinct, capped."""
    if not isinstance(raw, list) or len(raw) > MAX_SHARDS:
        raise ManifestFormatError(f"manifest shards is not a list of at most {MAX_SHARDS} pins")
    refs: list[ShardRef] = []
    digests: set[str] = set()
    for item in raw:
        if not isinstance(item, list) or len(item) != 3:
            raise ManifestFormatError("manifest shard pin is not [first_path, sha256, size]")
        first, sha, size = item
        if not isinstance(first, str) or path_problem(first) is not None:
            raise ManifestFormatError(f"manifest shard pin has an invalid first path {first!r}")
        if not is_sha256_hex(sha):
            raise ManifestFormatError(f"manifest shard pin for {first!r} has a malformed sha256")
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
    lines = [json.dumps([ref.first, ref.sha256, ref.size]) for ref in refs]
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
    files = {path: parse_entry(path, raw, "shard") for path, raw in files_raw.items()}
    folded: dict[str, str] = {}
    for path in files:
        other = folded.setdefault(path.casefold(), path)
        if other != path:
            raise ManifestFormatError(f"shard paths {other!r} and {path!r} differ only in case")
    return files


def encode_shard(entries: Sequence[FileEntry]) -> bytes:
    """A shard file's bytes: its entries in path order, one per line."""
    lines = [encode_entry(e) for e in sorted(entries, key=lambda e: e.path)]
    text = '{"files":{\n' + ",\n".join(lines) + '\n},"format":1,"type":"' + SHARD_TYPE + '"}\n'
    return text.encode("utf-8")


def cut_shards(
    entries: Sequence[FileEntry], target: int = SHARD_TARGET_BYTES
) -> list[list[FileEntry]]:
    """*entries* (sorted by path) cut into shards of about *target* bytes.

    Content-defined, like rsync's rolling boundaries: a new shard starts at a
    path once the current one holds ``3/4 target`` bytes and the path's hash
    falls under a bar proportional to its entry's size (a mean of ``target``),
    or when the shard would pass ``3/2 target``.  The choice depends on the
    path and its own entry only, so a changed, added or removed file moves the
    boundaries of its own shard at most (until the next hash boundary): the
    other shards keep their bytes and digests.
    """
    low, high = target * 3 // 4, target * 3 // 2
    shards: list[list[FileEntry]] = []
    current: list[FileEntry] = []
    size = 0
    for entry in entries:
        length = len(encode_entry(entry).encode("utf-8")) + 2
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
