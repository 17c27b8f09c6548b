"""Compiled extension modules of a signed tree, loaded by the standard loader.

The finder looks for ``name + suffix`` for each of this interpreter's
``importlib.machinery.EXTENSION_SUFFIXES`` in the order ``FileFinder`` does:
extension modules before source, at each of "package" (``__init__``) and
"module" (loader.py's :func:`~.loader.locate`).

The spec's origin, and so the module's ``__file__``, is the verified copy on
local disk (``<cache dir>/ext/...``, native.py), not the URL: ``dlopen`` needs
a real file, and code that looks beside its extension (``os.path.dirname``)
finds the tree's other native files there.  ``__spec__.parent`` and the
package's ``__path__`` stay the tree's URLs, so submodules and resources still
come from the signed tree.
"""

from __future__ import annotations

import importlib.machinery
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING

from .._client.remote import RemoteTree
from .._client.shards import TreeIndex
from .._store.materialise import SUPPORTED
from ..errors import ExtensionModulesOffError, SecureImportError
from .native import EXTENSION_SUFFIXES, materialise, native_dir, native_set

if TYPE_CHECKING:
    from importlib.resources.abc import TraversableResources

__all__ = [
    "RemoteExtensionLoader",
    "extension_at",
    "extension_spec",
    "module_suffixes",
    "refuse_extension",
]


def extension_at(index: TreeIndex, base: str) -> str | None:
    """The tree path of an extension module stored at *base* (no suffix), or None."""
    for suffix in EXTENSION_SUFFIXES:
        if index.is_file(base + suffix):
            return base + suffix
    return None


def enabled(tree: RemoteTree) -> bool:
    return tree.config.extension_modules and SUPPORTED


def module_suffixes(tree: RemoteTree) -> tuple[str, ...]:
    """The file suffixes of modules *tree* serves, as ``pkgutil`` lists them."""
    return (*EXTENSION_SUFFIXES, ".py") if enabled(tree) else (".py",)


def refuse_extension(tree: RemoteTree, fullname: str, relpath: str) -> ExtensionModulesOffError:
    """The error for an extension module the tree has but this client does not load."""
    url = tree.file_url(relpath)
    why = (
        "extension modules are turned off (Config(extension_modules=False)); pass "
        "config=Config(extension_modules=True) to install() or trust() to load them"
        if SUPPORTED
        else "this platform has no POSIX file ownership to keep their files private"
    )
    return ExtensionModulesOffError(
        f"cannot import {fullname!r}: the signed tree {tree.url} has it only as the "
        f"compiled extension module {url}, and {why}",
        name=fullname,
        path=url,
    )


class RemoteExtensionLoader(importlib.machinery.ExtensionFileLoader):
    """``ExtensionFileLoader`` for the verified local copy of a tree's extension module.

    ``create_module`` writes (or checks and verifies again) the copy, then
    hands the spec to the standard loader, which ``dlopen``\\ s that file.
    """

    def __init__(self, tree: RemoteTree, fullname: str, relpath: str, path: str) -> None:
        super().__init__(fullname, path)
        self.tree = tree
        self.relpath = relpath
        self.url = tree.file_url(relpath)

    def __repr__(self) -> str:
        return f"<RemoteExtensionLoader {self.name!r} from {self.url}>"

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        try:
            path = str(materialise(self.tree, self.relpath))
        except SecureImportError as exc:
            raise exc.for_module(spec.name) from None
        # The release may have changed since find_spec: load what was verified now.
        self.path = spec.origin = path
        module: ModuleType = super().create_module(spec)
        return module

    def get_resource_reader(  # type: ignore[override]
        self, fullname: str | None = None
    ) -> TraversableResources:
        # The package's resources are the tree's files, not the native copies.
        from .resources import RemoteResourceReader

        return RemoteResourceReader(self.tree, self.relpath.rpartition("/")[0])


def extension_spec(
    tree: RemoteTree, index: TreeIndex, fullname: str, relpath: str, *, is_package: bool
) -> ModuleSpec:
    """The spec of the extension module at *relpath* (the finder checked it is enabled)."""
    path = str(native_dir(tree, native_set(index, relpath)).file_path(relpath))
    loader = RemoteExtensionLoader(tree, fullname, relpath, path)
    spec = ModuleSpec(fullname, loader, origin=path, is_package=is_package)
    spec.has_location = True
    if is_package:
        spec.submodule_search_locations = [tree.file_url(relpath.rpartition("/")[0])]
    return spec
