"""``secure-urlimport run``: find MODULE in the signed tree without running anything else.

``runpy`` and ``importlib.util.find_spec`` import a dotted name's parent
packages to find it, and the import system may take a parent from anywhere
on ``sys.path``, the working directory first under ``python -m``: finding
``pkg.mod`` that way would run a local ``pkg/__init__.py`` before anything
could say that ``pkg`` is not the tree's.  Here each name of the chain is
looked up through ``sys.meta_path`` the way the import system would, which
runs no module code; only when every one of them resolves into the tree are
its packages imported, from exactly the specs checked, so nothing can take
their place between the check and the import.  ``runpy`` then finds the
packages in ``sys.modules`` and the module through their (remote) ``__path__``.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from typing import NoReturn

from .._import.finder import Importer
from .._import.loader import VerifiedLoader
from ..errors import NotInManifestError

__all__ = ["import_signed_packages"]


def import_signed_packages(importer: Importer, module: str) -> None:
    """Refuse unless *module* (and its packages, and for a package its
    ``__main__``) come from *importer*'s tree; then import those packages.

    Raises NotInManifestError, naming what the name would resolve to instead.
    """
    chain = _resolve(importer, module)
    for spec in chain[:-1]:  # the packages; the module itself is runpy's to run
        if spec.name not in sys.modules:
            _load(spec)


def _resolve(importer: Importer, module: str) -> list[ModuleSpec]:
    """The specs of *module*'s packages and of *module* (then of its
    ``__main__`` if it is a package), each checked to be the tree's."""
    parts = module.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    specs: list[ModuleSpec] = []
    path: list[str] | None = None
    for name in names:
        spec = _require_from_tree(importer, name, _find(name, path))
        specs.append(spec)
        path = spec.submodule_search_locations
        if path is None and name != names[-1]:
            _refuse(importer, names[-1], f"{name!r} is a module, not a package")
        if path is not None and name == module:  # a package: run its __main__
            names.append(f"{module}.__main__")
    return specs


def _find(name: str, path: list[str] | None) -> ModuleSpec | None:
    """What the import system would import for *name*, without importing it
    (nor, unlike importlib.util.find_spec, its parent)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return getattr(loaded, "__spec__", None)
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, path, None)
        except ModuleNotFoundError:
            return None  # (a finder that stops the search, as ours does)
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    return None


def _require_from_tree(importer: Importer, name: str, spec: ModuleSpec | None) -> ModuleSpec:
    """*spec* if it is a module or a namespace directory of the tree; else refuse."""
    tree = importer.tree
    if spec is None:
        _refuse(importer, name, "it is not in the tree")
    if isinstance(spec.loader, VerifiedLoader):
        if spec.loader.tree is tree:
            return spec
    elif spec.loader is None and spec.submodule_search_locations is not None:
        locations = [str(p) for p in spec.submodule_search_locations]
        if locations and all(p.startswith(tree.url + "/") for p in locations):
            return spec  # a namespace directory of the tree, and only of the tree
    where = spec.origin or ", ".join(map(str, spec.submodule_search_locations or ())) or "?"
    _refuse(importer, name, f"it would be imported from {where[:200]!r}")


def _refuse(importer: Importer, name: str, why: str) -> NoReturn:
    raise NotInManifestError(
        f"{name!r} is not a module of the signed tree {importer.url}: {why}; run executes "
        "signed modules only: check the name, or rename the local module that shadows it",
        name=name,
        path=importer.url,
    )


def _load(spec: ModuleSpec) -> None:
    """Import *spec* as the import system would, without finding it again."""
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    parent, _, child = spec.name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
