"""The ``secure-urlimport`` command: its parser and dispatch.

The commands live beside it: publishing.py, checking.py, running.py.

Exit codes: 0 success; 1 the operation failed (verification problems, wrong
passphrase, unsignable tree, ``sign --check`` found changes); 2 usage errors
(argparse's own convention) and gates that cannot run (a bad key file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SecureImportError
from .checking import cmd_verify
from .common import EXIT_FAILED, EXIT_USAGE, PROG, UsageError
from .publishing import cmd_keygen, cmd_sign
from .rooting import add_root_parser, cmd_root
from .running import cmd_demo, cmd_run, cmd_serve

if TYPE_CHECKING:
    pass

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Sign, publish, verify and import Python code over HTTPS."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the debug trail")
    # Accepted after the command too; SUPPRESS keeps a subcommand's default
    # from overwriting a --verbose given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the debug trail",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "keygen", parents=[common], help="make an Ed25519 key pair PREFIX.key / PREFIX.pub"
    )
    p.add_argument("prefix", metavar="PREFIX")
    p.add_argument(
        "--unencrypted",
        action="store_true",
        help="store the private key without a passphrase (not recommended)",
    )
    p.add_argument(
        "--pkcs11",
        metavar="URI",
        help="make the key pair inside a PKCS#11 token instead ('pkcs11:token=T;object=NAME'); "
        "only PREFIX.pub is written, the private key never leaves the token",
    )

    p = sub.add_parser(
        "sign", parents=[common], help="sign every file of a tree and write its manifest"
    )
    p.add_argument("directory", metavar="DIR", type=Path)
    p.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help="private key file (or a pkcs11: URI); repeat for several signers",
    )
    p.add_argument(
        "--version",
        type=int,
        metavar="N",
        help="tree version (default: the previous version + 1, if the tree's "
        "manifest verifies against --key)",
    )
    p.add_argument(
        "--allow-version-jump",
        action="store_true",
        help="accept a --version more than 2**32 above the previous one: clients "
        "refuse every later release below it",
    )
    p.add_argument(
        "--expires", metavar="DURATION", help="validity from now, e.g. 90d, 12h, 30s (default 90d)"
    )
    p.add_argument(
        "--shard-threshold",
        type=int,
        metavar="N",
        help="write a tree of more than N files as an index of manifest shards "
        "(manifest format 2; default 2000)",
    )
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the tree's name, which clients may pin (default: DIR's name)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list what signing would change (exit 1 if anything); "
        "needs only the key ids of --key (no passphrase) or --pubkey",
    )
    p.add_argument(
        "--pubkey",
        action="append",
        type=Path,
        metavar="PUB",
        help="with --check: a signer's public key, to also check the signatures",
    )

    p = sub.add_parser(
        "verify", parents=[common], help="check a signed tree (directory or URL): the CI gate"
    )
    p.add_argument("target", metavar="TARGET")
    p.add_argument(
        "--pubkey",
        action="append",
        metavar="PUB",
        help="pinned public key (.pub); repeat for several",
    )
    _root_options(p)
    p.add_argument(
        "--threshold",
        type=int,
        default=None,
        metavar="N",
        help="distinct pinned keys that must sign (default 1; with --pubkey)",
    )
    p.add_argument("--cafile", metavar="CA", help="PEM CA bundle for an https TARGET")
    p.add_argument("--name", metavar="NAME", help="the tree name the manifest must carry")
    p.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json (schema 1) or github (workflow annotations); see docs/ci.md",
    )

    p = sub.add_parser(
        "serve", parents=[common], help="serve a directory over HTTPS for development"
    )
    p.add_argument("directory", metavar="DIR", type=Path)
    p.add_argument("--port", type=int, default=8443, help="port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cert", metavar="C", help="server certificate chain (PEM)")
    p.add_argument("--key", metavar="K", help="server private key (PEM)")
    p.add_argument("--pubkey", metavar="PUB", help="shown in the install() line to paste")

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a remote module as __main__, like python -m",
        description="Options go before MODULE; everything after MODULE is the module's argv.",
    )
    p.add_argument(
        "--pubkey",
        action="append",
        metavar="PUB",
        help="pinned public key (.pub); repeat for several",
    )
    _root_options(p)
    p.add_argument("--threshold", type=int, default=None, metavar="N")
    p.add_argument("--cafile", metavar="CA", help="PEM CA bundle for the server")
    p.add_argument("--name", metavar="NAME", help="the tree name the manifest must carry")
    p.add_argument("url", metavar="URL", help="https URL of the signed tree")
    p.add_argument("module", metavar="MODULE", help="module or package to run")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    sub.add_parser("demo", parents=[common], help="sign, serve and import the bundled example tree")
    add_root_parser(sub, common)
    return parser


def _root_options(p: argparse.ArgumentParser) -> None:
    """``--root``/``--root-threshold``: pin the root keys instead of ``--pubkey``."""
    p.add_argument(
        "--root",
        action="append",
        metavar="PUB",
        help="pinned root public key (.pub), instead of --pubkey: the tree's root "
        "chain names the signing keys; repeat for several",
    )
    p.add_argument(
        "--root-threshold",
        type=int,
        default=None,
        metavar="K",
        help="distinct pinned root keys that must sign (default 1; with --root)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("secure_urlimport").setLevel(logging.DEBUG)
    handler = {
        "keygen": cmd_keygen,
        "sign": cmd_sign,
        "verify": cmd_verify,
        "serve": cmd_serve,
        "demo": cmd_demo,
        "run": cmd_run,
        "root": cmd_root,
    }[args.command]
    try:
        return handler(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SecureImportError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        for problem in getattr(exc, "problems", ()):
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
