"""The root chain walk: the I/O half of ``_trust/root_chain.py``.

On each manifest fetch, before the manifest is verified, a tree pinned by its
root keys (``root=``) walks from the newest root it trusts to the newest one
published, from the same source (base URL or mirror) as the manifest:

- it starts from the root trusted in this process, else the one stored
  beside the rollback records (``StateStore.load_root``, re-checked with
  ``TrustedRoot.from_store``), else from the pin: ``root.1``, ``root.2``, …
  up to the first version the pinned root keys signed (``TrustedRoot.from_pin``);
- then it asks for version N+1 until the server answers 404 (or 403, which
  object stores answer for a missing key), handing each to
  ``TrustedRoot.advance``; any other failure (5xx, TLS, timeout, a body over
  ``MAX_ROOT_BYTES``) fails the manifest fetch like a manifest download;
- at most ``MAX_ROOT_STEPS`` versions per walk (an endless chain is an
  error, not a hang); the progress made is kept, so a client far behind
  catches up over several fetches;
- the newest root must not have expired.

Every root the chain trusted is kept (in memory and, atomically and 0600, on
disk) even when a later step fails.  The trust decisions are all
``TrustedRoot``'s; :func:`walk_chain` is shared with the CI gate, which reads
the versions from a directory or with its own fetcher.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from .. import forksafe
from .._format.keys import TrustedKeys
from .._format.root import MAX_ROOT_BYTES, Root, root_file_name
from .._net.fetcher import Fetcher
from .._store.state import StateStore
from .._trust.root_chain import MAX_ROOT_STEPS, TrustedRoot
from ..errors import HTTPStatusError, SecureImportError, UntrustedRootError

__all__ = ["RootOfTrust", "fetch_root", "pin_id", "walk_chain"]

log = logging.getLogger("secure_urlimport")

#: Version -> the published root's bytes, or None if there is no such version.
RootReader = Callable[[int], "bytes | None"]
#: Version -> where that root is (named in messages).
RootWhere = Callable[[int], str]


def pin_id(pin: TrustedKeys) -> str:
    """What the stored root is filed under besides the URL: the pinned root
    key ids and threshold, so a changed pin starts afresh."""
    return f"{','.join(pin.keyids)}/{pin.threshold}"


def fetch_root(fetcher: Fetcher, url: str) -> bytes | None:
    """The root at *url*, or None when the server says there is none (404, 403)."""
    try:
        return fetcher.fetch(url, max_bytes=MAX_ROOT_BYTES)
    except HTTPStatusError as exc:
        if exc.status in (403, 404):
            return None
        raise


def _first_from_pin(
    pin: TrustedKeys, read: RootReader, where: RootWhere, max_steps: int
) -> tuple[TrustedRoot, int]:
    """The lowest published root the pinned keys vouch for, and the versions read."""
    for version in range(1, max_steps + 1):
        data = read(version)
        if data is None:
            if version == 1:
                raise UntrustedRootError(
                    f"no root is published at {where(1)}: the tree is pinned by its root "
                    "keys (root=), but its publisher has not made a root; the publisher "
                    "runs 'secure-urlimport root init TREE --root-key R.key --signer S.pub', "
                    "or pin the signing key with pubkey= instead"
                )
            raise UntrustedRootError(
                f"none of the roots {where(1)} to version {version - 1} is signed by the "
                f"pinned root key(s) {', '.join(pin.keyids)}: check the root= key you "
                "pinned, or ask the publisher to sign a root with it"
            )
        trusted = TrustedRoot.from_pin(data, pin, url=where(version))
        if trusted is not None:
            return trusted, version
    raise UntrustedRootError(
        f"none of the first {max_steps} roots at {where(1)} is signed by the pinned "
        f"root key(s) {', '.join(pin.keyids)}: check the root= key you pinned"
    )


def walk_chain(
    start: TrustedRoot | None,
    pin: TrustedKeys,
    read: RootReader,
    *,
    where: RootWhere,
    now: datetime,
    keep: Callable[[TrustedRoot], None] | None = None,
    max_steps: int = MAX_ROOT_STEPS,
) -> TrustedRoot:
    """From *start* (None: from *pin*) to the newest root *read* offers.

    *keep(trusted)* is called with the newest root reached, also when a later
    step fails, so that progress survives; expiry is checked last.
    """
    steps = 0
    if start is None:
        trusted, steps = _first_from_pin(pin, read, where, max_steps)
    else:
        trusted = TrustedRoot(start.root, start.data)  # advance() changes it in place
    try:
        while True:
            data = read(trusted.next_version)
            if data is None:
                break
            if steps >= max_steps:
                raise UntrustedRootError(
                    f"the root chain at {where(trusted.next_version)} goes on past "
                    f"{max_steps} versions walked at once (version {trusted.root.version} "
                    "reached and kept): a fetch walks at most that many. The next fetch "
                    "(importlib.invalidate_caches(), or a restart) goes on from there; if "
                    "the publisher did not publish that many roots, the server is lying"
                )
            trusted.advance(data, url=where(trusted.next_version))
            steps += 1
    finally:
        if keep is not None:
            keep(trusted)
    trusted.check_expiry(now=now, url=where(trusted.root.version))
    return trusted


class RootOfTrust:
    """The newest root one tree trusts: in memory, on disk, and walked forward
    before each manifest fetch.  Thread- and fork-safe; no lock is held while
    it downloads (a thread waiting for it may hold the import lock)."""

    def __init__(self, url: str, pin: TrustedKeys, fetcher: Fetcher, state: StateStore) -> None:
        self.url = url  # the tree's identity: the stored root is filed under it
        self.pin = pin
        self._fetcher = fetcher
        self._state = state
        self._pin_id = pin_id(pin)
        self._lock = forksafe.Lock()
        self._trusted: TrustedRoot | None = None
        self._loaded = False

    @property
    def newest(self) -> Root | None:
        """The newest root trusted so far (None before the first walk)."""
        with self._lock:
            return self._trusted.root if self._trusted is not None else None

    def update(self, base: str, *, now: datetime) -> Root:
        """Walk the chain at *base* (the tree URL or a mirror); the newest root."""
        start = self._start()
        try:
            trusted = walk_chain(
                start,
                self.pin,
                lambda version: fetch_root(self._fetcher, f"{base}/{root_file_name(version)}"),
                where=lambda version: f"{base}/{root_file_name(version)}",
                now=now,
                keep=self._keep,
            )
        except SecureImportError as exc:
            log.debug("root chain at %s refused: %s", base, exc)
            raise
        log.debug("root chain at %s: version %d trusted", base, trusted.root.version)
        return trusted.root

    def _start(self) -> TrustedRoot | None:
        with self._lock:
            if self._trusted is not None or self._loaded:
                return self._trusted
        stored = self._state.load_root(self.url, self._pin_id)
        trusted = None
        if stored is not None:
            try:
                trusted = TrustedRoot.from_store(stored, url=f"{self.url} (stored root)")
            except SecureImportError as exc:
                log.warning(
                    "ignoring the stored root of %s, which does not verify: %s", self.url, exc
                )
        with self._lock:
            self._loaded = True
            if self._trusted is None:
                self._trusted = trusted
            return self._trusted

    def _keep(self, trusted: TrustedRoot) -> None:
        # Under the lock, file I/O only: two threads' roots are written in order.
        with self._lock:
            current = self._trusted
            if current is not None and current.root.version >= trusted.root.version:
                return
            self._trusted = TrustedRoot(trusted.root, trusted.data)
            stored = self._stored_newer_than(trusted.root)
            if stored is not None:
                # Another process sharing the cache directory walked further
                # (this one met a stale mirror or edge): never write an older
                # root over it, or a restart would walk again from a root whose
                # retired keys may since have leaked.  Go on from it here too.
                self._trusted = stored
                return
            self._state.store_root(self.url, self._pin_id, trusted.data)

    def _stored_newer_than(self, root: Root) -> TrustedRoot | None:
        """The stored root, if it verifies and is a newer version of *root*'s tree."""
        data = self._state.load_root(self.url, self._pin_id)
        if data is None:
            return None
        try:
            stored = TrustedRoot.from_store(data, url=f"{self.url} (stored root)")
        except SecureImportError:
            return None  # not a root any more: overwritten with the one just trusted
        if stored.root.name != root.name or stored.root.version <= root.version:
            return None
        return stored
