"""File names for things filed by URL: the manifest cache, the rollback state
and the bytecode packs.

A URL cannot be a file name (slashes, ``..``, length, case-insensitive file
systems), so each is filed under a hash of it.  The recipe is fixed: a new
one would orphan every cache and, worse, every rollback floor already on disk.
"""

from __future__ import annotations

import hashlib

__all__ = ["file_name_for"]

#: Hex digits kept: 128 bits, far beyond any chance collision between URLs.
_HEX_CHARS = 32


def file_name_for(text: str) -> str:
    """The file name (no suffix) for *text*: the first 32 hex digits of the
    SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HEX_CHARS]
