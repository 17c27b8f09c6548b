"""The signed formats, byte for byte: signed messages and the manifest file.

No I/O and no trust decisions here: this module turns values into bytes and
bytes into values.  ``verify`` decides what to trust.  SECURITY.md documents
the formats; keep the two in step.

Manifest file::

    secure-urlimport-manifest v1\\n
    signature <keyid> <base64 Ed25519 signature>\\n    (one line per signature)
    \\n
    <body: UTF-8 JSON object, signed exactly as these bytes>

Format 2 (``"format": 2``) adds ``"shards"``, the pins of the manifest shards
that hold the entries of a big tree (``shard.py``), and signs each file with
the v2 message, which names the tree instead of its version.

Signatures are made over length-prefixed fields (4-byte big-endian length,
then the bytes) so no two different field lists give the same message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from ..errors import ManifestFormatError
from .dirindex import DirectoryIndex
from .entry import FileEntry, encode_entry, parse_entry
from .keys import TrustedKeys
from .shard import ShardRef, encode_shard_refs, parse_shard_refs
from .signedfile import (
    MAX_VERSION,
    SignedFile,
    bounded_int,
    check_keyid,
    encode_signed_file,
    format_time,
    length_prefixed,
    load_json,
    parse_time,
    split_signed_file,
)

__all__ = [
    "MAX_VERSION",
    "SHARDED_FORMAT",
    "FileEntry",
    "Manifest",
    "SignedManifestFile",
    "encode_manifest",
    "entry_message",
    "file_message",
    "file_message_v2",
    "format_time",
    "manifest_message",
    "parse_manifest_body",
    "split_manifest_file",
]

MAGIC = b"secure-urlimport-manifest v1\n"
FORMAT_VERSION = 1
#: Format 2: v2 file messages, and the entries in shards when ``shards`` is not empty.
SHARDED_FORMAT = 2
BODY_TYPE = "secure-urlimport/manifest"
FILE_TAG = b"secure-urlimport/file/v1"
FILE_TAG_V2 = b"secure-urlimport/file/v2"
MANIFEST_TAG = b"secure-urlimport/manifest/v1"
MAX_FILES = 1_000_000
MAX_NAME_CHARS = 200


def file_message(keyid: str, tree_version: int, path: str, sha256_hex: str, size: int) -> bytes:
    """What a key signs for one file: tag, key id, tree version, path,
    SHA-256 (32 raw bytes) and size (decimal ASCII)."""
    return length_prefixed(
        FILE_TAG,
        keyid.encode("ascii"),
        str(tree_version).encode("ascii"),
        path.encode("utf-8"),
        bytes.fromhex(sha256_hex),
        str(size).encode("ascii"),
    )


def file_message_v2(keyid: str, tree_name: str, path: str, sha256_hex: str, size: int) -> bytes:
    """What a key signs for one file of a format-2 manifest: tag, key id, tree
    name (UTF-8), path, SHA-256 (32 raw bytes) and size (decimal ASCII).

    No tree version: an unchanged file keeps its entry, and an unchanged shard
    its digest, across releases.  The signed index pins every shard, so entries
    of two releases cannot be mixed; the tag keeps v1 and v2 signatures apart.
    """
    return length_prefixed(
        FILE_TAG_V2,
        keyid.encode("ascii"),
        tree_name.encode("utf-8"),
        path.encode("utf-8"),
        bytes.fromhex(sha256_hex),
        str(size).encode("ascii"),
    )


def entry_message(manifest: Manifest, keyid: str, entry: FileEntry) -> bytes:
    """The message *keyid* must have signed for *entry* of *manifest*: v1 (with the
    tree version) in format 1, v2 (with the tree name) in format 2."""
    if manifest.format == SHARDED_FORMAT:
        return file_message_v2(keyid, manifest.name, entry.path, entry.sha256, entry.size)
    return file_message(keyid, manifest.version, entry.path, entry.sha256, entry.size)


def manifest_message(keyid: str, body: bytes) -> bytes:
    """What a key signs for the manifest: tag, key id, and the body bytes."""
    return length_prefixed(MANIFEST_TAG, keyid.encode("ascii"), body)


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest body.  Only ``verify`` produces trusted instances."""

    version: int
    created: datetime
    expires: datetime
    keyids: tuple[str, ...]
    files: Mapping[str, FileEntry]
    #: The tree's name, chosen by the signer; clients may pin it (``name=``).
    name: str = ""
    digest: str = field(default="", compare=False)
    #: Pinned key ids whose signature over the body verified (set by ``verify``).
    signers: frozenset[str] = field(default=frozenset(), compare=False)
    #: The keys (and threshold) this release was verified against, set by
    #: ``verify``: the pinned keys, or the signers the current root names.
    #: Every file of the release is checked against the same keys.
    signing_keys: TrustedKeys | None = field(default=None, compare=False)
    #: 1, or 2 (v2 file messages; with ``shards``, the entries live in shards).
    format: int = FORMAT_VERSION
    #: Format 2: the pinned shards, sorted by first path; ``files`` is then empty.
    shards: tuple[ShardRef, ...] = ()

    def shard_range(self, index: int) -> tuple[str, str | None]:
        """The paths shard *index* holds: from its first path, up to (not
        including) the next shard's (None: to the end)."""
        after = self.shards[index + 1].first if index + 1 < len(self.shards) else None
        return self.shards[index].first, after

    @cached_property
    def directories(self) -> DirectoryIndex:
        """Every directory that holds a signed file, ``""`` being the root.

        A set built once per manifest in O(n log n); membership costs two
        binary searches whatever the depth (dirindex.py: a set of every
        prefix string was quadratic in the depth, under the import lock).
        """
        return DirectoryIndex(self.files)

    def children(self, directory: str) -> list[str]:
        """Names directly inside *directory* (files and subdirectories)."""
        return self.directories.children(directory)


