"""The root chain a tree directory holds, read and checked before anything signs on top of it.

A publisher's directory keeps every published root: ``secure-urlimport.root.1``,
``.2``, … .  Before ``root update`` writes version N+1 or ``sign`` signs a
release, the chain must verify from version 1 exactly as a consumer's walk
would (``_trust/root_chain.py``): root 1 carries the threshold of its own root
keys, each next one the thresholds of the previous and of its own.  A
publisher must never sign on top of a broken chain: consumers would refuse
every release made on it.  Nothing here is checked against a pinned key
(the directory is the publisher's own); ``root show --root`` does that.

Every file is read through ``localfile.read_tree_file``: regular files only
(a symlink is never followed, a FIFO never blocks), at most
:data:`~.._format.root.MAX_ROOT_BYTES`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._format.keys import PublicKey
from .._format.root import MAX_ROOT_BYTES, ROOT_PREFIX, Root, root_file_name
from .._trust.root_chain import TrustedRoot
from ..errors import SecureImportError, SigningError
from .localfile import read_tree_file

__all__ = [
    "RootChain",
    "chain_signers",
    "check_release_signers",
    "read_root_chain",
    "root_versions",
]

_VERSION = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class RootChain:
    """Every root of a tree, oldest first, verified as a chain from version 1."""

    tree: Path
    #: The signed bytes of versions 1..N, in order.
    files: tuple[bytes, ...]
    #: The parsed roots of versions 1..N, in order.
    roots: tuple[Root, ...]
    #: The newest root, trusted by the chain (what ``root update`` advances).
    newest: TrustedRoot

    @property
    def version(self) -> int:
        return self.newest.root.version


def root_versions(tree: Path) -> list[int]:
    """The root versions present in *tree* (by file name only), sorted.

    Raises :class:`SigningError` for a ``secure-urlimport.root.*`` name that
    is not a version number, and for a gap (every version stays published).
    """
    tree = Path(tree)
    try:
        names = os.listdir(tree)
    except OSError as exc:
        raise SigningError(f"cannot list {tree} ({exc.strerror or exc})") from None
    versions = []
    for name in names:
        if not name.startswith(ROOT_PREFIX):
            continue
        suffix = name[len(ROOT_PREFIX) :]
        if not _VERSION.fullmatch(suffix):
            raise SigningError(
                f"{tree / name} is not a root version (secure-urlimport.root.N, N from 1): "
                "move it out of the tree"
            )
        versions.append(int(suffix))
    versions.sort()
    for expected, version in enumerate(versions, 1):
        if version != expected:
            raise SigningError(
                f"the root chain in {tree} has no version {expected} but has {version}: "
                "every version must stay published, or consumers cannot walk the chain; "
                f"put {root_file_name(expected)} back"
            )
    return versions


def read_root_chain(tree: Path) -> RootChain | None:
    """The verified root chain of *tree*, or None if it holds no root.

    Raises :class:`SigningError` naming the first version that does not
    verify (or cannot be read).
    """
    tree = Path(tree)
    versions = root_versions(tree)
    if not versions:
        return None
    files: list[bytes] = []
    roots: list[Root] = []
    trusted: TrustedRoot | None = None
    for version in versions:
        path = tree / root_file_name(version)
        data = _read_root_file(path)
        try:
            if trusted is None:
                trusted = TrustedRoot.from_store(data, url=str(path))
                if trusted.root.version != 1:
                    raise SigningError(f"it says version {trusted.root.version}, not 1")
            else:
                trusted.advance(data, url=str(path))
        except SecureImportError as exc:
            raise SigningError(
                f"the root chain in {tree} is broken at version {version} ({exc}); a publisher "
                "never signs on top of a broken chain: consumers would refuse it. Restore "
                f"{path.name} as published, or remove the versions from {version} on if they "
                "were never published"
            ) from None
        files.append(data)
        roots.append(trusted.root)
    assert trusted is not None
    return RootChain(tree, tuple(files), tuple(roots), trusted)


def _read_root_file(path: Path) -> bytes:
    try:
        data = read_tree_file(path, MAX_ROOT_BYTES)
    except OSError as exc:
        raise SigningError(
            f"{path} cannot be read ({exc.strerror or exc}); a root must be a regular file"
        ) from None
    if len(data) > MAX_ROOT_BYTES:
        raise SigningError(f"{path} is larger than {MAX_ROOT_BYTES} bytes: it is not a root")
    return data


def check_release_signers(chain: RootChain, name: str, keyids: Sequence[str]) -> list[PublicKey]:
    """Refuse to sign tree *name* with *keyids* unless the newest root allows it.

    Every key must be listed by the root's role for *name*, and at least the
    role's threshold of them must be given.  Returns every key some root of
    the chain listed as a signer of *name* (see :func:`chain_signers`).
    """
    root = chain.newest.root
    where = f"root version {root.version} of {chain.tree}"
    role = root.role_for(name)
    if role is None:
        governed = ", ".join(repr(t) for t in sorted({root.name, *root.trees}))
        raise SigningError(
            f"{where} does not govern a tree named {name!r} (it governs {governed}): "
            "consumers would refuse the release; sign with --name set to one of these, or "
            "add the tree to the root ('root update --tree-signer NAME=S.pub')"
        )
    listed = ", ".join(role.keyids)
    strangers = [k for k in dict.fromkeys(keyids) if k not in role.keyids]
    if strangers:
        raise SigningError(
            f"{where} does not list key(s) {', '.join(strangers)} as signers of tree "
            f"{name!r}; it lists {listed}. Sign with one of those, or publish a root that "
            "adds the key ('root update --add-signer')"
        )
    given = set(keyids)
    if len(given) < role.threshold:
        raise SigningError(
            f"{where} needs {role.threshold} of the signers {listed} for tree {name!r}, "
            f"and {len(given)} given; give more --key"
        )
    return chain_signers(chain, name)


def chain_signers(chain: RootChain, name: str) -> list[PublicKey]:
    """Every key that some root of *chain* listed as a signer of tree *name*.

    A manifest in the tree signed by one of them was a release of this tree,
    so ``sign`` continues its version after a key rotation or a revocation
    (without ``--version``).  A leaked, since removed key can at most push
    the counter up (never past the highest version, where ``sign`` stops);
    consumers refuse its releases anyway.
    """
    keys: dict[str, PublicKey] = {}
    for root in chain.roots:
        role = root.role_for(name)
        for keyid in role.keyids if role is not None else ():
            keys.setdefault(keyid, root.keys[keyid])
    return list(keys.values())
