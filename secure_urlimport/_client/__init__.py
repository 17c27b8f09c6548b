"""One signed tree: its current manifest and the verified bytes of its files.

RemoteTree is the facade; current.py decides which manifest, sources.py where bytes come from.
"""
