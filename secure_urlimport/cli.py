"""The ``secure-urlimport`` command: keygen, sign, verify, serve, demo.

Exit codes: 0 success; 1 the operation failed (verification problems, wrong
passphrase, unsignable tree, ``sign --check`` found changes); 2 usage errors
(argparse's own convention) and gates that cannot run (a bad key file).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigurationError, KeyFileError, SecureImportError

if TYPE_CHECKING:
    from .audit import Report
    from .keys import TrustedKeys
    from .progress import ProgressFn

__all__ = ["main"]

PROG = "secure-urlimport"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments discovered after parsing (exit code 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Sign, publish, verify and import Python code over HTTPS."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the debug trail")
    # Accepted after the command too; SUPPRESS keeps a subcommand's default
    # from overwriting a --verbose given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the debug trail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "keygen", parents=[common], help="make an Ed25519 key pair PREFIX.key / PREFIX.pub")
    p.add_argument("prefix", metavar="PREFIX")
    p.add_argument("--unencrypted", action="store_true",
                   help="store the private key without a passphrase (not recommended)")

    p = sub.add_parser(
        "sign", parents=[common], help="sign every file of a tree and write its manifest")
    p.add_argument("directory", metavar="DIR", type=Path)
    p.add_argument("--key", action="append", type=Path, metavar="KEY",
                   help="private key file; repeat for several signers")
    p.add_argument("--version", type=int, metavar="N",
                   help="tree version (default: the previous version + 1, if the tree's "
                        "manifest verifies against --key)")
    p.add_argument("--allow-version-jump", action="store_true",
                   help="accept a --version more than 2**32 above the previous one: clients "
                        "refuse every later release below it")
    p.add_argument("--expires", metavar="DURATION",
                   help="validity from now, e.g. 90d, 12h, 30s (default 90d)")
    p.add_argument("--name", metavar="NAME",
                   help="the tree's name, which clients may pin (default: DIR's name)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; list what signing would change (exit 1 if anything); "
                        "needs only the key ids of --key (no passphrase) or --pubkey")
    p.add_argument("--pubkey", action="append", type=Path, metavar="PUB",
                   help="with --check: a signer's public key, to also check the signatures")

    p = sub.add_parser(
        "verify", parents=[common], help="check a signed tree (directory or URL): the CI gate")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--pubkey", action="append", required=True, metavar="PUB",
                   help="pinned public key (.pub); repeat for several")
    p.add_argument("--threshold", type=int, default=1, metavar="N",
                   help="distinct pinned keys that must sign (default 1)")
    p.add_argument("--cafile", metavar="CA", help="PEM CA bundle for an https TARGET")
    p.add_argument("--name", metavar="NAME", help="the tree name the manifest must carry")
    p.add_argument("--format", choices=("text", "json", "github"), default="text",
                   help="text (default), json (schema 1) or github (workflow annotations); "
                        "see docs/ci.md")

    p = sub.add_parser(
        "serve", parents=[common], help="serve a directory over HTTPS for development")
    p.add_argument("directory", metavar="DIR", type=Path)
    p.add_argument("--port", type=int, default=8443, help="port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cert", metavar="C", help="server certificate chain (PEM)")
    p.add_argument("--key", metavar="K", help="server private key (PEM)")
    p.add_argument("--pubkey", metavar="PUB", help="shown in the install() line to paste")

    p = sub.add_parser(
        "run", parents=[common], help="run a remote module as __main__, like python -m",
        description="Options go before MODULE; everything after MODULE is the module's argv.")
    p.add_argument("--pubkey", action="append", required=True, metavar="PUB",
                   help="pinned public key (.pub); repeat for several")
    p.add_argument("--threshold", type=int, default=1, metavar="N")
    p.add_argument("--cafile", metavar="CA", help="PEM CA bundle for the server")
    p.add_argument("--name", metavar="NAME", help="the tree name the manifest must carry")
    p.add_argument("url", metavar="URL", help="https URL of the signed tree")
    p.add_argument("module", metavar="MODULE", help="module or package to run")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    sub.add_parser(
        "demo", parents=[common], help="sign, serve and import the bundled example tree")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("secure_urlimport").setLevel(logging.DEBUG)
    handler = {
        "keygen": cmd_keygen, "sign": cmd_sign, "verify": cmd_verify,
        "serve": cmd_serve, "demo": cmd_demo, "run": cmd_run,
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


def cmd_keygen(args: argparse.Namespace) -> int:
    from .keyfile import passphrase_from_env_or_prompt, save_private_key, write_public_key
    from .keys import PrivateKey

    key_path, pub_path = Path(f"{args.prefix}.key"), Path(f"{args.prefix}.pub")
    for path in (key_path, pub_path):
        # lexists: a dangling symlink planted at the name counts (exists() says no).
        if os.path.lexists(path):
            raise KeyFileError(f"{path} already exists (or is a symlink); choose another "
                               "PREFIX or remove it")
    passphrase = None if args.unencrypted else passphrase_from_env_or_prompt(key_path, confirm=True)
    key = PrivateKey.generate()
    save_private_key(key, key_path, passphrase)  # both are created O_EXCL | O_NOFOLLOW
    try:
        write_public_key(key.public, pub_path)
    except KeyFileError:
        # Planted after the check above: drop the new key (never used, so nothing is
        # lost) so that running keygen again, once the name is free, just works.
        key_path.unlink(missing_ok=True)
        raise
    state = "unencrypted" if passphrase is None else "passphrase-encrypted"
    print(f"wrote {key_path} ({state}, keep it secret) and {pub_path} (key id {key.keyid})")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from .keyfile import load_private_key, passphrase_from_env_or_prompt
    from .progress import terminal_progress
    from .signing import parse_duration, sign_tree

    if args.check:
        return _sign_check(args)
    if args.pubkey:
        raise UsageError("--pubkey goes with --check (sign --check DIR --pubkey PUB); "
                         "to sign, give the private key: --key KEY")
    if not args.key:
        raise UsageError("sign needs --key KEY, a private key file made by "
                         f"'{PROG} keygen PREFIX' (PREFIX.key)")
    try:
        expires_in = parse_duration(args.expires or "90d")
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    keys = [
        load_private_key(path, functools.partial(passphrase_from_env_or_prompt, path))
        for path in args.key
    ]
    with terminal_progress(f"{PROG} sign") as progress:
        result = sign_tree(args.directory, keys, version=args.version, expires_in=expires_in,
                           name=args.name, progress=progress,
                           allow_version_jump=args.allow_version_jump)
    ids = ", ".join(k.keyid for k in keys)
    print(
        f"signed {result.files} file(s) in {args.directory} as version {result.version} "
        f"with key(s) {ids}; expires {result.expires:%Y-%m-%d %H:%M} UTC"
    )
    return EXIT_OK


def _sign_check(args: argparse.Namespace) -> int:
    """``sign --check``: what signing would change; reads key ids, never a private key."""
    from .gate_output import one_line
    from .keyfile import read_key_id
    from .keys import load_public_keys
    from .progress import terminal_progress
    from .signcheck import check_tree

    if not (args.key or args.pubkey):
        raise UsageError("sign --check needs the signers' --key KEY (only its key id is read) "
                         "or --pubkey PUB")
    for option, value in (("--version", args.version), ("--expires", args.expires),
                          ("--allow-version-jump", args.allow_version_jump or None)):
        if value is not None:
            raise UsageError(f"{option} has no effect with --check; leave it out")
    if not args.directory.is_dir():
        raise UsageError(f"{args.directory} is not a directory; give the tree you sign")
    try:
        keyids = [read_key_id(path) for path in args.key or ()]
        pubkeys = load_public_keys(list(args.pubkey)) if args.pubkey else []
    except SecureImportError as exc:
        raise UsageError(str(exc)) from None
    with terminal_progress(f"{PROG} sign --check") as progress:
        check = check_tree(args.directory, keyids, pubkeys, now=datetime.now(UTC),
                           name=args.name, progress=progress)
    for change in check.changes:
        print(one_line(f"{change.kind}: {change.path}: {change.message}"))
    print(one_line(f"{PROG} sign --check: {check.summary()}"))
    return EXIT_OK if check.up_to_date else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    from .audit import audit_directory
    from .gate_output import github_lines, text_lines
    from .keys import TrustedKeys
    from .progress import terminal_progress

    try:
        trusted = TrustedKeys.from_arg([Path(p) for p in args.pubkey], args.threshold)
    except SecureImportError as exc:
        raise UsageError(str(exc)) from None
    now = datetime.now(UTC)
    target: str = args.target
    root, file_url = None, None
    with terminal_progress(f"{PROG} verify") as progress:
        if "://" in target:
            report, file_url = _audit_remote(target, trusted, cafile=args.cafile, now=now,
                                             name=args.name, progress=progress)
        elif Path(target).is_dir():
            root = Path(target)
            report = audit_directory(root, trusted, now=now, name=args.name, progress=progress)
        else:
            raise UsageError(f"TARGET {target!r} is neither a directory nor an https:// URL; "
                             "give the signed tree's directory or its https:// URL")
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif args.format == "github":
        print("\n".join(github_lines(report, root=root, file_url=file_url)))
    else:
        print("\n".join(text_lines(report)))
    return EXIT_OK if report.ok else EXIT_FAILED


def _audit_remote(
    target: str, trusted: TrustedKeys, *, cafile: str | None, now: datetime,
    name: str | None, progress: ProgressFn,
) -> tuple[Report, Callable[[str], str]]:
    """The report for an https tree, and how its files' URLs are spelled."""
    from .audit import audit_url
    from .config import Config
    from .remote import RemoteTree

    config = Config(cafile=cafile)
    try:
        tree = RemoteTree(target, trusted, config)
    except SecureImportError as exc:
        raise UsageError(str(exc)) from None
    try:
        report = audit_url(
            tree.url, trusted, tree.fetcher, now=now, name=name,
            max_manifest_bytes=config.max_manifest_bytes, file_url=tree.file_url,
            progress=progress,
        )
    finally:
        tree.close()
    return report, tree.file_url


