"""Import Python modules from an HTTPS server, refusing every byte not signed by a pinned key.

>>> import secure_urlimport
>>> secure_urlimport.install("https://code.example.com/tree", pubkey="keys/publisher.pub")
>>> import fib   # fetched, verified against the pinned Ed25519 key, then compiled

See README.md for the walk-through and SECURITY.md for the threat model and formats.
"""

from __future__ import annotations

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
    HTTPStatusError,
    InsecureURLError,
    KeyFileError,
    ManifestFormatError,
    NotInManifestError,
    RedirectError,
    ResponseTooLargeError,
    RollbackError,
    SecureImportError,
    TamperedFileError,
    TLSError,
    UntrustedKeyError,
    VerificationError,
    WrongPassphraseError,
    WrongTreeError,
)
from .finder import Importer
from .transport import Fetcher

__version__ = "0.1.0"

__all__ = [
    "BadSignatureError",
    "Config",
    "ConfigurationError",
    "DownloadError",
    "DownloadTimeoutError",
    "ExpiredManifestError",
    "Fetcher",
    "HTTPStatusError",
    "Importer",
    "InsecureURLError",
    "KeyFileError",
    "ManifestFormatError",
    "NotInManifestError",
    "RedirectError",
    "ResponseTooLargeError",
    "RollbackError",
    "SecureImportError",
    "TLSError",
    "TamperedFileError",
    "UnpinnedURLWarning",
    "UntrustedKeyError",
    "VerificationError",
    "WrongPassphraseError",
    "WrongTreeError",
    "__version__",
    "install",
    "install_path_hook",
    "remove_path_hook",
    "trust",
    "uninstall",
]
