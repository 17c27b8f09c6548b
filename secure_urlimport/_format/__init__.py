"""The signed formats, byte for byte: paths, keys, the manifest, the bundle.

Bytes and names only: no trust decisions, no I/O (``lint-imports`` checks it).
"""
