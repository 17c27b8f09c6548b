"""Ed25519 keys: key ids, the ``.pub`` line format, and the set of pinned keys.

This is the only module (with ``keyfile``) that touches ``cryptography``;
its exceptions are translated here and never escape.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigurationError, KeyFileError

__all__ = [
    "PrivateKey",
    "PubKeyArg",
    "PublicKey",
    "Signer",
    "TrustedKeys",
    "key_id",
    "load_public_keys",
]

PUB_PREFIX = "ed25519"
KEYID_TAG = b"secure-urlimport/keyid/v1\x00"
KEYID_HEX_CHARS = 16
RAW_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_SingleKey: TypeAlias = "str | os.PathLike[str] | bytes | Ed25519PublicKey | PublicKey"
#: What ``install(..., pubkey=...)`` accepts: a ``.pub`` path, its text, 32 raw
#: bytes, an ``Ed25519PublicKey``, a :class:`PublicKey`, or a list, tuple or set
#: of these.
PubKeyArg: TypeAlias = "_SingleKey | Sequence[_SingleKey] | AbstractSet[_SingleKey]"


_P = 2**255 - 19
_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022
#: y coordinates of the 8 points of small order (1, 2, 4, 8) on edwards25519.
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _ORDER_8_Y, _P - _ORDER_8_Y})


def _is_small_order(raw: bytes) -> bool:
    """True for an encoding of a small-order point, canonical or not.

    ``cryptography`` loads any 32 bytes as a public key and does not reject
    these; with one pinned, a keyless "signature" (R = identity, S = 0)
    verifies for a share of messages (all of them for the identity).
    """
    y = (int.from_bytes(raw, "little") & ((1 << 255) - 1)) % _P
    return y in _SMALL_ORDER_Y


def key_id(raw_public: bytes) -> str:
    """16 hex digits naming a public key (a domain-separated SHA-256 prefix)."""
    return hashlib.sha256(KEYID_TAG + raw_public).hexdigest()[:KEYID_HEX_CHARS]


def _raw(key: Ed25519PublicKey) -> bytes:
    # Imported here: cryptography's serialization package (SSH, PKCS#12, ...)
    # costs ~20 ms to import, and keys given as bytes or .pub files never need it.
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class PublicKey:
    """A pinned Ed25519 public key and its key id."""

    __slots__ = ("_key", "keyid", "raw")

    def __init__(self, key: Ed25519PublicKey, raw: bytes | None = None) -> None:
        """*raw*: the key's 32 bytes, when the caller has them (saves the import)."""
        raw = _raw(key) if raw is None else raw
        if _is_small_order(raw):
            raise ConfigurationError(
                "refusing a small-order Ed25519 public key: it would accept signatures "
                "made without any private key; pin the publisher's real key"
            )
        self._key = key
        self.raw = raw
        self.keyid = key_id(self.raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if len(raw) != RAW_KEY_BYTES:
            raise ConfigurationError(
                f"an Ed25519 public key is {RAW_KEY_BYTES} bytes, not {len(raw)}"
            )
        try:
            return cls(Ed25519PublicKey.from_public_bytes(raw), raw)
        except ValueError as exc:
            raise ConfigurationError(f"not an Ed25519 public key: {exc}") from None

    @classmethod
    def from_line(cls, text: str, *, source: str = "public key text") -> PublicKey:
        """Parse the ``.pub`` format: ``ed25519 <keyid> <base64 key>``."""
        fields = text.strip().split()
        if len(fields) != 3 or fields[0] != PUB_PREFIX:
            raise KeyFileError(
                f"{source}: expected one line 'ed25519 <keyid> <base64 key>' "
                "(as written by 'secure-urlimport keygen')"
            )
        try:
            raw = base64.b64decode(fields[2], validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character (ValueError itself)
            raise KeyFileError(f"{source}: the key is not valid base64") from None
        key = cls.from_raw(raw)
        if key.keyid != fields[1]:
            raise KeyFileError(
                f"{source}: key id {fields[1]} does not match the key (its id is {key.keyid}); "
                "the file is damaged"
            )
        return key

    def to_line(self) -> str:
        return f"{PUB_PREFIX} {self.keyid} {base64.b64encode(self.raw).decode('ascii')}\n"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """True only if *signature* is this key's valid signature of *message*."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"<PublicKey ed25519 {self.keyid}>"


class Signer(Protocol):
    """Anything that makes Ed25519 signatures: a :class:`PrivateKey` in memory,
    or a key that never leaves a hardware token (``publish/pkcs11.py``)."""

    @property
    def keyid(self) -> str: ...

    @property
    def public(self) -> PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


class PrivateKey:
    """An Ed25519 signing key.  Its ``repr`` never shows key material."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = PublicKey(key.public_key())

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        try:
            return cls(Ed25519PrivateKey.from_private_bytes(seed))
        except ValueError:
            raise KeyFileError("the private key is not a 32-byte Ed25519 seed") from None

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def seed(self) -> bytes:
        from cryptography.hazmat.primitives import serialization  # see _raw

        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"<PrivateKey ed25519 {self.keyid}>"


def _one_key(arg: object) -> PublicKey:
    if isinstance(arg, PublicKey):
        return arg
    if isinstance(arg, Ed25519PublicKey):
        return PublicKey(arg)
    if isinstance(arg, bytes | bytearray | memoryview):
        data = bytes(arg)
        if len(data) == RAW_KEY_BYTES:
            return PublicKey.from_raw(data)
        try:
            return PublicKey.from_line(data.decode("ascii"))
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"pubkey bytes must be {RAW_KEY_BYTES} raw key bytes or a .pub line"
            ) from None
    if isinstance(arg, str) and arg.lstrip().startswith(PUB_PREFIX + " "):
        return PublicKey.from_line(arg)
    if isinstance(arg, str | os.PathLike):
        path = Path(arg)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read public key file {str(path)!r}: {exc}") from None
        return PublicKey.from_line(text, source=str(path))
    raise ConfigurationError(
        "pubkey must be a .pub path, its text, 32 raw bytes, an Ed25519PublicKey, "
        f"or a list of these; got {type(arg).__name__}"
    )


def load_public_keys(pubkey: PubKeyArg) -> list[PublicKey]:
    """Every key named by a ``pubkey=`` argument, duplicates removed."""
    many = isinstance(pubkey, list | tuple | set | frozenset)
    items: Iterable[object] = pubkey if many else [pubkey]  # type: ignore[assignment]
    keys: dict[str, PublicKey] = {}
    for item in items:
        key = _one_key(item)
        keys.setdefault(key.keyid, key)
    if not keys:
        raise ConfigurationError("pubkey names no key: pin at least one public key")
    return list(keys.values())


@dataclass(frozen=True)
class TrustedKeys:
    """The pinned keys for one URL and how many of them must sign."""

    # No default threshold: a default is what a new caller forgets to think
    # about, and 0 would accept a manifest that no pinned key signed.
    keys: dict[str, PublicKey]
    threshold: int
    #: The root version that lists these keys as signers; None when the
    #: consumer pinned them (``pubkey=``).  Only messages use it.
    named_by: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Checked here, not only in from_arg, so no constructor can build a
        # set that accepts fewer than one signature.
        if type(self.threshold) is not int or not 1 <= self.threshold <= len(self.keys):
            raise ConfigurationError(
                f"threshold {self.threshold!r} cannot be met by {len(self.keys)} pinned key(s)"
            )

    @classmethod
    def from_arg(cls, pubkey: PubKeyArg, threshold: int) -> TrustedKeys:
        return cls({k.keyid: k for k in load_public_keys(pubkey)}, threshold)

    @property
    def keyids(self) -> list[str]:
        return sorted(self.keys)
