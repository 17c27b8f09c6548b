"""The secure_urlimport benchmark; ``benchmarks/bench.py`` is the entry point.

- common: errors, the workspace, TLS, tables
- trees: the generated trees and signing
- servers: nginx or the builtin TreeServer
- children: one measurement in a fresh interpreter
- imports: the import table (issue #5)
- measures: verification, signing and import-time measurements in-process
"""
