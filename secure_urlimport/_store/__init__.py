"""Files on disk: the untrusted caches, the rollback records, private directories.

Nothing read here is trusted until the layers above verify it.
"""
