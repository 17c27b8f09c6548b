"""The CI gate (``secure-urlimport verify``): every problem of a tree, and how it is printed."""
