"""Is this shard the one the signed index pins?  Pure: bytes and the index in, entries out.

A shard file is not signed; the verified manifest (the index) pins its
SHA-256 and size, and says which paths it holds: from its pin's first path
up to the next pin's.  So a shard is accepted only if it is exactly the
pinned bytes, parses strictly, starts at its first path and holds no path
outside its range.  Then no two shards can claim one path (the ranges are
disjoint), a path the ranges give to one shard can never come from another,
and a shard of another release (or another tree) is refused by its digest.

What a client that reads one shard does *not* check: case-fold collisions
between paths in two different shards (each shard is checked on its own;
``sign`` and ``verify`` check the whole tree).  The importer looks paths up
exactly, so such a pair can only matter to a tool that writes the tree to a
case-insensitive disk; ``verify`` reports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping

from .._format.entry import FileEntry
from .._format.manifest import Manifest
from .._format.shard import ShardRef, parse_shard_body
from ..errors import ManifestFormatError, TamperedFileError

__all__ = ["check_case_folds", "check_shard_digest", "check_shard_range", "flatten", "verify_shard"]


def check_shard_digest(data: bytes, ref: ShardRef, *, url: str) -> None:
    """Raise :class:`TamperedFileError` unless *data* is the pinned size and SHA-256."""
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
        raise TamperedFileError(
            f"shard {url} is not the one the signed manifest pins ({len(data)} bytes, "
            f"pinned {ref.size} with SHA-256 {ref.sha256}): a stale cache or a swapped "
            "shard; publish the shards together with the manifest"
        )


def verify_shard(data: bytes, manifest: Manifest, index: int, *, url: str) -> dict[str, FileEntry]:
    """The entries of shard *index* of *manifest*, if *data* is that shard."""
    check_shard_digest(data, manifest.shards[index], url=url)
    entries = parse_shard_body(data)
    check_shard_range(entries, manifest, index, url=url)
    return entries


def check_shard_range(
    entries: Mapping[str, FileEntry], manifest: Manifest, index: int, *, url: str
) -> None:
    """Raise unless *entries* (a shard whose digest matched, perhaps parsed for
    another release) start at shard *index*'s first path and stay in its range."""
    low, high = manifest.shard_range(index)
    if low not in entries:
        raise ManifestFormatError(
            f"shard {url} does not hold its first path {low!r}, which the signed index names"
        )
    for path in entries:
        if path < low or (high is not None and path >= high):
            raise ManifestFormatError(
                f"shard {url} lists {path!r}, outside its range [{low!r}, "
                f"{high!r}) in the signed index: refusing the shard"
            )


def flatten(
    manifest: Manifest, read: Callable[[ShardRef], bytes], *, url: Callable[[ShardRef], str]
) -> Manifest:
    """*manifest* with every entry of its shards in ``files`` (for ``verify``,
    ``sign --check`` and other whole-tree readers; the import path never does
    this).  *read* gives a shard's bytes; raises if any shard does not verify,
    or if two paths of the tree differ only in case."""
    if not manifest.shards:
        return manifest
    files: dict[str, FileEntry] = {}
    for index, ref in enumerate(manifest.shards):
        files.update(verify_shard(read(ref), manifest, index, url=url(ref)))
    check_case_folds(files)
    return dataclasses.replace(manifest, files=files, shards=manifest.shards)


def check_case_folds(files: Mapping[str, FileEntry]) -> None:
    folded: dict[str, str] = {}
    for path in files:
        other = folded.setdefault(path.casefold(), path)
        if other != path:
            raise ManifestFormatError(f"tree paths {other!r} and {path!r} differ only in case")
