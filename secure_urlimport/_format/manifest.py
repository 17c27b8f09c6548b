"""The signed formats, byte for byte: signed messages and the manifest file.

No I/O and no trust decisions here: this module turns values into bytes and
bytes into values.  ``verify`` decides what to trust.  SECURITY.md documents
the formats; keep the two in step.

Manifest file::

    secure-urlimport-manifest v1\\n
    signature <keyid> <base64 Ed25519 signature>\\n    (one line per signature)
    \\n
    <body: UTF-8 JSON object, signed exactly as these bytes>

Signatures are made over length-prefixed fields (4-byte big-endian length,
then the bytes) so no two different field lists give the same message.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from ..errors import ManifestFormatError
from .dirindex import DirectoryIndex
from .keys import TrustedKeys
from .paths import path_problem
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
    "FileEntry",
    "Manifest",
    "SignedManifestFile",
    "encode_manifest",
    "file_message",
    "format_time",
    "manifest_message",
    "parse_manifest_body",
    "split_manifest_file",
]

MAGIC = b"secure-urlimport-manifest v1\n"
FORMAT_VERSION = 1
BODY_TYPE = "secure-urlimport/manifest"
FILE_TAG = b"secure-urlimport/file/v1"
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


def manifest_message(keyid: str, body: bytes) -> bytes:
    """What a key signs for the manifest: tag, key id, and the body bytes."""
    return length_prefixed(MANIFEST_TAG, keyid.encode("ascii"), body)


@dataclass(frozen=True)
class FileEntry:
    """One signed file: its path in the tree, size, SHA-256 and signatures."""

    path: str
    size: int
    sha256: str
    signatures: Mapping[str, bytes]


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


def _entry(path: object, raw: object) -> FileEntry:
    if not isinstance(path, str):
        raise ManifestFormatError(f"manifest lists a path that is not a string: {path!r}")
    if (problem := path_problem(path)) is not None:
        raise ManifestFormatError(f"manifest lists an invalid path {path!r}: {problem}")
    if not isinstance(raw, dict) or set(raw) != {"sha256", "signatures", "size"}:
        raise ManifestFormatError(f"manifest entry for {path!r} is malformed")
    sha = raw["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or sha.strip("0123456789abcdef"):
        raise ManifestFormatError(f"manifest entry for {path!r} has a malformed sha256")
    sigs = raw["signatures"]
    if not isinstance(sigs, dict) or not sigs:
        raise ManifestFormatError(f"manifest entry for {path!r} has no signatures")
    decoded: dict[str, bytes] = {}
    for keyid, sig in sigs.items():
        if not isinstance(sig, str):
            raise ManifestFormatError(f"signature for {path!r} is not a base64 string")
        check_keyid(keyid)
        try:
            decoded[keyid] = base64.b64decode(sig, validate=True)
        except ValueError:  # binascii.Error, and the plain ValueError of a non-ASCII str
            raise ManifestFormatError(f"signature for {path!r} is not base64") from None
    return FileEntry(path, _int(raw["size"], f"size of {path!r}"), sha, decoded)


def parse_manifest_body(body: bytes) -> Manifest:
    """Parse a body (after its signatures verified) into a :class:`Manifest`."""
    obj = load_json(body, "manifest")
    expected = {"created", "expires", "files", "format", "keyids", "type", "version"}
    if set(obj) - {"name"} != expected:
        raise ManifestFormatError(
            f"manifest body keys {sorted(obj)} are not {sorted(expected)} (and optional 'name')"
        )
    name = obj.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ManifestFormatError("manifest name is not a printable string of at most 200 chars")
    fmt = obj["format"]
    if obj["type"] != BODY_TYPE or type(fmt) is not int or fmt != FORMAT_VERSION:
        raise ManifestFormatError("manifest body is not a secure-urlimport v1 manifest")
    files_raw = obj["files"]
    if not isinstance(files_raw, dict) or len(files_raw) > MAX_FILES:
        raise ManifestFormatError("manifest files is not an object of at most a million entries")
    keyids = obj["keyids"]
    if not isinstance(keyids, list) or not all(isinstance(k, str) for k in keyids):
        raise ManifestFormatError("manifest keyids is not a list of strings")
    for keyid in keyids:
        check_keyid(keyid)
    files = {path: _entry(path, raw) for path, raw in files_raw.items()}
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
    )


def encode_body(manifest: Manifest) -> bytes:
    """The body bytes for *manifest*: sorted keys, one file per line."""
    files = {
        path: {
            "sha256": entry.sha256,
            "signatures": {
                k: base64.b64encode(s).decode("ascii") for k, s in sorted(entry.signatures.items())
            },
            "size": entry.size,
        }
        for path, entry in sorted(manifest.files.items())
    }
    head = {
        "created": format_time(manifest.created),
        "expires": format_time(manifest.expires),
        "format": FORMAT_VERSION,
        "keyids": list(manifest.keyids),
        "name": manifest.name,
        "type": BODY_TYPE,
        "version": manifest.version,
    }
    # One file per line keeps diffs of published manifests readable.
    lines = [json.dumps(p) + ": " + json.dumps(e, sort_keys=True) for p, e in files.items()]
    files_text = "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"
    head_text = json.dumps(head, sort_keys=True, indent=1)
    body_text = head_text[:-2] + ',\n "files": ' + files_text + "\n}\n"
    return body_text.encode("utf-8")


def encode_manifest(body: bytes, signatures: Sequence[tuple[str, bytes]]) -> bytes:
    return encode_signed_file(MAGIC, body, signatures)
