"""Writing a sharded release (manifest format 2): the shard files, then the index.

Above :data:`SHARD_THRESHOLD` files, ``sign`` writes the entries into shard
files (``_format/shard.py``) under ``secure-urlimport.shards/``, named by
their SHA-256, and a manifest that pins them.  Order matters for consumers
reading while the publisher writes: shards first (content-addressed, so a
new one never replaces an old one), then the manifest, and only then are
shard files that neither the new nor the previous release pins removed, so a
consumer that fetched the previous manifest a moment ago still finds its
shards.  The whole-tree bundle is not written for a sharded tree (a single
import would have to download every module), and a bundle left from an
earlier release is removed after the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._format.entry import FileEntry
from .._format.manifest import parse_manifest_body, split_manifest_file
from .._format.paths import BUNDLE_NAME, MANIFEST_NAME
from .._format.shard import SHARD_DIR, ShardRef, cut_shards, encode_shard
from .._store.atomic import write_atomically
from ..errors import ManifestFormatError
from .localfile import read_tree_file
from .versions import MAX_MANIFEST_BYTES

__all__ = ["SHARD_THRESHOLD", "build_shards", "previous_shards", "prune_shards", "write_shards"]

log = logging.getLogger("secure_urlimport")

#: Trees of more files than this are sharded; smaller ones keep writing format 1
#: (one manifest and the bundle: fastest for a consumer that imports most of
#: the tree, and readable by every client release).
SHARD_THRESHOLD = 2000


def build_shards(entries: Mapping[str, FileEntry]) -> list[tuple[ShardRef, bytes]]:
    """The shards of *entries*: each one's pin and bytes, in path order."""
    groups = cut_shards([entries[path] for path in sorted(entries)])
    shards = []
    for group in groups:
        data = encode_shard(group)
        shards.append((ShardRef(group[0].path, hashlib.sha256(data).hexdigest(), len(data)), data))
    return shards


def write_shards(root: Path, shards: Sequence[tuple[ShardRef, bytes]]) -> None:
    """Write the shard files a release pins (before its manifest).  A file that
    already holds a shard of that digest is left alone: its bytes are the same."""
    directory = root / SHARD_DIR
    directory.mkdir(exist_ok=True)
    for ref, data in shards:
        path = root / ref.path
        with contextlib.suppress(OSError):
            if read_tree_file(path, ref.size) == data:
                continue
        write_atomically(path, data)


def previous_shards(root: Path) -> set[str]:
    """The digests the tree's current manifest pins (read before it is replaced)."""
    try:
        data = read_tree_file(root / MANIFEST_NAME, MAX_MANIFEST_BYTES)
        return {ref.sha256 for ref in parse_manifest_body(split_manifest_file(data).body).shards}
    except (OSError, ManifestFormatError):
        return set()


def prune_shards(root: Path, keep: set[str], *, sharded: bool) -> None:
    """After the manifest is written: remove shard files neither it nor the
    previous release pins, and (*sharded*) the bundle of an earlier release."""
    if sharded:
        with contextlib.suppress(FileNotFoundError):
            (root / BUNDLE_NAME).unlink()
    directory = root / SHARD_DIR
    if not directory.is_dir() or directory.is_symlink():
        return
    for path in directory.iterdir():
        if path.name not in keep and path.is_file():
            log.debug("removing %s: no release pins it any more", path)
            path.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()  # only if empty
