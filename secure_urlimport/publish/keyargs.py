"""Key arguments of the root commands: a ``.pub`` where a public key belongs, a key
file where a signer belongs, and a key id or ``.pub`` for what is removed.

The common mistake, a root's private key file given as ``--signer`` (or a
``.pub`` as ``--root-key``), is refused naming which file is which, before
any passphrase is asked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._format.keys import PUB_PREFIX, PublicKey, load_public_keys
from ..errors import ConfigurationError, SecureImportError
from .keyfile import MAX_FILE_BYTES, is_private_key_file, read_key_id
from .localfile import read_tree_file

__all__ = ["key_id_arg", "public_key_arg", "signer_key_id"]

_KEYID = re.compile(r"[0-9a-f]{16}")
#: RFC 7512 token URIs (``publish/signers.py``): nothing to read before the token.
_URI_SCHEME = "pkcs11:"


def _head(path: Path) -> bytes | None:
    try:
        return read_tree_file(path, MAX_FILE_BYTES)
    except OSError:
        return None  # reported by the loader, with its own message


def public_key_arg(value: str | os.PathLike[str] | PublicKey, option: str) -> PublicKey:
    """The public key named by *value* (a ``.pub`` file, its text, a key) for *option*."""
    if isinstance(value, PublicKey):
        return value
    data = _head(Path(value)) if not str(value).startswith(PUB_PREFIX + " ") else None
    if data is not None and is_private_key_file(data):
        raise ConfigurationError(
            f"{option} {value} is a private key file; give its public key (the .pub "
            "written beside it by keygen): a root lists public keys only, and a private "
            "key never leaves its owner"
        )
    try:
        return load_public_keys(value if isinstance(value, str) else Path(value))[0]
    except SecureImportError as exc:
        raise ConfigurationError(f"{option} {value}: {exc}") from None


def key_id_arg(value: str | os.PathLike[str] | PublicKey, option: str) -> str:
    """A key id (16 hex digits) as given, or the id of a ``.pub`` file or key."""
    if isinstance(value, str) and _KEYID.fullmatch(value) and not os.path.lexists(value):
        return value
    return public_key_arg(value, option).keyid


def signer_key_id(spec: str | os.PathLike[str], option: str) -> str | None:
    """The key id of the private key *spec* names, read from the file's clear
    header (no passphrase); None for a token URI (known once the token is open).

    A ``.pub`` file here is refused: it cannot sign.
    """
    if str(spec).startswith(_URI_SCHEME):
        return None
    path = Path(spec)
    data = _head(path)
    if data is not None and data.lstrip().startswith(PUB_PREFIX.encode("ascii") + b" "):
        raise ConfigurationError(
            f"{option} {spec} is a public key file (.pub), which cannot sign; give the "
            "private key file (.key) it was written beside"
        )
    try:
        return read_key_id(path)
    except SecureImportError as exc:
        raise ConfigurationError(f"{option} {spec}: {exc}") from None
