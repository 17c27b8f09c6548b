"""The one exception tree of secure_urlimport.

Every failure the library reports is a :class:`SecureImportError`, which is an
:class:`ImportError`, so an ``import`` statement that cannot be satisfied safely
fails the way Python programs already expect.  Errors from ``requests`` and
``cryptography`` are translated at the boundary (``transport`` and ``keys``) and
never leak.

::

    SecureImportError(ImportError)
    ├── InsecureURLError            the URL is not https://
    ├── ConfigurationError          a bad argument: key, threshold, option
    │   └── ExtensionModulesOffError  the tree's compiled module, with extension_modules=False
    ├── SigningError                a tree cannot be signed (``.problems``)
    ├── KeyFileError                a key file cannot be read
    │   └── WrongPassphraseError
    ├── VerificationError           the bytes are not what a pinned key signed
    │   ├── ManifestFormatError     the manifest cannot be parsed
    │   ├── BadSignatureError       a signature does not verify
    │   ├── UntrustedKeyError       signed, but not by enough pinned keys
    │   ├── NotInManifestError      the file is not in the signed manifest
    │   ├── TamperedFileError       size or SHA-256 differs from the manifest
    │   ├── ExpiredManifestError    the manifest's expiry time has passed
    │   ├── WrongTreeError          the manifest names another tree than pinned
    │   ├── RollbackError           older (or rewritten) release than one seen
    │   ├── UntrustedRootError      a root not signed as the root chain requires
    │   └── ExpiredRootError        the newest trusted root's expiry has passed
    └── DownloadError               the bytes could not be fetched
        ├── HTTPStatusError         non-200 answer (``.status``)
        ├── DownloadTimeoutError    the whole-download deadline passed
        ├── ResponseTooLargeError   more bytes than allowed or announced
        ├── TLSError                certificate or hostname check failed
        └── RedirectError           redirect to another origin or scheme

And one warning, :class:`OfflineFallbackWarning` (a :class:`UserWarning`): the
manifest could not be fetched, so a verified cached release was used.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

__all__ = [
    "BadSignatureError",
    "ConfigurationError",
    "DownloadError",
    "DownloadTimeoutError",
    "ExpiredManifestError",
    "ExpiredRootError",
    "ExtensionModulesOffError",
    "HTTPStatusError",
    "InsecureURLError",
    "KeyFileError",
    "ManifestFormatError",
    "NotInManifestError",
    "OfflineFallbackWarning",
    "RedirectError",
    "ResponseTooLargeError",
    "RollbackError",
    "SecureImportError",
    "SigningError",
    "TLSError",
    "TamperedFileError",
    "UntrustedKeyError",
    "UntrustedRootError",
    "VerificationError",
    "WrongPassphraseError",
    "WrongTreeError",
    "redact",
    "shown",
]

#: How much of one server- or proxy-chosen string a message quotes.
SHOWN_CHARS = 200


def shown(text: object, limit: int | None = SHOWN_CHARS) -> str:
    """*text* fit to quote in a message: every character that is not printable
    (ESC, BEL, CR, C1 controls, bidi overrides) as a visible escape, and at most
    *limit* characters of it (None: no cut).

    Servers and proxies choose redirect targets, reason texts and header
    values; quoted raw, ESC sequences would retitle a terminal or rewrite
    what an operator reads, and a 64 KiB value would bury the advice.  Every
    such string passes through here before it reaches an exception or a log.
    """
    raw = str(text)
    cut = limit is not None and len(raw) > limit
    if cut:
        raw = raw[:limit]
    escaped = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in raw
    )
    return f"{escaped}... ({len(str(text))} chars)" if cut else escaped


def redact(url: str) -> str:
    """*url* without any ``user:password@``, so a credential never lands in a
    message, a repr or a log.

    The userinfo is everything up to the last ``@`` before the first ``/``
    after ``scheme://`` (or a leading ``//``; else from the start, for a
    proxy written ``user:password@host:port``).  That may hide more than a
    URL parser would call userinfo, never less.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = ("//", url[2:]) if url.startswith("//") else ("", url)
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return url
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}"


