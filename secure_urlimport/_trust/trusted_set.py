"""What is trusted now for one tree: the rules that pick the current manifest.

Modelled on python-tuf's ``TrustedMetadataSet``: bytes, the pinned keys, the
clock and the stored rollback records go in; the manifest to use comes out, or
a :class:`~secure_urlimport.errors.SecureImportError`.  No I/O, no lock, no
clock of its own: the caller (the tree) downloads, reads the records from disk,
holds its lock around :meth:`TrustedManifests.accept` and persists afterwards,
so every rule here is unit-tested without a server.

The rules, in order: the signature threshold (every valid pinned signer is
counted, because rollback records are kept per signer), the pinned tree name,
expiry, the rollback floor (the newest release recorded for a key still pinned,
or accepted in this process), and "never go back" within a process (a thread
that verified an older release while another accepted a newer one keeps the
newer one).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .._format.keys import TrustedKeys
from .._format.manifest import Manifest
from .verify import TrustedState, verify_manifest

__all__ = ["TrustedManifests"]


class TrustedManifests:
    """The newest manifest of one tree accepted in this process, and the rules to replace it."""

    def __init__(self, trusted: TrustedKeys, *, name: str | None) -> None:
        self.trusted = trusted
        self.name = name
        #: The newest manifest that verified, even if it has since expired.
        self.newest: Manifest | None = None

    def floor(self, stored: Mapping[str, TrustedState]) -> TrustedState | None:
        """The newest release seen: recorded for a key still pinned, or in this process.

        Records of keys no longer pinned are ignored, so that a leaked key that
        signed version 2**63-1 cannot lock out the clients that dropped it.
        """
        seen = [state for keyid, state in stored.items() if keyid in self.trusted.keys]
        if self.newest is not None:
            seen.append(TrustedState(self.newest.version, self.newest.digest))
        return max(seen, key=lambda state: state.version, default=None)

    def verify(
        self, data: bytes, *, now: datetime, stored: Mapping[str, TrustedState], url: str
    ) -> Manifest:
        """The manifest in *data* if it passes every rule; nothing changes here."""
        return verify_manifest(
            data,
            self.trusted,
            now=now,
            previous=self.floor(stored),
            url=url,
            name=self.name,
            known=self.newest,  # an unchanged body reuses the parsed manifest and its index
        )

    def accept(self, manifest: Manifest, *, now: datetime) -> Manifest:
        """Record a verified *manifest*; return the one to use now.

        That is *manifest*, unless a newer one was accepted meanwhile (by
        another thread) and has not expired: never go back to an older release.
        """
        newest = self.newest
        if newest is not None and newest.version > manifest.version and now < newest.expires:
            return newest
        if newest is None or manifest.version >= newest.version:
            self.newest = manifest
        return manifest
