"""What is trusted now for one tree: the rules that pick the current manifest.

Modelled on python-tuf's ``TrustedMetadataSet``: bytes, the trusted keys, the
clock and the stored rollback records go in; the manifest to use comes out, or
a :class:`~secure_urlimport.errors.SecureImportError`.  No I/O, no lock, no
clock of its own: the caller (the tree) downloads, reads the records from disk,
holds its lock around :meth:`TrustedManifests.accept` and persists afterwards,
so every rule here is unit-tested without a server.

The keys are either pinned (``pubkey=``) or named by the tree's newest trusted
root (``root=``, see ``root_chain.py``): then the signers of the root's role
for the manifest's tree name.

The rules, in order: the signature threshold (every valid signer is counted,
because rollback records are kept per signer), the root's role for the tree
name, the pinned tree name, expiry, the rollback floor (the newest release
recorded for a key still trusted, or accepted in this process and signed by a
key still trusted), and "never go back" within a process (a thread that
verified an older release while another accepted a newer one keeps the newer
one, unless a new root dropped every key that signed it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from .._format.keys import TrustedKeys
from .._format.manifest import Manifest
from .._format.root import Root
from ..errors import ConfigurationError, UntrustedKeyError, WrongTreeError
from .verify import (
    ManifestMemo,
    TrustedState,
    check_expiry,
    check_name,
    check_rollback,
    verify_manifest,
    verify_manifest_signatures,
)

__all__ = ["TrustedManifests", "superseded_release", "verify_under_root"]


class TrustedManifests:
    """The newest manifest of one tree accepted in this process, and the rules to replace it."""

    def __init__(self, trusted: TrustedKeys | None, *, name: str | None) -> None:
        #: The pinned signing keys; None when a root names them.
        self.trusted = trusted
        self.name = name
        #: The newest manifest that verified, even if it has since expired.
        self.newest: Manifest | None = None

    def floor(self, stored: Mapping[str, TrustedState], keys: TrustedKeys) -> TrustedState | None:
        """The newest release seen: recorded for a key still trusted, or in this process.

        Records of keys no longer trusted (unpinned, or dropped by a new root)
        are ignored, so that a leaked key that signed version 2**63-1 cannot
        lock out the clients that dropped it.
        """
        seen = [state for keyid, state in stored.items() if keyid in keys.keys]
        if self.newest is not None and _still_trusted(self.newest, keys):
            seen.append(TrustedState(self.newest.version, self.newest.digest))
        return max(seen, key=lambda state: state.version, default=None)

    def verify(
        self,
        data: bytes,
        *,
        now: datetime,
        stored: Mapping[str, TrustedState],
        url: str,
        root: Root | None = None,
        memo: ManifestMemo | None = None,
    ) -> Manifest:
        """The manifest in *data* if it passes every rule; nothing changes here.

        *root*: the tree's newest trusted root, whose signers replace the pinned keys.
        *memo*: passed signature checks of earlier processes (verify.ManifestMemo).
        """
        if root is not None:
            return self._verify_under_root(data, root, now=now, stored=stored, url=url, memo=memo)
        if self.trusted is None:
            raise ConfigurationError(f"manifest {url}: no pinned keys and no root to check it")
        return verify_manifest(
            data,
            self.trusted,
            now=now,
            previous=self.floor(stored, self.trusted),
            url=url,
            name=self.name,
            known=self.newest,  # an unchanged body reuses the parsed manifest and its index
            memo=memo,
        )

    def _verify_under_root(
        self,
        data: bytes,
        root: Root,
        *,
        now: datetime,
        stored: Mapping[str, TrustedState],
        url: str,
        memo: ManifestMemo | None = None,
    ) -> Manifest:
        manifest = verify_under_root(data, root, url=url, known=self.newest, memo=memo)
        # Without name=, a consumer pinned by root keys is a consumer of the
        # root's own tree: a key the root lets sign only another tree (under
        # 'trees') must not sign releases served here.  name= picks the tree.
        if self.name is None and manifest.name != root.name:
            raise WrongTreeError(
                f"manifest {url} is for the tree {manifest.name!r}, not {root.name!r}, the "
                f"tree of root version {root.version}: without name= only the root's own tree "
                f"is accepted. A consumer of {manifest.name!r}, which the root lists under "
                f"'trees', pins it: install(url, root=..., name={manifest.name!r})"
            )
        check_name(manifest, self.name, url=url)
        check_expiry(manifest, now=now, url=url)
        assert manifest.signing_keys is not None  # set by verify_under_root
        check_rollback(manifest, self.floor(stored, manifest.signing_keys), url)
        return manifest

    def accept(self, manifest: Manifest, *, now: datetime) -> Manifest:
        """Record a verified *manifest*; return the one to use now.

        That is *manifest*, unless a newer one was accepted meanwhile (by
        another thread) and has not expired: never go back to an older release.
        """
        newest = self.newest
        if (
            newest is not None
            and newest.version > manifest.version
            and now < newest.expires
            and (manifest.signing_keys is None or _still_trusted(newest, manifest.signing_keys))
        ):
            return newest
        if (
            newest is None
            or manifest.version >= newest.version
            or (
                manifest.signing_keys is not None
                and not _still_trusted(newest, manifest.signing_keys)
            )
        ):
            self.newest = manifest
        return manifest


def _still_trusted(manifest: Manifest, keys: TrustedKeys) -> bool:
    """Did a key of *keys* sign *manifest*?  A release signed only by keys a
    newer root dropped (a thief's, at version 2**63-1) no longer counts."""
    return bool(manifest.signers & frozenset(keys.keys))


def verify_under_root(
    data: bytes,
    root: Root,
    *,
    url: str,
    known: Manifest | None = None,
    memo: ManifestMemo | None = None,
) -> Manifest:
    """The manifest in *data* if a threshold of the signers *root* names for its
    tree signed it (with ``signers`` and ``signing_keys`` those of that role).

    Signatures first, against every signer the root names: the body, and so
    the tree name that picks the role, is parsed only after that.  *known*: a
    manifest returned before, reused (with its directory index) if unchanged.
    """
    manifest = verify_manifest_signatures(
        data, root.every_signer(), url=url, known=known, memo=memo
    )
    keys = _release_keys(root, manifest, url)
    signers = manifest.signers & frozenset(keys.keys)
    if (
        known is not None
        and known.digest == manifest.digest
        and known.signers == signers
        and known.signing_keys == keys
    ):
        return known
    return dataclasses.replace(manifest, signers=signers, signing_keys=keys)


def _release_keys(root: Root, manifest: Manifest, url: str) -> TrustedKeys:
    """The keys the root lets sign releases of *manifest*'s tree, if enough of them did."""
    role = root.role_for(manifest.name)
    if role is None:
        raise WrongTreeError(
            f"manifest {url} is for the tree {manifest.name!r}, which root version "
            f"{root.version} of {root.name!r} does not govern: a root and a manifest from "
            "two different trees; fix the server or the URL"
        )
    keys = root.trusted(role)
    signed_by = sorted(manifest.signers & frozenset(keys.keys))
    if len(signed_by) < role.threshold:
        others = sorted(manifest.signers - frozenset(keys.keys))
        raise UntrustedKeyError(
            f"manifest {url} is signed by {', '.join(signed_by) or 'none'} of the keys "
            f"{', '.join(keys.keyids)} that root version {root.version} lets sign "
            f"{manifest.name!r}, and {role.threshold} must sign"
            + (f" ({', '.join(others)} signed, but not for this tree)" if others else "")
            + ". Sign with a key the current root lists, or add the key with "
            "'secure-urlimport root update'"
        )
    return keys


def superseded_release(
    manifest: Manifest, newest: Root | None, *, url: str
) -> UntrustedKeyError | None:
    """An error if *manifest* was verified under an older root than *newest*
    (trusted meanwhile, by another thread) and *newest* no longer lets enough of
    its signers sign: a revoked key's release that downloaded slowly must never
    become the current one."""
    keys = manifest.signing_keys
    if newest is None or keys is None or keys.named_by is None:
        return None
    if keys.named_by >= newest.version:
        return None
    role = newest.role_for(manifest.name)
    if role is not None and len(manifest.signers & frozenset(role.keyids)) >= role.threshold:
        return None
    return UntrustedKeyError(
        f"manifest {url} version {manifest.version} was verified under root version "
        f"{keys.named_by}, and root version {newest.version}, trusted meanwhile, does not "
        f"let its signers ({', '.join(sorted(manifest.signers))}) sign it: refusing it. "
        "Sign with a key the current root lists",
        path=url,
    )