def cmd_serve(args: argparse.Namespace) -> int:
    import tempfile

    from .local_ca import make_local_ca
    from .server import TreeServer

    if not args.directory.is_dir():
        raise UsageError(f"{args.directory} is not a directory")
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together")
    with tempfile.TemporaryDirectory(prefix="secure-urlimport-ca-") as tmp:
        cafile = None
        certfile, keyfile = args.cert, args.key
        if certfile is None:
            ca = make_local_ca(Path(tmp), hostnames=(args.host, "localhost"))
            certfile, keyfile, cafile = str(ca.cert_file), str(ca.key_file), str(ca.ca_file)
        server = TreeServer(args.directory, certfile=certfile, keyfile=keyfile,
                            host=args.host, port=args.port)
        pub = args.pubkey or "publisher.pub"
        print(f"Serving {args.directory} at {server.url}")
        ca_arg = ""
        if cafile:
            print(f"CA certificate (trust it in the consumer): {cafile}")
            ca_arg = f", cafile={cafile!r}"
        print(f"Paste in the consumer:\n  secure_urlimport.install({server.url!r}, "
              f"pubkey={pub!r}{ca_arg})", flush=True)
        # SIGTERM ends the server like Ctrl-C, so the temporary CA is removed.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)
        finally:
            server.stop()
    return EXIT_OK


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    """``python -m MODULE ARGS`` for a module of a signed remote tree."""
    import runpy

    from .api import install
    from .runner import import_signed_packages

    pubkeys = [Path(p) for p in args.pubkey]
    importer = install(args.url, pubkey=pubkeys, cafile=args.cafile, threshold=args.threshold,
                       name=args.name)
    # Not importlib.util.find_spec: it imports parents, from the working
    # directory if need be, before the name could be refused (runner.py).
    import_signed_packages(importer, args.module)
    # As with python -m, the module sees only its own arguments (runpy then
    # puts the module's location, its URL, in argv[0]).
    sys.argv = [args.module, *args.args]
    try:
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    except ImportError as exc:
        # runpy wraps loading errors in a plain ImportError; show ours as one line.
        if type(exc) is ImportError and isinstance(exc.__cause__, SecureImportError):
            raise exc.__cause__ from None
        raise
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()
