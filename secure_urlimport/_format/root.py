"""The root document, byte for byte: which keys may sign a tree, signed by the root keys.

No I/O and no trust decisions here (``_trust/root_chain.py`` decides).  The
server keeps every version beside the manifest, as ``secure-urlimport.root.N``;
consumers pin only the root keys.  SECURITY.md documents the format.

The file is the signed envelope of ``signedfile.py`` with the first line
``secure-urlimport-root v1``; each signature is over
``length_prefixed(ROOT_TAG, keyid, body)``.  The body is one JSON object,
written with sorted keys and one-space indent::

    {
     "created": "2026-12-02T00:00:00Z",
     "expires": "2027-12-02T00:00:00Z",
     "format": 1,
     "keys": {"<keyid>": "<base64 of the 32-byte Ed25519 key>", ...},
     "name": "<the tree name>",
     "root": {"keyids": ["<keyid>", ...], "threshold": 1},
     "signers": {"keyids": ["<keyid>", ...], "threshold": 1},
     "trees": {"<another tree name>": {"keyids": [...], "threshold": 1}},
     "type": "secure-urlimport/root",
     "version": 1
    }

``keys`` holds every key the roles name; ``root`` is who signs the next root,
``signers`` who signs releases of the tree called ``name``, and ``trees``
(optional, may be empty) who signs releases of other trees that share this root.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ConfigurationError, ManifestFormatError
from .keys import PublicKey, TrustedKeys
from .signedfile import (
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
    "MAX_ROOT_BYTES",
    "ROOT_PREFIX",
    "Role",
    "Root",
    "encode_root",
    "encode_root_body",
    "parse_root_body",
    "root_file_name",
    "root_message",
    "split_root_file",
]

ROOT_MAGIC = b"secure-urlimport-root v1\n"
ROOT_TAG = b"secure-urlimport/root/v1"
ROOT_TYPE = "secure-urlimport/root"
ROOT_FORMAT = 1
#: ``secure-urlimport.root.<version>``: every version stays on the server.
ROOT_PREFIX = "secure-urlimport.root."
#: A root with 64 keys and 64 signatures is ~10 KB; far more is not a root.
MAX_ROOT_BYTES = 256 * 1024
MAX_ROOT_KEYS = 256
MAX_TREES = 1024
MAX_NAME_CHARS = 200
_WHAT = "root"


def root_file_name(version: int) -> str:
    return f"{ROOT_PREFIX}{version}"


def root_message(keyid: str, body: bytes) -> bytes:
    """What a root key signs: tag, key id, and the body bytes."""
    return length_prefixed(ROOT_TAG, keyid.encode("ascii"), body)


@dataclass(frozen=True)
class Role:
    """Which keys may sign something, and how many of them must."""

    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class Root:
    """A parsed root body.  Only ``_trust.root_chain`` produces trusted instances."""

    name: str
    version: int
    created: datetime
    expires: datetime
    keys: Mapping[str, PublicKey]
    root: Role
    signers: Role
    trees: Mapping[str, Role] = field(default_factory=dict)
    digest: str = field(default="", compare=False)

    def trusted(self, role: Role) -> TrustedKeys:
        return TrustedKeys(
            {k: self.keys[k] for k in role.keyids}, role.threshold, named_by=self.version
        )

    @property
    def root_keys(self) -> TrustedKeys:
        """The keys that sign the next root (and, with their threshold, this one)."""
        return self.trusted(self.root)

    def role_for(self, tree_name: str) -> Role | None:
        """Who signs releases of *tree_name* under this root (None: not this root's tree)."""
        if tree_name == self.name:
            return self.signers
        return self.trees.get(tree_name)

    def every_signer(self) -> TrustedKeys:
        """Every key that signs releases of some tree of this root, with the
        smallest threshold: what a manifest's signatures are checked against
        before its body (and so its tree name) is parsed."""
        roles = [self.signers, *self.trees.values()]
        keyids = {k for role in roles for k in role.keyids}
        return TrustedKeys(
            {k: self.keys[k] for k in sorted(keyids)},
            min(role.threshold for role in roles),
            named_by=self.version,
        )


def split_root_file(data: bytes) -> SignedFile:
    """Split a root file into signature lines and the unparsed body."""
    return split_signed_file(data, magic=ROOT_MAGIC, what=_WHAT)


def _role(raw: object, keys: Mapping[str, PublicKey], what: str) -> Role:
    if not isinstance(raw, dict) or set(raw) != {"keyids", "threshold"}:
        raise ManifestFormatError(f"root {what} is not {{'keyids': [...], 'threshold': N}}")
    keyids = raw["keyids"]
    if not isinstance(keyids, list) or not keyids:
        raise ManifestFormatError(f"root {what} keyids is not a non-empty list")
    for keyid in keyids:
        check_keyid(keyid, _WHAT)
        if keyid not in keys:
            raise ManifestFormatError(f"root {what} names key {keyid}, which 'keys' does not hold")
    if keyids != sorted(set(keyids)):
        raise ManifestFormatError(f"root {what} keyids are not sorted and distinct")
    threshold = bounded_int(raw["threshold"], f"root {what} threshold", len(keyids), lower=1)
    return Role(tuple(keyids), threshold)


def _keys(raw: object) -> dict[str, PublicKey]:
    if not isinstance(raw, dict) or not 0 < len(raw) <= MAX_ROOT_KEYS:
        raise ManifestFormatError(f"root keys is not an object of 1 to {MAX_ROOT_KEYS} keys")
    keys: dict[str, PublicKey] = {}
    for keyid, text in raw.items():
        check_keyid(keyid, _WHAT)
        try:
            key = PublicKey.from_raw(base64.b64decode(text, validate=True))
        except (ValueError, TypeError, ConfigurationError):
            raise ManifestFormatError(f"root key {keyid} is not a base64 Ed25519 key") from None
        if key.keyid != keyid:
            raise ManifestFormatError(f"root key {keyid} is listed under the wrong id")
        keys[keyid] = key
    return keys


def _name(raw: object, what: str) -> str:
    if not isinstance(raw, str) or len(raw) > MAX_NAME_CHARS or not raw.isprintable():
        raise ManifestFormatError(f"root {what} is not a printable string of at most 200 chars")
    return raw


def parse_root_body(body: bytes) -> Root:
    """Parse a root body (after its signatures verified) into a :class:`Root`."""
    obj = load_json(body, _WHAT)
    expected = {"created", "expires", "format", "keys", "name", "root", "signers", "trees"}
    if set(obj) != expected | {"type", "version"}:
        raise ManifestFormatError(
            f"root body keys {sorted(obj)} are not {sorted(expected | {'type', 'version'})}"
        )
    fmt = obj["format"]
    if obj["type"] != ROOT_TYPE or type(fmt) is not int or fmt != ROOT_FORMAT:
        raise ManifestFormatError("root body is not a secure-urlimport v1 root")
    keys = _keys(obj["keys"])
    trees_raw = obj["trees"]
    if not isinstance(trees_raw, dict) or len(trees_raw) > MAX_TREES:
        raise ManifestFormatError(f"root trees is not an object of at most {MAX_TREES} trees")
    name = _name(obj["name"], "name")
    trees = {
        _name(t, "tree name"): _role(r, keys, f"role of tree {t!r}") for t, r in trees_raw.items()
    }
    if name in trees:
        raise ManifestFormatError(f"root lists its own tree {name!r} again under 'trees'")
    return Root(
        name=name,
        version=bounded_int(obj["version"], "root version", lower=1),
        created=parse_time(obj["created"], "root created time"),
        expires=parse_time(obj["expires"], "root expiry time"),
        keys=keys,
        root=_role(obj["root"], keys, "root role"),
        signers=_role(obj["signers"], keys, "signers role"),
        trees=trees,
        digest=hashlib.sha256(body).hexdigest(),
    )


def _role_json(role: Role) -> dict[str, Any]:
    return {"keyids": sorted(role.keyids), "threshold": role.threshold}


def encode_root_body(root: Root) -> bytes:
    """The canonical body bytes for *root* (sorted keys, one-space indent, final newline)."""
    used = {k for role in (root.root, root.signers, *root.trees.values()) for k in role.keyids}
    if used != set(root.keys):
        raise ConfigurationError("a root must hold exactly the keys its roles name")
    obj = {
        "created": format_time(root.created),
        "expires": format_time(root.expires),
        "format": ROOT_FORMAT,
        "keys": {k: base64.b64encode(root.keys[k].raw).decode("ascii") for k in sorted(root.keys)},
        "name": root.name,
        "root": _role_json(root.root),
        "signers": _role_json(root.signers),
        "trees": {t: _role_json(r) for t, r in sorted(root.trees.items())},
        "type": ROOT_TYPE,
        "version": root.version,
    }
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def encode_root(body: bytes, signatures: Sequence[tuple[str, bytes]]) -> bytes:
    return encode_signed_file(ROOT_MAGIC, body, signatures)
