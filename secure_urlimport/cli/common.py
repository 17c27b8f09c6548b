"""What every command of the ``secure-urlimport`` command line shares."""

from __future__ import annotations

from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "PROG", "UsageError", "check_pins"]

PROG = "secure-urlimport"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments discovered after parsing (exit code 2)."""


def check_pins(args: Any) -> None:
    """Exactly one of ``--pubkey`` and ``--root``, each with its own threshold."""
    if (args.pubkey is None) == (args.root is None):
        raise UsageError(
            "give --pubkey PUB (the signing key) or --root PUB (the root key, whose "
            "roots name the signing keys), not both and not neither"
        )
    if args.root is not None and args.threshold is not None:
        raise UsageError("--threshold goes with --pubkey; with --root use --root-threshold")
    if args.pubkey is not None and args.root_threshold is not None:
        raise UsageError("--root-threshold goes with --root; with --pubkey use --threshold")