class SecureImportError(ImportError):
    """Root of every error raised by secure_urlimport.

    ``name`` is the module being imported when known, ``path`` the URL involved
    (the standard :class:`ImportError` attributes).
    """

    def __init__(self, msg: str, *, name: str | None = None, path: str | None = None) -> None:
        super().__init__(msg, name=name, path=path)

    def __str__(self) -> str:
        return str(self.msg)

    def for_module(self, name: str) -> SecureImportError:
        """A copy of this error that names the module whose import it stopped."""
        prefix = f"cannot import {name!r}: "
        msg = str(self.msg)
        if msg.startswith(prefix):
            return self
        renamed = copy.copy(self)
        renamed.msg = prefix + msg
        renamed.args = (renamed.msg,)
        renamed.name = name
        return renamed


class InsecureURLError(SecureImportError):
    """The URL does not use https:// (code is never fetched over anything else)."""


class ConfigurationError(SecureImportError):
    """An argument cannot be used: a malformed public key, a bad threshold or option."""


class ExtensionModulesOffError(ConfigurationError):
    """The signed tree has the module only as a compiled extension module
    (``.so``/``.pyd``), and ``Config(extension_modules=False)`` (or a platform
    without POSIX file ownership) keeps those from being loaded."""


class SigningError(SecureImportError):
    """The tree cannot be signed; ``problems`` lists every reason."""

    def __init__(self, msg: str, problems: Sequence[str] = ()) -> None:
        super().__init__(msg)
        self.problems = list(problems)


class KeyFileError(SecureImportError):
    """A private or public key file cannot be read or has the wrong format."""


class WrongPassphraseError(KeyFileError):
    """The passphrase does not decrypt the private key file."""


class VerificationError(SecureImportError):
    """The bytes offered are not what the pinned key(s) signed."""


class ManifestFormatError(VerificationError):
    """The manifest (or a root document) is truncated, garbled or not in the supported format."""


class BadSignatureError(VerificationError):
    """A signature does not verify against the message it should sign."""


class UntrustedKeyError(VerificationError):
    """The signatures present are not by enough of the pinned keys."""


class NotInManifestError(VerificationError):
    """The module or file is not listed in the signed manifest."""


class TamperedFileError(VerificationError):
    """The file's size or SHA-256 differs from the signed manifest."""


class ExpiredManifestError(VerificationError):
    """The manifest's expiry time has passed: the publisher must re-sign."""


class WrongTreeError(VerificationError):
    """The manifest is validly signed, but for another tree than the one pinned by name."""


class RollbackError(VerificationError):
    """The server offers an older release, or a different one under a seen version."""


class UntrustedRootError(VerificationError):
    """A root document that the chain from the pinned root keys does not reach:
    signed by too few of the previous or of its own root keys, a skipped
    version, another tree's root, or a chain longer than the client walks."""


class ExpiredRootError(VerificationError):
    """The newest root the chain reaches has expired: the root key holders must
    publish a new root (``secure-urlimport root update``)."""


class DownloadError(SecureImportError):
    """The bytes could not be downloaded."""


class HTTPStatusError(DownloadError):
    """The server answered with a status other than 200."""

    status: int = 0


class DownloadTimeoutError(DownloadError):
    """The download did not finish within its deadline."""


class ResponseTooLargeError(DownloadError):
    """The response is larger than the limit, or than the size the manifest signs."""


class TLSError(DownloadError):
    """The TLS handshake failed: untrusted certificate or wrong hostname."""


class RedirectError(DownloadError):
    """A redirect to another origin, to plain http, or too many redirects."""


class OfflineFallbackWarning(UserWarning):
    """The manifest could not be fetched (the network, a 5xx), so the cached
    release, verified again and not expired, is used: ``Config(offline_fallback=False)``
    turns this off."""
