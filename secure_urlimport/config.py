"""Every knob of the client in one frozen dataclass, and where client state lives."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigurationError, redact

__all__ = ["CACHE_DIR_ENV", "Config", "default_cache_dir"]

CACHE_DIR_ENV = "SECURE_URLIMPORT_CACHE_DIR"

MiB = 1024 * 1024
MAX_TIMEOUT = 86_400
MAX_AGE = 366 * 86_400


@dataclass(frozen=True)
class Config:
    """Options for one trusted URL.

    ``install()`` and ``trust()`` take the common ones (``cafile``, ``headers``,
    ``timeout``, ``threshold``) as keyword arguments and everything else
    through ``config=Config(...)``.
    """

    #: PEM bundle of CA certificates to trust instead of the default store.
    #: Passed to every request, so it wins over ``REQUESTS_CA_BUNDLE``.
    cafile: str | None = None
    #: Extra request headers (e.g. ``Authorization``); sent to this origin only.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Seconds allowed, connection to last byte, for everything one source (the
    #: URL or a mirror) serves for one step of an import: the manifest (with its
    #: no-cache retry), or one module (its bundle, its file, a no-cache retry).
    timeout: float = 30.0
    #: How many distinct pinned keys must sign the manifest and each file.
    threshold: int = 1
    #: The tree name the manifest must carry (``sign --name``); None accepts any.
    #: Pin it when one key signs several trees, so one cannot stand in for another.
    tree_name: str | None = None
    #: Client certificate for mutual TLS: a PEM file with cert and key, or a
    #: ``(certfile, keyfile)`` pair.
    client_cert: str | tuple[str, str] | None = None
    #: HTTP basic credentials ``(user, password)``; sent to this tree's origin only.
    auth: tuple[str, str] | None = None
    #: Proxy for every request (``http://host:port``, CONNECT tunnel), instead
    #: of ``HTTPS_PROXY``/``NO_PROXY`` from the environment.
    proxy: str | None = None
    #: Where rollback state and the verified-file cache live; default: see
    #: default_cache_dir().
    cache_dir: Path | None = None
    #: Upper bound on the manifest's size.
    max_manifest_bytes: int = 16 * MiB
    #: Upper bound on any single file, whatever size the manifest states.
    max_file_bytes: int = 64 * MiB
    #: Same-origin redirects followed before giving up.
    max_redirects: int = 3
    #: Downloads run in parallel when a package's modules are fetched ahead
    #: of their import; 0 fetches each file only when it is imported.
    parallel_downloads: int = 8
    #: Keep downloaded files in ``<cache_dir>/files`` (verified again on every
    #: use) and revalidate the manifest with ``If-None-Match``.
    file_cache: bool = True
    #: Keep the code compiled from verified modules in ``<cache_dir>/bytecode``,
    #: authenticated with a key only this user can read, so a warm start need
    #: not compile again (SECURITY.md, "Bytecode cache").
    bytecode_cache: bool = True
    #: Import the tree's compiled extension modules (``.so``/``.pyd`` files for
    #: this interpreter): their verified bytes, and the libraries beside them,
    #: are written to ``<cache_dir>/ext`` (private to this user, checked and
    #: verified again before each load) and loaded from there by the standard
    #: ``ExtensionFileLoader`` (SECURITY.md, "Extension modules").  False
    #: refuses them with ExtensionModulesOffError.
    extension_modules: bool = True
    #: Download the tree's bundle (all its modules in one file) on the first
    #: module not cached yet, unless its modules add up to more than this;
    #: 0 never uses the bundle.
    max_bundle_bytes: int = 32 * MiB
    #: When the manifest (or a root) cannot be fetched because of the network
    #: or the server (a refused connection, a timeout, TLS, 5xx, 408, 429 --
    #: never 4xx, never a verification failure), use the cached release if it
    #: verifies again and has not expired, with one OfflineFallbackWarning.
    #: Needs ``file_cache``.
    offline_fallback: bool = True
    #: Seconds after the last successful revalidation of the manifest within
    #: which a new process uses the cached one (verified again) without any
    #: request; 0 always revalidates.  New releases and revoked keys are then
    #: seen up to this much later.  Needs ``file_cache``.
    max_age: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= MAX_TIMEOUT:  # also refuses NaN and infinity
            raise ConfigurationError(
                f"timeout must be a positive number of seconds up to {MAX_TIMEOUT} "
                f"(a day), not {self.timeout!r}"
            )
        if not 0 <= self.max_age <= MAX_AGE:  # also refuses NaN and infinity
            raise ConfigurationError(
                f"max_age must be a number of seconds from 0 to {MAX_AGE} (a year), "
                f"not {self.max_age!r}"
            )
        if self.threshold < 1:
            raise ConfigurationError(f"threshold must be at least 1, not {self.threshold!r}")
        if self.max_redirects < 0:
            raise ConfigurationError("max_redirects cannot be negative")
        if self.parallel_downloads < 0:
            raise ConfigurationError("parallel_downloads cannot be negative")
        if self.auth is not None and (
            len(self.auth) != 2 or not all(isinstance(part, str) for part in self.auth)
        ):
            raise ConfigurationError("auth must be a (user, password) pair of strings")
        if self.auth is not None and any(k.lower() == "authorization" for k in self.headers):
            raise ConfigurationError("give auth= or an Authorization header, not both")
        if self.proxy is not None and not self.proxy.startswith(("http://", "https://")):
            raise ConfigurationError(
                "proxy must be an http:// or https:// URL such as 'http://proxy:3128'"
            )
        # A private copy, so a caller mutating its dict cannot change a live config.
        object.__setattr__(self, "headers", dict(self.headers))
        if self.auth is not None:
            object.__setattr__(self, "auth", tuple(self.auth))

    def replace(self, **changes: object) -> Config:
        """A copy with some fields changed (None values are ignored)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **given)  # type: ignore[arg-type]

    def state_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()

    def __repr__(self) -> str:
        # Header values are credentials: show only their names.
        proxy = None if self.proxy is None else redact(self.proxy)
        return (
            f"Config(cafile={self.cafile!r}, headers={sorted(self.headers)!r}, "
            f"timeout={self.timeout!r}, threshold={self.threshold!r}, "
            f"client_cert={self.client_cert!r}, cache_dir={self.cache_dir!r}, "
            f"auth={'(…)' if self.auth else None}, proxy={proxy!r})"
        )


def default_cache_dir() -> Path:
    """``$SECURE_URLIMPORT_CACHE_DIR``, else ``$XDG_CACHE_HOME/secure_urlimport``,
    else ``~/.cache/secure_urlimport``; ConfigurationError if there is no home."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative path is to be ignored
        return Path(xdg) / "secure_urlimport"
    try:
        home = Path.home()
    except RuntimeError:  # no $HOME and no passwd entry (e.g. a container's user id)
        raise ConfigurationError(
            "cannot tell where to keep client state (rollback records, cache): $HOME is "
            "not set and this user id has no passwd entry; set "
            f"{CACHE_DIR_ENV} (or pass config=Config(cache_dir=...)) to a directory of "
            "your own"
        ) from None
    return home / ".cache" / "secure_urlimport"
