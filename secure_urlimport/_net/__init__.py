"""HTTPS: the Fetcher contract, downloads and their deadlines, mirrors, prefetch.

Pure decisions about answers (responses.py) apart from the I/O loop (download.py).
"""
