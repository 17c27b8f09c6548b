"""Which native files an extension module needs on disk, and putting them there.

The set written for an extension module of top-level package *pkg* is every
native file of *pkg* (extension modules of any suffix, shared libraries) and
every file of the tree's top-level ``*.libs/`` directories that may be
*pkg*'s: auditwheel and delvewheel put the libraries a wheel bundles there,
named for the distribution (``numpy.libs/``), which is not always the
package's name (Pillow's are ``pillow.libs/`` for package ``PIL``).  So
``pkg.libs`` goes with *pkg* only, and one named for no top-level directory of
the tree goes with every package.
It is written whole on the first extension import of *pkg* in a release,
because which library an extension needs is decided by the dynamic loader
(``DT_NEEDED`` + ``$ORIGIN``), not by Python.  Measured on numpy 2.4: ``import
numpy`` loads 2 of its 19 extension modules, but those are 10.6 of their
15.8 MB, and they need the 28.5 MB of ``numpy.libs``: writing only what is
imported would save 12 % of the 44.3 MB, at the price of missing a library
that one extension module loads from another.

Every file is verified against the signed manifest before it is written, the
whole set again (SHA-256 and signatures) the first time a process uses it,
and the module's own file again before each load (materialise.py).
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
from pathlib import Path

from .. import forksafe
from .._client.remote import RemoteTree
from .._client.shards import TreeIndex
from .._format.manifest import FileEntry, Manifest
from .._net.deadline import import_step
from .._store.materialise import NativeDir, set_digest
from .._trust.verify import release_keys, verify_file_signatures
from ..errors import ConfigurationError

__all__ = ["EXTENSION_SUFFIXES", "is_native", "materialise", "native_dir"]

log = logging.getLogger("secure_urlimport")

#: The suffixes of extension modules this interpreter can load, in its order.
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
_LIBRARY_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


def is_native(path: str) -> bool:
    """Is the tree path *path* a file the dynamic loader may read: an extension
    module, a shared library (``libfoo.so.5.0.0`` too), or in a ``*.libs/``
    directory?"""
    *directories, name = path.split("/")
    return (
        name.endswith(EXTENSION_SUFFIXES + _LIBRARY_SUFFIXES)
        or ".so." in name
        or any(part.endswith(".libs") for part in directories)
    )


def native_set(index: TreeIndex, relpath: str) -> list[FileEntry]:
    """The entries written for the extension module at *relpath* (module doc)."""
    top, sep, _ = relpath.partition("/")
    paths = {relpath}
    if sep:
        paths.update(p for p in index.files_below(top, recursive=True) if is_native(p))
    roots = index.children("")
    for name in roots:
        # "numpy.libs" is numpy's; one named for no package of the tree
        # ("pillow.libs" for PIL) may be anyone's, so every package gets it.
        owner = name.removesuffix(".libs")
        if name.endswith(".libs") and index.is_dir(name) and (owner == top or owner not in roots):
            paths.update(index.files_below(name, recursive=True))
    entries = [index.get(path) for path in sorted(paths)]
    return [entry for entry in entries if entry is not None]


def native_dir(tree: RemoteTree, entries: list[FileEntry]) -> NativeDir:
    digest = set_digest((e.path, e.sha256, e.size) for e in entries)
    return NativeDir(tree.state_dir, tree.url, digest)


class _Ready:
    """The native sets of one tree verified in this process, by directory."""

    def __init__(self) -> None:
        # Held while a set is written: two threads importing extensions of one
        # package would otherwise both download all of it.
        self.lock = forksafe.Lock()
        self.paths: set[Path] = set()


_ready: dict[str, _Ready] = {}


def materialise(tree: RemoteTree, relpath: str) -> Path:
    """The path of the verified extension module *relpath* of *tree* on disk,
    with the rest of its native set: written if missing or different,
    checked (owner, mode, no links) and verified again before it is returned."""
    manifest, entry = tree.lookup(relpath)
    entries = native_set(tree.index_of(manifest), relpath)
    directory = native_dir(tree, entries)
    ready = _ready.setdefault(tree.url, _Ready())
    with ready.lock:
        if directory.path not in ready.paths:
            for member in entries:
                _ensure(tree, manifest, directory, member)
            ready.paths.add(directory.path)
        else:
            # The library files were verified once in this process; the
            # module itself is verified before each load.
            _ensure(tree, manifest, directory, entry)
    return directory.file_path(relpath)


def _ensure(tree: RemoteTree, manifest: Manifest, directory: NativeDir, entry: FileEntry) -> None:
    """Make *entry*'s file in *directory* hold its verified bytes."""
    try:
        _ensure_on_disk(tree, manifest, directory, entry)
    except OSError as exc:
        target = directory.file_path(entry.path)
        raise ConfigurationError(
            f"cannot write or check the verified extension module file {target} of "
            f"{tree.url}: {exc}; compiled modules load only from a file; set "
            "SECURE_URLIMPORT_CACHE_DIR (or Config(cache_dir=...)) to a writable directory "
            "of your own",
            path=tree.file_url(entry.path),
        ) from None


def _ensure_on_disk(
    tree: RemoteTree, manifest: Manifest, directory: NativeDir, entry: FileEntry
) -> None:
    directory.check(entry.path)
    if directory.holds(entry.path, entry.sha256, entry.size):
        # The disk stands in for the download, not for the signatures: this
        # release and its keys must still vouch for the entry.
        url = tree.file_url(entry.path)
        verify_file_signatures(entry, manifest, release_keys(manifest, url=url), url=url)
        return
    target = directory.file_path(entry.path)
    if os.path.lexists(target):
        log.warning(
            "%s differs from the signed %s (changed on disk since it was written); "
            "writing the verified bytes again",
            target,
            tree.file_url(entry.path),
        )
    with import_step(tree.config.timeout):  # one bound per file: numpy's are 28 MB
        data = tree.read_entry(manifest, entry)
    directory.write(entry.path, data)
    tree.store.forget(entry)  # on disk now: not worth keeping in memory too
