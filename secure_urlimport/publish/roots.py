"""``root init`` and ``root update``: publish the next root of a tree directory.

Each reads the tree's chain (``rootchain.py``: it must verify from version 1),
builds the next root (``rootedit.py``), has every given root key sign it and
writes ``secure-urlimport.root.N`` atomically, never over an existing file
(a temporary file hard-linked to the name: the link fails if anything, even a
dangling symlink, is there).  The ``plan_*`` halves check everything that
needs no private key, so the command line refuses before any passphrase.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .._format.keys import PublicKey, Signer
from .._format.manifest import parse_manifest_body, split_manifest_file
from .._format.paths import MANIFEST_NAME
from .._format.root import Root, root_file_name
from ..errors import SecureImportError, SigningError
from .localfile import read_tree_file
from .rootchain import RootChain, read_root_chain, root_versions
from .rootedit import DEFAULT_ROOT_EXPIRY, RootChange, first_root, next_root, sign_root
from .signing import tree_name
from .versions import MAX_MANIFEST_BYTES

__all__ = [
    "RootResult",
    "default_root_name",
    "init_root",
    "plan_init",
    "plan_update",
    "refuse_existing_root",
    "update_root",
    "write_new_root",
]


@dataclass(frozen=True)
class RootResult:
    """A root just written: where, the root itself, and its signed bytes."""

    path: Path
    root: Root
    data: bytes

    @property
    def version(self) -> int:
        return self.root.version


def default_root_name(tree: Path, name: str | None) -> str:
    """*name*, else the name in the tree's manifest, else the one ``sign`` uses."""
    if name is not None:
        return name
    path = Path(tree) / MANIFEST_NAME
    try:
        data = read_tree_file(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return tree_name(tree, None)
    except OSError as exc:
        raise SigningError(f"{path} cannot be read ({exc.strerror or exc}); give --name") from None
    try:
        if len(data) > MAX_MANIFEST_BYTES:
            raise SigningError("too large")
        return parse_manifest_body(split_manifest_file(data).body).name
    except SecureImportError as exc:
        raise SigningError(
            f"{path} cannot be read ({exc}), so the tree's name is unknown; give --name"
        ) from None


def plan_init(
    tree: Path,
    *,
    root_keys: Sequence[PublicKey],
    signers: Sequence[PublicKey],
    threshold: int = 1,
    root_threshold: int = 1,
    trees: Mapping[str, tuple[Sequence[PublicKey], int]] | None = None,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRY,
    name: str | None = None,
    now: datetime | None = None,
) -> Root:
    """Root version 1 for *tree*; refused if the tree already holds a root."""
    tree = refuse_existing_root(tree)
    return first_root(
        name=default_root_name(tree, name),
        root_keys=root_keys,
        root_threshold=root_threshold,
        signers=signers,
        threshold=threshold,
        trees=trees,
        now=now or datetime.now(UTC),
        expires_in=expires_in,
    )


def refuse_existing_root(tree: Path) -> Path:
    """*tree*, if it is a directory with no root yet (any ``secure-urlimport.root.*``)."""
    tree = _directory(tree)
    versions = root_versions(tree)
    if versions:
        held = f"versions 1 to {versions[-1]}" if len(versions) > 1 else "version 1"
        raise SigningError(
            f"{tree} already holds a root ({held}); refusing to start "
            "another chain: change it with 'secure-urlimport root update'"
        )
    return tree


def init_root(
    tree: Path,
    root_keys: Sequence[Signer],
    signers: Sequence[PublicKey],
    *,
    threshold: int = 1,
    root_threshold: int = 1,
    trees: Mapping[str, tuple[Sequence[PublicKey], int]] | None = None,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRY,
    name: str | None = None,
    now: datetime | None = None,
    labels: Mapping[str, str] | None = None,
) -> RootResult:
    """Write ``secure-urlimport.root.1``, signed by (and listing) every one of *root_keys*.

    The other arguments are :func:`plan_init`'s; *labels* names key ids in messages.
    """
    if not root_keys:
        raise SigningError("a root needs at least one --root-key to sign it")
    root = plan_init(
        tree,
        root_keys=[key.public for key in root_keys],
        signers=signers,
        threshold=threshold,
        root_threshold=root_threshold,
        trees=trees,
        expires_in=expires_in,
        name=name,
        now=now,
    )
    data = sign_root(root, root_keys, old=None, labels=labels)
    return RootResult(write_new_root(Path(tree), root.version, data), root, data)


def plan_update(
    tree: Path,
    change: RootChange,
    *,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRY,
    now: datetime | None = None,
) -> tuple[RootChain, Root]:
    """The tree's verified chain and the root N+1 that *change* makes of it."""
    tree = _directory(tree)
    chain = read_root_chain(tree)
    if chain is None:
        raise SigningError(
            f"{tree} holds no root to update; start one with 'secure-urlimport root init'"
        )
    new = next_root(chain.newest.root, change, now=now or datetime.now(UTC), expires_in=expires_in)
    return chain, new


def update_root(
    tree: Path,
    root_keys: Sequence[Signer],
    change: RootChange,
    *,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRY,
    now: datetime | None = None,
    labels: Mapping[str, str] | None = None,
) -> RootResult:
    """Write root N+1: the newest root with *change* applied, signed by *root_keys*,
    which must meet the old root's threshold of its root keys and the new one's."""
    chain, new = plan_update(tree, change, expires_in=expires_in, now=now)
    data = sign_root(new, root_keys, old=chain.newest.root, labels=labels)
    # The consumer's own rule, run on the result before anyone can download it.
    chain.newest.advance(data, url=root_file_name(new.version))
    return RootResult(write_new_root(Path(tree), new.version, data), new, data)


def _directory(tree: Path) -> Path:
    tree = Path(tree)
    if not tree.is_dir():
        raise SigningError(f"{tree} is not a directory; give the tree the root is for")
    return tree


def write_new_root(tree: Path, version: int, data: bytes) -> Path:
    """Write *data* as ``secure-urlimport.root.<version>`` in *tree*, durably, mode 0644.

    Never over (or through) anything already at that name: a published root
    is immutable, consumers may already trust it.
    """
    path = Path(tree) / root_file_name(version)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=tree)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path, follow_symlinks=False)  # EEXIST for anything there
        except FileExistsError:
            raise SigningError(
                f"{path} already exists (or is a symlink); refusing to overwrite a root: "
                "published roots never change. Read the chain again ('root show') and retry"
            ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _sync_directory(Path(tree))
    return path


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
