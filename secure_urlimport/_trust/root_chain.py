"""The root of trust of one tree: which root is trusted now, and the rules to move on.

Pure, like ``trusted_set.py``: root bytes, the pinned root keys and the clock
go in; a trusted :class:`~.._format.root.Root` or an error comes out.  The
walk over versions (download ``secure-urlimport.root.N+1`` until there is
none) is the client's; each step it hands the bytes to :meth:`TrustedRoot.advance`.

The rules (SECURITY.md "The root chain"):

- The first root a client trusts is the lowest published version that a
  threshold of the *pinned* root keys signed, and that also lists them as its
  root keys and meets its own root threshold.
- Root N+1 is trusted only if a threshold of root N's root keys signed it
  (checked before its body is parsed), its body says version N+1 (an older
  one is a replay, a newer one a skipped step), it keeps the tree name, and a
  threshold of its *own* root keys signed it too.  So the old keys approve
  every transition and the new keys prove they exist.
- Intermediate roots may have expired; the newest one must not have.
- Releases are then verified against the newest root's signers.
"""

from __future__ import annotations

from datetime import datetime

from .._format.keys import TrustedKeys
from .._format.root import Root, parse_root_body, root_message, split_root_file
from .._format.signedfile import SignedFile, format_time
from ..errors import ExpiredRootError, RollbackError, UntrustedRootError

__all__ = ["MAX_ROOT_STEPS", "TrustedRoot", "root_signers"]

#: Versions one update walks at most; a longer chain is an error, not a hang.
MAX_ROOT_STEPS = 1024


def root_signers(signed: SignedFile, trusted: TrustedKeys) -> frozenset[str]:
    """The key ids of *trusted* whose signature over *signed*'s body verifies.

    Only the first signature line of each key id is checked (a publisher
    writes one): 64 lines repeating a pinned key id with junk cost one
    Ed25519 check, not 64, on each of the versions a walk reads.
    """
    good: set[str] = set()
    tried: set[str] = set()
    for keyid, signature in signed.signatures:
        key = trusted.keys.get(keyid)
        if key is None or keyid in tried:
            continue
        tried.add(keyid)
        if key.verifies(signature, root_message(keyid, signed.body)):
            good.add(keyid)
    return frozenset(good)


def _require(signed: SignedFile, trusted: TrustedKeys, *, whose: str, url: str) -> None:
    good = root_signers(signed, trusted)
    if len(good) < trusted.threshold:
        raise UntrustedRootError(
            f"root {url} is signed by {len(good)} of {whose} root keys "
            f"{', '.join(trusted.keyids)}, and {trusted.threshold} must sign: "
            "it is not the next root of this tree. Only the holders of the current "
            "root keys can publish one ('secure-urlimport root update')"
        )


class TrustedRoot:
    """The newest root trusted for one tree."""

    def __init__(self, root: Root, data: bytes) -> None:
        self.root = root
        #: The signed file, kept so the client can store it with its rollback records.
        self.data = data

    @classmethod
    def from_pin(cls, data: bytes, pin: TrustedKeys, *, url: str) -> TrustedRoot | None:
        """The root in *data* if the pinned root keys vouch for it; None if they
        did not sign it (an older root, from before the pinned keys were added)."""
        signed = split_root_file(data)
        if len(root_signers(signed, pin)) < pin.threshold:
            return None
        root = parse_root_body(signed.body)
        listed = [keyid for keyid in pin.keyids if keyid in root.root.keyids]
        if len(listed) < pin.threshold:
            raise UntrustedRootError(
                f"root {url} is signed by the pinned root keys but does not list them "
                f"as its root keys ({', '.join(root.root.keyids)}): refusing it"
            )
        if root.root.threshold < pin.threshold:
            # Past this root only its own threshold counts: one that lets fewer
            # root keys sign the next root than the consumer asked for would let
            # that many stolen keys move the consumer to a chain of their own.
            raise UntrustedRootError(
                f"root {url} lets {root.root.threshold} of its root keys sign the next "
                f"root, and this consumer pinned root_threshold={pin.threshold}: refusing "
                "it. The root key holders publish a root with a root threshold of at least "
                f"{pin.threshold} ('secure-urlimport root update --root-threshold "
                f"{pin.threshold}'), or the consumer lowers root_threshold="
            )
        _require(signed, root.root_keys, whose="its own", url=url)
        return cls(root, data)

    @classmethod
    def from_store(cls, data: bytes, *, url: str) -> TrustedRoot:
        """A root this client trusted before (read back from its state files):
        it must still carry the threshold of its own root keys."""
        signed = split_root_file(data)
        root = parse_root_body(signed.body)
        _require(signed, root.root_keys, whose="its own", url=url)
        return cls(root, data)

    @property
    def next_version(self) -> int:
        return self.root.version + 1

    def advance(self, data: bytes, *, url: str) -> None:
        """Trust the root in *data* as version :attr:`next_version`, or raise."""
        signed = split_root_file(data)
        # Before the body is parsed: only the current root keys may speak.
        _require(signed, self.root.root_keys, whose="the previous root's", url=url)
        new = parse_root_body(signed.body)
        expected = self.next_version
        if new.version < expected:
            raise RollbackError(
                f"root {url} is version {new.version}, but version {expected} was asked "
                f"for and {self.root.version} is already trusted: an old root is being replayed"
            )
        if new.version > expected:
            raise UntrustedRootError(
                f"root {url} says version {new.version} where version {expected} belongs: "
                "a root may not skip a version; the publisher must publish every version"
            )
        if new.name != self.root.name:
            raise UntrustedRootError(
                f"root {url} is for the tree {new.name!r}, not {self.root.name!r}: a root "
                "and a manifest from two different trees; fix the server"
            )
        _require(signed, new.root_keys, whose="its own", url=url)
        self.root, self.data = new, data

    def check_expiry(self, *, now: datetime, url: str) -> None:
        if now >= self.root.expires:
            raise ExpiredRootError(
                f"root {url} (version {self.root.version}, the newest published) expired at "
                f"{format_time(self.root.expires)} (now {format_time(now)}); the root key "
                "holders must publish a new root ('secure-urlimport root update TREE "
                "--root-key R.key --expires 365d')"
            )
