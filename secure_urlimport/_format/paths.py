"""What may be a path in a signed tree, and how module names map onto paths.

Both the signer and the importer use these rules, so a tree that signs is a
tree that imports, and a name the signer would refuse is refused by the
importer before any request is made.
"""

from __future__ import annotations

import re
import sys
import unicodedata
import urllib.parse

from .root import ROOT_PREFIX

__all__ = [
    "BUNDLE_NAME",
    "MANIFEST_NAME",
    "SHARD_DIR",
    "STDLIB_NAMES",
    "is_metadata_file",
    "is_module_name",
    "path_problem",
    "url_in_tree",
]

#: The manifest's file name at the root of every signed tree.  The hyphen makes
#: it impossible to confuse with a module.
MANIFEST_NAME = "secure-urlimport.manifest"
#: Every module of the tree in one file (see ``bundle.py``); not signed itself.
BUNDLE_NAME = "secure-urlimport.bundle"
#: The manifest shards of a format-2 tree, each named by its SHA-256 (``shard.py``).
SHARD_DIR = "secure-urlimport.shards"

MAX_PATH_CHARS = 1024


def is_metadata_file(rel: str) -> bool:
    """Is the tree path *rel* the tree's metadata (manifest, bundle, a root
    version), which is published beside the files but is not one of them?"""
    return (
        rel in (MANIFEST_NAME, BUNDLE_NAME)
        or rel.startswith(ROOT_PREFIX)
        or rel.startswith(SHARD_DIR + "/")
    )


#: Top-level names a remote tree may never provide: the standard library's
#: (see README, "Shadowing").
STDLIB_NAMES = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def is_module_name(fullname: str) -> bool:
    """True if every dotted part of *fullname* is an ASCII identifier.

    ASCII only: non-ASCII identifiers are legal Python, but look-alike letters
    (fullwidth or Cyrillic forms of ``mod``) make them a spoofing tool, and the
    parser NFKC-folds them while ``importlib.import_module`` does not.
    """
    parts = fullname.split(".")
    return all(part.isascii() and part.isidentifier() for part in parts)


def path_problem(path: str) -> str | None:
    """Why *path* cannot be a file in a signed tree, or None if it can.

    A path is relative, ``/``-separated, NFC-normalised, has no empty, ``.``,
    ``..`` or hidden (dot-first) components, no backslashes or control
    characters.  A ``.py`` file whose path the ``import`` statement could name
    must be an ASCII module name; one it could not (``tools/hook-numpy.py``,
    ``pkg/2to3.py``) is data: never imported, read with ``get_data`` or
    ``importlib.resources``.
    """
    if len(path) <= MAX_PATH_CHARS and _PLAIN_PATH.fullmatch(path):
        # The common case, checked in one step (manifests list thousands):
        # ASCII, no control characters, no empty or dot-first components.
        return _reserved_or_module_problem(path, path.split("/"))
    if not path:
        return "empty path"
    if len(path) > MAX_PATH_CHARS:
        return f"path longer than {MAX_PATH_CHARS} characters"
    if path.startswith("/"):
        return "absolute path"
    if "\\" in path:
        return "backslash in path"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in path):
        return "control or format character in path"
    if unicodedata.normalize("NFC", path) != path:
        return "path is not NFC-normalised"
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return f"path component {part!r} not allowed"
        if part.startswith("."):
            return f"hidden component {part!r} not allowed"
    return _reserved_or_module_problem(path, parts)


# Components of letters, digits, '_', '-' and '.', never starting with '.'.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*")


def _reserved_or_module_problem(path: str, parts: list[str]) -> str | None:
    if path == MANIFEST_NAME:
        return "the manifest's own name"
    if path == BUNDLE_NAME:
        return "the bundle's own name"
    if path == SHARD_DIR or path.startswith(SHARD_DIR + "/"):
        return "in the shards' own directory"
    if path.endswith(".py") and not path.isascii():
        module_parts = [*parts[:-1], parts[-1][: -len(".py")]]
        if all(p.isidentifier() for p in module_parts):
            # Python would import it from a directory, but look-alike letters
            # make non-ASCII names a spoofing tool, so the finder never does
            # (is_module_name): refused here rather than missing at import.
            return "a .py file whose module name is not ASCII (never importable here)"
    return None


# What urllib.parse.quote() leaves as it is (with safe="/").
_NEEDS_NO_QUOTING = re.compile(r"[A-Za-z0-9_.\-~/]*")


def url_in_tree(base: str, relpath: str) -> str:
    """The URL of tree path *relpath* under the tree (or mirror) URL *base*."""
    if not relpath:
        return base
    if _NEEDS_NO_QUOTING.fullmatch(relpath):  # the usual case, without quote()'s cost
        return f"{base}/{relpath}"
    return f"{base}/{urllib.parse.quote(relpath)}"
