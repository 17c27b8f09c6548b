"""The gate's view of a sharded tree (manifest format 2): every shard checked, entries gathered.

``verify`` checks every file of a tree, so it reads every shard the signed
index pins, checks each against its pin (``_trust/shards.py``: digest, size,
strict format, range) and reports each one that fails as a ``shard`` problem;
the files of the shards that verified are then checked as in a format-1 tree.
Case-fold pairs across shards, which a client reading one shard cannot see,
are reported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._format.entry import FileEntry
from .._format.manifest import Manifest
from .._format.paths import SHARD_DIR
from .._format.shard import ShardRef
from .._net.fetcher import Fetcher
from .._trust.shards import check_case_folds, verify_shard
from ..errors import HTTPStatusError, ManifestFormatError, SecureImportError
from ..publish.findings import Findings
from ..publish.localfile import read_tree_file

__all__ = ["SHARD_PROBLEM", "local_shard_reader", "remote_shard_reader", "with_shard_entries"]

SHARD_PROBLEM = (
    "a manifest shard the signed manifest pins is missing, or is not the pinned bytes, "
    "or lists paths outside its range; re-sign and publish the shards with the manifest"
)


@dataclass(frozen=True)
class ShardReader:
    """Where the shards come from: *read* gives one's bytes (raising OSError or
    SecureImportError), *where* names a tree path in messages."""

    read: Callable[[ShardRef], bytes]
    where: Callable[[str], str]


def local_shard_reader(root: Path) -> ShardReader:
    def read(ref: ShardRef) -> bytes:
        return read_tree_file(root / ref.path, ref.size)  # never through a symlink

    return ShardReader(read, lambda rel: str(root / rel))


def remote_shard_reader(fetcher: Fetcher, file_url: Callable[[str], str]) -> ShardReader:
    def read(ref: ShardRef) -> bytes:
        return fetcher.fetch(file_url(ref.path), max_bytes=ref.size)

    return ShardReader(read, file_url)


def with_shard_entries(
    findings: Findings, manifest: Manifest | None, shards: ShardReader
) -> Manifest | None:
    """*manifest* with the entries of every shard that verifies in ``files``; a
    ``shard`` finding for each one that does not."""
    if manifest is None or not manifest.shards:
        return manifest
    files: dict[str, FileEntry] = {}
    for index, ref in enumerate(manifest.shards):
        url = shards.where(ref.path)
        try:
            files.update(verify_shard(shards.read(ref), manifest, index, url=url))
        except HTTPStatusError as exc:
            what = "is missing" if exc.status == 404 else "cannot be downloaded"
            findings.add("shard", ref.path, f"shard {url} {what} ({exc})")
        except OSError as exc:
            findings.add("shard", ref.path, f"shard {url} cannot be read ({exc.strerror or exc})")
        except SecureImportError as exc:
            findings.add("shard", ref.path, str(exc))
    try:
        check_case_folds(files)
    except ManifestFormatError as exc:
        findings.add("shard", SHARD_DIR, f"{exc}: a case-insensitive disk cannot hold the tree")
    return dataclasses.replace(manifest, files=files)
