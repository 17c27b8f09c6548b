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

__all__ = ["load_signer"]


def load_signer(spec: str | Path) -> Signer:
    """The signer named by *spec*: a private key file (its passphrase from
    ``$SECURE_URLIMPORT_PASSPHRASE`` or the terminal)."""
    path = Path(spec)
    return load_private_key(path, functools.partial(passphrase_from_env_or_prompt, path))
