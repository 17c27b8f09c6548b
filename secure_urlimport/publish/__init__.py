"""The publisher's side: key files, signing a tree, ``sign --check``, the public signing API."""
