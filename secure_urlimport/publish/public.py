"""Signing from Python: the publisher's half of the public API.

What ``secure-urlimport keygen`` and ``sign`` do, as functions a release
script can call without reaching into internal modules::

    import secure_urlimport as su
    key = su.generate_key()
    su.save_key_pair(key, "keys/publisher", passphrase=b"...")   # .key (0600) + .pub
    key = su.load_private_key("keys/publisher.key", passphrase=b"...")
    result = su.sign_tree("build/tree", key, expires_in=timedelta(days=90))
    print(result.version, result.files, result.expires)

    # The root of trust (issue #13): an offline root key says which keys sign releases.
    root = su.load_private_key("offline/root.key", passphrase=b"...")
    su.init_root("build/tree", root_keys=[root], signers=["keys/ci.pub"])
    su.update_root("build/tree", root_keys=[root], add_signers=["keys/ci2.pub"],
                   remove_signers=["keys/ci.pub"])            # or a key id

Every failure is a :class:`~secure_urlimport.SecureImportError` subclass
(:class:`~secure_urlimport.KeyFileError`, ``SigningError``), as on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

from .._format.keys import PrivateKey, PublicKey, Signer
from .keyargs import key_id_arg, public_key_arg
from .keyfile import load_private_key as _load_private_key
from .keyfile import save_private_key, write_public_key
from .rootedit import DEFAULT_ROOT_EXPIRY, RootChange
from .roots import RootResult
from .roots import init_root as _init_root
from .roots import update_root as _update_root
from .signing import DEFAULT_EXPIRY, SignResult
from .signing import sign_tree as _sign_tree

__all__ = [
    "PrivateKey",
    "PublicKey",
    "RootResult",
    "SignResult",
    "generate_key",
    "init_root",
    "load_private_key",
    "save_key_pair",
    "sign_tree",
    "update_root",
]

#: A public key for the root functions: a ``.pub`` path, its text, or a :class:`PublicKey`.
KeyArg: TypeAlias = "str | os.PathLike[str] | PublicKey"


def generate_key() -> PrivateKey:
    """A new Ed25519 signing key, in memory (``key.keyid``, ``key.public``)."""
    return PrivateKey.generate()


def save_key_pair(
    key: PrivateKey, prefix: str | Path, *, passphrase: bytes | None
) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (mode 0600; sealed unless *passphrase* is None) and ``PREFIX.pub``.

    Neither file may exist already (a key overwritten by accident is lost for
    good); returns the two paths.
    """
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    save_private_key(key, key_path, passphrase)
    write_public_key(key.public, pub_path)
    return key_path, pub_path


def load_private_key(
    path: str | Path, passphrase: bytes | Callable[[], bytes] | None = None
) -> PrivateKey:
    """Read a key file written by :func:`save_key_pair` or ``secure-urlimport keygen``."""
    return _load_private_key(Path(path), passphrase)


def sign_tree(
    directory: str | Path,
    keys: PrivateKey | Sequence[PrivateKey],
    *,
    version: int | None = None,
    expires_in: timedelta = DEFAULT_EXPIRY,
    name: str | None = None,
    allow_version_jump: bool = False,
) -> SignResult:
    """Sign every file under *directory* with every key; write its manifest and bundle.

    *version* defaults to one more than the version of the tree's manifest, if
    one of *keys* signed it; a version more than 2**32 above that needs
    *allow_version_jump* (clients refuse every later release below it).
    Returns where the manifest went, the version, the file count and expiry.
    """
    chosen = [keys] if isinstance(keys, PrivateKey) else list(keys)
    return _sign_tree(
        Path(directory),
        chosen,
        version=version,
        expires_in=expires_in,
        name=name,
        allow_version_jump=allow_version_jump,
    )


def _signers(keys: Signer | Sequence[Signer]) -> list[Signer]:
    return [keys] if isinstance(keys, PrivateKey) else list(keys)  # type: ignore[arg-type]


def _publics(keys: Iterable[KeyArg], option: str) -> tuple[PublicKey, ...]:
    return tuple(public_key_arg(key, option) for key in keys)


def init_root(
    directory: str | Path,
    *,
    root_keys: Signer | Sequence[Signer],
    signers: Sequence[KeyArg],
    threshold: int = 1,
    root_threshold: int = 1,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRY,
    name: str | None = None,
    trees: Mapping[str, tuple[Sequence[KeyArg], int]] | None = None,
) -> RootResult:
    """Write ``secure-urlimport.root.1`` in *directory*, as ``root init`` does.

    *root_keys* (a :class:`PrivateKey` or other signer, or several) become the
    root keys and all sign it; *threshold* of *signers* must sign each release
    of the tree called *name* (default: the name in the tree's manifest, else
    the directory's name), *root_threshold* of the root keys each next root.
    *trees* maps other tree names to (signers, threshold).  Refused if the tree
    has a root already.  Returns the path, the :class:`Root` and its bytes.
    """
    tree_roles = {
        tree: (_publics(keys, f"signer of tree {tree!r}"), k)
        for tree, (keys, k) in (trees or {}).items()
    }
    return _init_root(
        Path(directory),
        _signers(root_keys),
        _publics(signers, "signer"),
        threshold=threshold,
        root_threshold=root_threshold,
        expires_in=expires_in,
        name=name,
        trees=tree_roles,
    )


def update_root(
    directory: str | Path,
    *,
    root_keys: Signer | Sequence[Signer],
    add_signers: Sequence[KeyArg] = (),
    remove_signers: Sequence[KeyArg] = (),
    add_root_keys: Sequence[KeyArg] = (),
    remove_root_keys: Sequence[KeyArg] = (),
    threshold: int | None = None,
    root_threshold: int | None = None,
    expires_in: timedelta = DEFAULT_ROOT_EXPIRY,
    tree_signers: Mapping[str, Sequence[KeyArg]] | None = None,
    tree_thresholds: Mapping[str, int] | None = None,
    remove_trees: Sequence[str] = (),
) -> RootResult:
    """Write root N+1 in *directory*, as ``root update`` does.

    The tree's chain must verify from version 1.  *root_keys* must include a
    threshold of the newest root's root keys and, after the change, of the
    new root's (a rotation: old and new keys sign together).  Removals take a
    key id, a ``.pub`` path or a :class:`PublicKey`; *threshold* and
    *root_threshold* default to the old root's; *tree_signers* adds keys to
    other trees' roles (made with threshold 1), *tree_thresholds* sets them.
    The new root expires *expires_in* from now.
    """
    change = RootChange(
        add_signers=_publics(add_signers, "add_signers"),
        remove_signers=tuple(key_id_arg(k, "remove_signers") for k in remove_signers),
        add_root_keys=_publics(add_root_keys, "add_root_keys"),
        remove_root_keys=tuple(key_id_arg(k, "remove_root_keys") for k in remove_root_keys),
        threshold=threshold,
        root_threshold=root_threshold,
        tree_signers=tuple(
            (tree, public_key_arg(key, "tree_signers"))
            for tree, keys in (tree_signers or {}).items()
            for key in keys
        ),
        tree_thresholds=tuple((tree_thresholds or {}).items()),
        remove_trees=tuple(remove_trees),
    )
    return _update_root(Path(directory), _signers(root_keys), change, expires_in=expires_in)
