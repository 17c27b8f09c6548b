"""``root show``: every root of a tree (directory or https URL), and how far it was checked.

A directory's chain is verified as ``root update`` verifies it (from version 1,
each step by the previous and its own root keys).  A URL's chain is only
*shown*: fetched ``secure-urlimport.root.1``, ``.2``, … until the server says
404 (or 403), parsed but unverified.  With pinned root keys (``--root``) both
are walked as a consumer walks them (``TrustedRoot.from_pin``, then ``advance``),
and the listing says which versions the pin vouches for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._format.keys import TrustedKeys
from .._format.paths import url_in_tree
from .._format.root import (
    MAX_ROOT_BYTES,
    Role,
    Root,
    parse_root_body,
    root_file_name,
    split_root_file,
)
from .._format.signedfile import format_time
from .._net.fetcher import Fetcher
from .._trust.root_chain import MAX_ROOT_STEPS, TrustedRoot
from ..errors import HTTPStatusError, SecureImportError, UntrustedRootError
from .rootchain import read_root_chain

__all__ = ["RootListing", "list_directory_roots", "list_remote_roots"]

#: The answers that mean "no such version" (object stores say 403 for a missing key).
_MISSING = (404, 403)


@dataclass(frozen=True)
class RootListing:
    """The roots of one tree, oldest first, and what was verified about them."""

    target: str
    roots: tuple[Root, ...]
    verified: bool
    verification: str
    #: When the listing was made: the newest root is marked expired against it.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "target": self.target,
            "verified": self.verified,
            "verification": self.verification,
            "newest": self.roots[-1].version if self.roots else None,
            "expired": bool(self.roots) and self.now >= self.roots[-1].expires,
            "versions": [_root_json(root) for root in self.roots],
        }

    def text_lines(self) -> list[str]:
        newest = f", newest {self.roots[-1].version}" if self.roots else ""
        lines = [
            f"root chain of {self.target}: {len(self.roots)} version(s){newest}",
            f"  {'VERIFIED' if self.verified else 'UNVERIFIED'}: {self.verification}",
        ]
        for root in self.roots:
            expired = " (EXPIRED)" if self.now >= root.expires else ""
            lines.append(
                f"version {root.version}: tree {root.name!r}, created {format_time(root.created)}, "
                f"expires {format_time(root.expires)}{expired}"
            )
            lines.append(f"  root keys: {_role_text(root.root)}")
            lines.append(f"  signers: {_role_text(root.signers)}")
            for tree, role in sorted(root.trees.items()):
                lines.append(f"  signers of tree {tree!r}: {_role_text(role)}")
        return lines


def _role_text(role: Role) -> str:
    return f"{', '.join(role.keyids)} ({role.threshold} of {len(role.keyids)} must sign)"


def _role_json(role: Role) -> dict[str, Any]:
    return {"keyids": list(role.keyids), "threshold": role.threshold}


def _root_json(root: Root) -> dict[str, Any]:
    roles: dict[str, list[str]] = {keyid: [] for keyid in root.keys}
    for keyid in root.root.keyids:
        roles[keyid].append("root")
    for keyid in root.signers.keyids:
        roles[keyid].append("signer")
    for tree, role in sorted(root.trees.items()):
        for keyid in role.keyids:
            roles[keyid].append(f"signer of tree {tree}")
    return {
        "version": root.version,
        "name": root.name,
        "created": format_time(root.created),
        "expires": format_time(root.expires),
        "sha256": root.digest,
        "root": _role_json(root.root),
        "signers": _role_json(root.signers),
        "trees": {tree: _role_json(role) for tree, role in sorted(root.trees.items())},
        "keys": roles,
    }


def _pinned(files: Sequence[bytes], names: Sequence[str], pin: TrustedKeys) -> str:
    """Walk *files* as a consumer pinning *pin* would; say what was verified, or raise."""
    trusted: TrustedRoot | None = None
    first = 0
    for index, (data, name) in enumerate(zip(files, names, strict=True)):
        if trusted is None:
            trusted = TrustedRoot.from_pin(data, pin, url=name)
            first = index + 1
        else:
            trusted.advance(data, url=name)
    if trusted is None:
        raise UntrustedRootError(
            f"no root of the chain is signed by the pinned root key(s) {', '.join(pin.keyids)}"
        )
    return (
        f"the chain verifies against the pinned root key(s) {', '.join(pin.keyids)} "
        f"from version {first} to {trusted.root.version}"
    )


def list_directory_roots(tree: Path, pin: TrustedKeys | None = None) -> RootListing:
    """Every root in directory *tree*, verified as a chain (and against *pin* if given)."""
    chain = read_root_chain(Path(tree))
    if chain is None:
        return RootListing(str(tree), (), False, "no root: 'secure-urlimport root init' makes one")
    if pin is None:
        how = (
            "the chain verifies from version 1 by its own root keys; not checked against "
            "a pinned root key (give --root R.pub)"
        )
        return RootListing(str(tree), chain.roots, False, how)
    names = [str(Path(tree) / root_file_name(r.version)) for r in chain.roots]
    return RootListing(str(tree), chain.roots, True, _pinned(chain.files, names, pin))


def list_remote_roots(url: str, fetcher: Fetcher, pin: TrustedKeys | None = None) -> RootListing:
    """Every root published under tree *url*, fetched in order until the server has no more."""
    files: list[bytes] = []
    names: list[str] = []
    for version in range(1, MAX_ROOT_STEPS + 1):
        where = url_in_tree(url, root_file_name(version))
        try:
            files.append(fetcher.fetch_fresh(where, max_bytes=MAX_ROOT_BYTES))
        except HTTPStatusError as exc:
            if exc.status not in _MISSING:
                raise
            break
        names.append(where)
    else:
        raise UntrustedRootError(
            f"{url} publishes more than {MAX_ROOT_STEPS} roots; stopped at version {MAX_ROOT_STEPS}"
        )
    roots = []
    for data, where in zip(files, names, strict=True):
        try:
            roots.append(parse_root_body(split_root_file(data).body))
        except SecureImportError as exc:
            raise UntrustedRootError(f"{where} is not a root: {exc}") from None
    if pin is None:
        how = (
            "shown as the server sent it, signatures not checked; give --root R.pub "
            "to verify the chain against your pinned root key"
        )
        return RootListing(url, tuple(roots), False, how)
    return RootListing(url, tuple(roots), True, _pinned(files, names, pin))
