"""Signing from Python: the publisher's half of the public API.

What ``secure-urlimport keygen`` and ``sign`` do, as functions a release
script can call without reaching into internal modules::

    import secure_urlimport as su
    key = su.generate_key()
    su.save_key_pair(key, "keys/publisher", passphrase=b"...")   # .key (0600) + .pub
    key = su.load_private_key("keys/publisher.key", passphrase=b"...")
    result = su.sign_tree("build/tree", key, expires_in=timedelta(days=90))
    print(result.version, result.files, result.expires)

Every failure is a :class:`~secure_urlimport.SecureImportError` subclass
(:class:`~secure_urlimport.KeyFileError`, ``SigningError``), as on the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from .._format.keys import PrivateKey, PublicKey
from .keyfile import load_private_key as _load_private_key
from .keyfile import save_private_key, write_public_key
from .signing import DEFAULT_EXPIRY, SignResult
from .signing import sign_tree as _sign_tree

__all__ = [
    "PrivateKey",
    "PublicKey",
    "SignResult",
    "generate_key",
    "load_private_key",
    "save_key_pair",
    "sign_tree",
]


def generate_key() -> PrivateKey:
    """A new Ed25519 signing key, in memory (``key.keyid``, ``key.public``)."""
    return PrivateKey.generate()


def save_key_pair(
    key: PrivateKey, prefix: str | Path, *, passphrase: bytes | None
) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (mode 0600; sealed unless *passphrase* is None) and ``PREFIX.pub``.

    Neither file may exist already (a key overwritten by accident is lost for
    good); returns the two paths.
    """
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    save_private_key(key, key_path, passphrase)
    write_public_key(key.public, pub_path)
    return key_path, pub_path


def load_private_key(
    path: str | Path, passphrase: bytes | Callable[[], bytes] | None = None
) -> PrivateKey:
    """Read a key file written by :func:`save_key_pair` or ``secure-urlimport keygen``."""
    return _load_private_key(Path(path), passphrase)


def sign_tree(
    directory: str | Path,
    keys: PrivateKey | Sequence[PrivateKey],
    *,
    version: int | None = None,
    expires_in: timedelta = DEFAULT_EXPIRY,
    name: str | None = None,
    allow_version_jump: bool = False,
) -> SignResult:
    """Sign every file under *directory* with every key; write its manifest and bundle.

    *version* defaults to one more than the version of the tree's manifest, if
    one of *keys* signed it; a version more than 2**32 above that needs
    *allow_version_jump* (clients refuse every later release below it).
    Returns where the manifest went, the version, the file count and expiry.
    """
    chosen = [keys] if isinstance(keys, PrivateKey) else list(keys)
    return _sign_tree(
        Path(directory),
        chosen,
        version=version,
        expires_in=expires_in,
        name=name,
        allow_version_jump=allow_version_jump,
    )
