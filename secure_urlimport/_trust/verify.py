"""The verification core: bytes and pinned keys in, trusted values or an error out.

No I/O, no clock, no global state: the caller passes the time and the last
trusted state, so every rule here can be tested by handing it hostile bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .._format.keys import TrustedKeys
from .._format.manifest import (
    FileEntry,
    Manifest,
    entry_message,
    format_time,
    manifest_message,
    parse_manifest_body,
    split_manifest_file,
)
from .._format.signedfile import length_prefixed
from ..errors import (
    BadSignatureError,
    ExpiredManifestError,
    RollbackError,
    TamperedFileError,
    UntrustedKeyError,
    WrongTreeError,
)

__all__ = [
    "ManifestMemo",
    "TrustedState",
    "check_expiry",
    "check_name",
    "check_rollback",
    "check_threshold",
    "manifest_vouch",
    "release_keys",
    "signature_vouch",
    "verify_file",
    "verify_file_signatures",
    "verify_manifest",
    "verify_manifest_signatures",
]


@dataclass(frozen=True)
class TrustedState:
    """A release accepted before: its version and the SHA-256 of its manifest body."""

    version: int
    digest: str


def check_threshold(
    signatures: Iterable[tuple[str, bytes]],
    message_for: Callable[[str], bytes],
    trusted: TrustedKeys,
    *,
    what: str,
    all_signers: bool = False,
) -> frozenset[str]:
    """The pinned key ids that signed; raise unless there are ``trusted.threshold``.

    *message_for(keyid)* is the message that key must have signed (the key id
    is part of it); it is built only for pinned keys that did sign.  A key that
    signs twice counts once.  Verification stops once the threshold is met,
    unless *all_signers* asks for every valid pinned signer (rollback records
    are kept per signer).
    """
    good: set[str] = set()
    bad: set[str] = set()
    unknown: set[str] = set()
    for keyid, sig in signatures:
        key = trusted.keys.get(keyid)
        if key is None:
            unknown.add(keyid)
            continue
        if keyid in good:
            continue
        (good if key.verifies(sig, message_for(keyid)) else bad).add(keyid)
        if not all_signers and len(good) >= trusted.threshold:
            break
    if len(good) >= trusted.threshold:
        return frozenset(good)
    if trusted.named_by is None:
        need = f"{trusted.threshold} of the pinned key(s) {', '.join(trusted.keyids)}"
        listed, advice = "pinned", "Pin the publisher's key, or re-sign with a pinned key"
    else:
        version = trusted.named_by
        need = (
            f"{trusted.threshold} of the keys root version {version} lists "
            f"({', '.join(trusted.keyids)})"
        )
        listed = f"listed by root version {version}"
        advice = (
            f"Re-sign with a key root version {version} lists, or publish a root that "
            "lists the signing key ('secure-urlimport root update')"
        )
    if bad - good:
        raise BadSignatureError(
            f"{what}: the signature by key {', '.join(sorted(bad - good))} does not verify "
            f"(the bytes were altered after signing); {need} must sign"
        )
    signed_by = ", ".join(sorted(unknown)) or "no key"
    raise UntrustedKeyError(
        f"{what}: signed by {signed_by}"
        + (f" and {listed} {', '.join(sorted(good))}" if good else "")
        + f"; {need} must sign. {advice}"
    )


class ManifestMemo(Protocol):
    """Manifests whose signature check passed before, by vouch (``_store/memo.py``)."""

    def recall(self, vouch: bytes, digest: str) -> Manifest | None:
        """The manifest (with its ``signers``) whose body has SHA-256 *digest*,
        recorded under *vouch*; None if there is none."""

    def remember(self, vouch: bytes, manifest: Manifest) -> None:
        """Record *manifest*, which passed the check *vouch* describes."""


def verify_manifest_signatures(
    data: bytes,
    trusted: TrustedKeys,
    *,
    url: str,
    known: Manifest | None = None,
    memo: ManifestMemo | None = None,
) -> Manifest:
    """Check the format and the signatures (before parsing the body); parse it.

    *known* is a manifest this function returned before: if the body is the
    same (SHA-256), it is returned instead of parsing the body again.  *memo*
    stands in for the signature check and the parse when it recorded a pass
    of exactly these signatures, keys, threshold and body (:func:`manifest_vouch`).
    """
    signed = split_manifest_file(data)
    digest = hashlib.sha256(signed.body).hexdigest()
    vouch = manifest_vouch(signed.signatures, digest, trusted) if memo is not None else b""
    recalled = memo.recall(vouch, digest) if memo is not None else None
    if recalled is not None:
        signers = recalled.signers
    else:
        signers = check_threshold(
            signed.signatures,
            lambda keyid: manifest_message(keyid, signed.body),
            trusted,
            what=f"manifest {url}",
            all_signers=True,
        )
    if known is not None and known.digest == digest:
        # The same bytes parse to the same value.  Reusing it (with its
        # directory index) keeps a refresh after invalidate_caches(), made
        # under the import lock, from parsing megabytes again.
        if known.signers == signers and known.signing_keys == trusted:
            return known
        return dataclasses.replace(known, signers=signers, signing_keys=trusted)
    parsed = recalled if recalled is not None else parse_manifest_body(signed.body)
    manifest = dataclasses.replace(parsed, signers=signers, signing_keys=trusted)
    if memo is not None and recalled is None:
        memo.remember(vouch, manifest)
    return manifest


def manifest_vouch(
    signatures: Iterable[tuple[str, bytes]], digest: str, trusted: TrustedKeys
) -> bytes:
    """A digest of everything the manifest's signature check decides from: the
    trusted keys and threshold, each signature line by a trusted key, and the
    body's SHA-256 (the message each key signs is the tag, its id and the
    body).  As with :func:`signature_vouch`, equal vouches, equal verdicts."""
    vouch = hashlib.sha256(_keys_part(trusted) + b"manifest" + digest.encode("ascii"))
    for keyid, signature in sorted(signatures):
        if keyid in trusted.keys:
            vouch.update(length_prefixed(keyid.encode("ascii"), signature))
    return vouch.digest()


def check_name(manifest: Manifest, expected: str | None, *, url: str) -> None:
    """Raise if the client pinned a tree name and the manifest names another tree."""
    if expected is not None and manifest.name != expected:
        raise WrongTreeError(
            f"manifest {url} is for the tree {manifest.name!r}, not {expected!r}: the server "
            "serves another tree signed by the same key; fix the server or the URL"
        )


def check_expiry(manifest: Manifest, *, now: datetime, url: str) -> None:
    if now >= manifest.expires:
        raise ExpiredManifestError(
            f"manifest {url} expired at {format_time(manifest.expires)} "
            f"(now {format_time(now)}); the publisher must re-sign the tree "
            "('secure-urlimport sign DIR --key KEY') and publish it again"
        )


def verify_manifest(
    data: bytes,
    trusted: TrustedKeys,
    *,
    now: datetime,
    previous: TrustedState | None,
    url: str,
    name: str | None = None,
    known: Manifest | None = None,
    memo: ManifestMemo | None = None,
) -> Manifest:
    """Verify a manifest file and return its contents.

    Checks, in order: format, signatures (before parsing the body), the tree
    name if one is pinned, expiry, rollback against *previous*.  *known*: see
    :func:`verify_manifest_signatures`.
    """
    manifest = verify_manifest_signatures(data, trusted, url=url, known=known, memo=memo)
    check_name(manifest, name, url=url)
    check_expiry(manifest, now=now, url=url)
    check_rollback(manifest, previous, url)
    return manifest


def check_rollback(manifest: Manifest, previous: TrustedState | None, url: str) -> None:
    if previous is None:
        return
    if manifest.version < previous.version:
        raise RollbackError(
            f"manifest {url} is version {manifest.version}, older than version "
            f"{previous.version} already accepted: an old release is being replayed. "
            "If this is intended, the publisher must sign a newer version"
        )
    if manifest.version == previous.version and manifest.digest != previous.digest:
        raise RollbackError(
            f"manifest {url} version {manifest.version} differs from the version "
            f"{previous.version} accepted before: a release must never be rewritten; "
            "the publisher must sign with a higher --version"
        )


def release_keys(manifest: Manifest, *, url: str) -> TrustedKeys:
    """The keys every file of *manifest* must be signed by: those its manifest
    was verified against (the pinned keys, or the signers of the current root)."""
    if manifest.signing_keys is None:
        raise UntrustedKeyError(f"{url}: its manifest was never verified; refusing it")
    return manifest.signing_keys


def verify_file(
    entry: FileEntry, data: bytes, manifest: Manifest, trusted: TrustedKeys, *, url: str
) -> None:
    """Raise unless *data* is exactly the file the manifest signs at *entry*."""
    if len(data) != entry.size:
        raise TamperedFileError(
            f"{url} is {len(data)} bytes but the signed manifest says {entry.size}: "
            "the file was changed after signing; re-sign and re-publish the tree"
        )
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise TamperedFileError(
            f"{url} does not match the SHA-256 in the signed manifest: the file was "
            "changed after signing; re-sign and re-publish the tree"
        )
    verify_file_signatures(entry, manifest, trusted, url=url)


def verify_file_signatures(
    entry: FileEntry, manifest: Manifest, trusted: TrustedKeys, *, url: str
) -> None:
    """Raise unless *entry* carries enough valid signatures of pinned keys for
    this path, digest, size and release (format 1: its version; format 2:
    its tree name, the index pinning the rest): the part of
    :func:`verify_file` that does not look at the bytes."""
    check_threshold(
        entry.signatures.items(),
        lambda keyid: entry_message(manifest, keyid, entry),
        trusted,
        what=url,
    )


def signature_vouch(entry: FileEntry, manifest: Manifest, trusted: TrustedKeys) -> bytes:
    """A digest of everything a passing :func:`verify_file_signatures` decided
    from: the threshold, every trusted key's bytes, and each signature by a
    trusted key with the message it must sign (path, SHA-256, size, and the
    release's version or tree name).  Signatures by other keys are ignored by
    the check, and so here.

    Ed25519 verification is deterministic, so a check that passed for one
    vouch passes for every input with the same vouch: the bytecode cache
    records the vouch of the check it saw pass (under its MAC) and skips the
    repeat on a warm start.  A revoked key, a stricter pin or threshold, or a
    new release of the file each change the vouch, and the check runs again.
    """
    vouch = hashlib.sha256(_keys_part(trusted))
    for keyid, signature in sorted(entry.signatures.items()):
        if keyid in trusted.keys:
            message = entry_message(manifest, keyid, entry)
            vouch.update(length_prefixed(keyid.encode("ascii"), signature, message))
    return vouch.digest()


# One release's files share one TrustedKeys: its part is built once.
_last_keys: tuple[TrustedKeys, bytes] | None = None


def _keys_part(trusted: TrustedKeys) -> bytes:
    global _last_keys
    last = _last_keys
    if last is not None and last[0] is trusted:
        return last[1]
    parts = [b"secure-urlimport signature vouch v1", str(trusted.threshold).encode("ascii")]
    for keyid in sorted(trusted.keys):
        parts += [keyid.encode("ascii"), trusted.keys[keyid].raw]
    part = length_prefixed(*parts)
    _last_keys = (trusted, part)
    return part
