"""The trust rules: bytes, pinned keys and the clock in; trusted values or an error out.

Pure: no network, disk, clock or import system (``lint-imports`` checks it).
"""
