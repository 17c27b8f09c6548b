"""Import Python modules from an HTTPS server, refusing every byte not signed by a pinned key.

>>> import secure_urlimport
>>> secure_urlimport.install("https://code.example.com/tree", pubkey="keys/publisher.pub")
>>> import fib   # fetched, verified against the pinned Ed25519 key, then compiled

See README.md for the walk-through and SECURITY.md for the threat model and formats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._format.keys import PubKeyArg
from ._import.finder import Importer
from ._net.fetcher import Fetcher, Validators
from .api import (
    UnpinnedURLWarning,
    install,
    install_path_hook,
    remove_path_hook,
    trust,
    uninstall,
)
from .config import Config
from .errors import (
    BadSignatureError,
    ConfigurationError,
    DownloadError,
    DownloadTimeoutError,
    ExpiredManifestError,
    ExpiredRootError,
    ExtensionModulesOffError,
    HTTPStatusError,
    InsecureURLError,
    KeyFileError,
    ManifestFormatError,
    NotInManifestError,
    OfflineFallbackWarning,
    RedirectError,
    ResponseTooLargeError,
    RollbackError,
    SecureImportError,
    TamperedFileError,
    TLSError,
    UntrustedKeyError,
    UntrustedRootError,
    VerificationError,
    WrongPassphraseError,
    WrongTreeError,
)
from .options import Options

if TYPE_CHECKING:
    from .publish.public import (
        PrivateKey,
        PublicKey,
        RootResult,
        SignResult,
        generate_key,
        init_root,
        load_private_key,
        save_key_pair,
        sign_tree,
        update_root,
    )

__version__ = "0.1.0"

__all__ = [
    "BadSignatureError",
    "Config",
    "ConfigurationError",
    "DownloadError",
    "DownloadTimeoutError",
    "ExpiredManifestError",
    "ExpiredRootError",
    "ExtensionModulesOffError",
    "Fetcher",
    "HTTPStatusError",
    "Importer",
    "InsecureURLError",
    "KeyFileError",
    "ManifestFormatError",
    "NotInManifestError",
    "OfflineFallbackWarning",
    "Options",
    "PrivateKey",
    "PubKeyArg",
    "PublicKey",
    "RedirectError",
    "ResponseTooLargeError",
    "RollbackError",
    "RootResult",
    "SecureImportError",
    "SignResult",
    "TLSError",
    "TamperedFileError",
    "UnpinnedURLWarning",
    "UntrustedKeyError",
    "UntrustedRootError",
    "Validators",
    "VerificationError",
    "WrongPassphraseError",
    "WrongTreeError",
    "__version__",
    "generate_key",
    "init_root",
    "install",
    "install_path_hook",
    "load_private_key",
    "remove_path_hook",
    "save_key_pair",
    "sign_tree",
    "trust",
    "uninstall",
    "update_root",
]

#: The publisher's functions (publish/public.py), loaded on first use: a consumer
#: that only imports never pays for the key-file and signing code.
_PUBLISHING = frozenset(
    {
        "PrivateKey",
        "PublicKey",
        "RootResult",
        "SignResult",
        "generate_key",
        "init_root",
        "load_private_key",
        "save_key_pair",
        "sign_tree",
        "update_root",
    }
)


def __getattr__(name: str) -> object:
    if name in _PUBLISHING:
        from .publish import public as publishing

        return getattr(publishing, name)
    raise AttributeError(f"module 'secure_urlimport' has no attribute {name!r}")
