"""Where a publisher's signing key comes from: a key file, or (issue #13) a token.

Every command that signs (``sign``, ``root init``, ``root update``) turns its
``--key`` arguments into :class:`~.._format.keys.Signer` values here, so a new
kind of key is added in one place.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .._format.keys import Signer
from .keyfile import load_private_key, passphrase_from_env_or_prompt
from .pkcs11uri import is_pkcs11_uri

__all__ = ["load_signer"]


def load_signer(spec: str | Path) -> Signer:
    """The signer named by *spec*: a ``pkcs11:`` URI (RFC 7512) of a key in a
    token (``publish/pkcs11.py``; its PIN from the URI, ``$SECURE_URLIMPORT_PKCS11_PIN``
    or the terminal), else a private key file (its passphrase from
    ``$SECURE_URLIMPORT_PASSPHRASE`` or the terminal)."""
    if is_pkcs11_uri(spec):
        from .pkcs11 import load_token_signer  # python-pkcs11 only for a token key

        return load_token_signer(str(spec))
    path = Path(spec)
    return load_private_key(path, functools.partial(passphrase_from_env_or_prompt, path))