#: The manifest's signatures and its (unparsed) body.
SignedManifestFile = SignedFile


def split_manifest_file(data: bytes) -> SignedFile:
    """Split the file into signature lines and body, parsing nothing else.

    The body is parsed only after its signatures verify.
    """
    return split_signed_file(data, magic=MAGIC, what="manifest")


def _int(value: object, what: str, upper: int = MAX_VERSION) -> int:
    return bounded_int(value, f"manifest {what}", upper)


def parse_manifest_body(body: bytes) -> Manifest:
    """Parse a body (after its signatures verified) into a :class:`Manifest`."""
    obj = load_json(body, "manifest")
    expected = {"created", "expires", "files", "format", "keyids", "type", "version"}
    if obj.get("format") == SHARDED_FORMAT:
        expected.add("shards")
    if set(obj) - {"name"} != expected:
        raise ManifestFormatError(
            f"manifest body keys {sorted(obj)} are not {sorted(expected)} (and optional 'name')"
        )
    name = obj.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ManifestFormatError("manifest name is not a printable string of at most 200 chars")
    fmt = obj["format"]
    if (
        obj["type"] != BODY_TYPE
        or type(fmt) is not int
        or fmt not in (FORMAT_VERSION, SHARDED_FORMAT)
    ):
        raise ManifestFormatError("manifest body is not a secure-urlimport v1 manifest")
    shards = parse_shard_refs(obj["shards"]) if fmt == SHARDED_FORMAT else ()
    files_raw = obj["files"]
    if not isinstance(files_raw, dict) or len(files_raw) > MAX_FILES:
        raise ManifestFormatError("manifest files is not an object of at most a million entries")
    keyids = obj["keyids"]
    if not isinstance(keyids, list) or not all(isinstance(k, str) for k in keyids):
        raise ManifestFormatError("manifest keyids is not a list of strings")
    for keyid in keyids:
        check_keyid(keyid)
    if shards and files_raw:
        raise ManifestFormatError("a sharded manifest lists files itself: each must be in a shard")
    files = {path: parse_entry(path, raw) for path, raw in files_raw.items()}
    folded: dict[str, str] = {}
    for path in files:
        other = folded.setdefault(path.casefold(), path)
        if other != path:
            raise ManifestFormatError(f"manifest paths {other!r} and {path!r} differ only in case")
    return Manifest(
        version=_int(obj["version"], "version"),
        created=parse_time(obj["created"], "manifest created time"),
        expires=parse_time(obj["expires"], "manifest expiry time"),
        keyids=tuple(keyids),
        files=files,
        name=name,
        digest=hashlib.sha256(body).hexdigest(),
        format=fmt,
        shards=shards,
    )


def encode_body(manifest: Manifest) -> bytes:
    """The body bytes for *manifest*: sorted keys, one file per line."""
    head = {
        "created": format_time(manifest.created),
        "expires": format_time(manifest.expires),
        "format": manifest.format,
        "keyids": list(manifest.keyids),
        "name": manifest.name,
        "type": BODY_TYPE,
        "version": manifest.version,
    }
    # One file per line keeps diffs of published manifests readable.
    lines = [encode_entry(entry) for _, entry in sorted(manifest.files.items())]
    files_text = "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"
    head_text = json.dumps(head, sort_keys=True, indent=1)
    if manifest.format == SHARDED_FORMAT:
        head_text = head_text[:-2] + ',\n "shards": ' + encode_shard_refs(manifest.shards) + "\n}"
    body_text = head_text[:-2] + ',\n "files": ' + files_text + "\n}\n"
    return body_text.encode("utf-8")


def encode_manifest(body: bytes, signatures: Sequence[tuple[str, bytes]]) -> bytes:
    return encode_signed_file(MAGIC, body, signatures)
