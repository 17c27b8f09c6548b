"""``root init``, ``root update`` and ``root show``: the publisher's root of trust.

Key ids are read from the key files' clear headers and every check that needs
no private key runs first, so a refused command never asks for a passphrase.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, SecureImportError

if TYPE_CHECKING:
    from .._format.keys import PublicKey, Signer
    from .._format.root import Root
    from ..publish.rootedit import RootChange

from .common import EXIT_OK, PROG, UsageError

__all__ = ["add_root_parser", "cmd_root"]


def add_root_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """The ``root`` command and its three subcommands."""
    p = sub.add_parser(
        "root", parents=[common], help="publish or show a tree's root of trust (root keys)"
    )
    actions = p.add_subparsers(dest="root_command", required=True, metavar="ACTION")
    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument("tree", metavar="TREE", type=Path)
    keys.add_argument(
        "--root-key",
        action="append",
        required=True,
        metavar="KEY",
        help="a root private key file (or pkcs11: URI) that signs the root; repeat",
    )
    keys.add_argument("--root-threshold", type=int, metavar="K", help="root keys that must sign")
    keys.add_argument("--threshold", type=int, metavar="N", help="signers a release needs")
    keys.add_argument("--expires", metavar="DURATION", help="validity from now (default 365d)")
    keys.add_argument(
        "--tree-signer",
        action="append",
        default=[],
        metavar="NAME=PUB",
        help="a signer of another tree NAME under this root; repeat",
    )
    keys.add_argument(
        "--tree-threshold", action="append", default=[], metavar="NAME=N", help="tree NAME's"
    )

    p = actions.add_parser("init", parents=[common, keys], help="write root version 1")
    p.add_argument(
        "--signer", action="append", required=True, metavar="PUB", help="release signer (.pub)"
    )
    p.add_argument("--name", metavar="NAME", help="the tree name (default: the manifest's)")

    p = actions.add_parser("update", parents=[common, keys], help="write root version N+1")
    for option, what in (
        ("--add-signer", "a release signer to add (.pub)"),
        ("--remove-signer", "a release signer to remove (.pub or key id)"),
        ("--add-root-key", "a root key to add (.pub; it must sign too, with --root-key)"),
        ("--remove-root-key", "a root key to remove (.pub or key id)"),
        ("--remove-tree", "another tree's role to remove (its NAME)"),
    ):
        p.add_argument(option, action="append", default=[], metavar="KEY", help=what)

    p = actions.add_parser("show", parents=[common], help="list a tree's roots (dir or URL)")
    p.add_argument("target", metavar="TREE|URL")
    p.add_argument(
        "--root", action="append", metavar="PUB", help="pinned root key to verify against"
    )
    p.add_argument("--root-threshold", type=int, default=1, metavar="K")
    p.add_argument("--cafile", metavar="CA", help="PEM CA bundle for an https URL")
    p.add_argument("--format", choices=("text", "json"), default="text")


def cmd_root(args: argparse.Namespace) -> int:
    handler = {"init": _init, "update": _update, "show": _show}[args.root_command]
    return handler(args)


def _expiry(args: argparse.Namespace) -> timedelta:
    from ..publish.signing import parse_duration

    try:
        return parse_duration(args.expires or "365d")
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"{option} {value!r} is not NAME=VALUE")
        pairs.append((name, rest))
    return pairs


def _number(text: str, option: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{option}: {text!r} is not a number")
    return int(text)


def _tree_signers(args: argparse.Namespace) -> list[tuple[str, PublicKey]]:
    from ..publish.keyargs import public_key_arg

    return [
        (name, public_key_arg(pub, "--tree-signer"))
        for name, pub in _pairs(args.tree_signer, "--tree-signer")
    ]


def _tree_thresholds(args: argparse.Namespace) -> list[tuple[str, int]]:
    return [
        (name, _number(n, "--tree-threshold"))
        for name, n in _pairs(args.tree_threshold, "--tree-threshold")
    ]


def _root_key_ids(args: argparse.Namespace) -> tuple[dict[str, str], bool]:
    """The key ids of every ``--root-key`` (from the files' headers), labelled by
    file name, and whether every one was known without opening a token."""
    from ..publish.keyargs import signer_key_id

    labels, complete = {}, True
    for spec in args.root_key:
        keyid = signer_key_id(spec, "--root-key")
        if keyid is None:
            complete = False
        else:
            labels[keyid] = str(spec)
    return labels, complete


def _load_root_keys(args: argparse.Namespace) -> list[Signer]:
    from ..publish.signers import load_signer

    return [load_signer(spec) for spec in args.root_key]


def _init(args: argparse.Namespace) -> int:
    from ..publish.keyargs import public_key_arg
    from ..publish.roots import init_root, refuse_existing_root

    expires_in = _expiry(args)
    signers = [public_key_arg(pub, "--signer") for pub in args.signer]
    trees: dict[str, tuple[list[PublicKey], int]] = {}
    for name, key in _tree_signers(args):
        trees.setdefault(name, ([], 1))[0].append(key)
    for name, k in _tree_thresholds(args):
        if name not in trees:
            raise UsageError(f"--tree-threshold {name}={k}: no --tree-signer {name}=PUB given")
        trees[name] = (trees[name][0], k)
    labels, _ = _root_key_ids(args)
    # Before any passphrase: a tree with a root already, a root threshold the
    # keys cannot meet (the rest is checked once the keys are loaded).
    refuse_existing_root(args.tree)
    if args.root_threshold is not None and args.root_threshold > len(set(args.root_key)):
        raise ConfigurationError(
            f"--root-threshold {args.root_threshold} cannot be met by the "
            f"{len(set(args.root_key))} --root-key given: no next root could ever be signed"
        )
    result = init_root(
        args.tree,
        _load_root_keys(args),
        signers,
        threshold=1 if args.threshold is None else args.threshold,
        root_threshold=1 if args.root_threshold is None else args.root_threshold,
        trees=trees,
        expires_in=expires_in,
        name=args.name,
        labels=labels,
    )
    print(f"wrote {result.path}: {_summary(result.root)}")
    return EXIT_OK


def _change(args: argparse.Namespace) -> RootChange:
    from ..publish.keyargs import key_id_arg, public_key_arg
    from ..publish.rootedit import RootChange

    return RootChange(
        add_signers=tuple(public_key_arg(p, "--add-signer") for p in args.add_signer),
        remove_signers=tuple(key_id_arg(p, "--remove-signer") for p in args.remove_signer),
        add_root_keys=tuple(public_key_arg(p, "--add-root-key") for p in args.add_root_key),
        remove_root_keys=tuple(key_id_arg(p, "--remove-root-key") for p in args.remove_root_key),
        threshold=args.threshold,
        root_threshold=args.root_threshold,
        tree_signers=tuple(_tree_signers(args)),
        tree_thresholds=tuple(_tree_thresholds(args)),
        remove_trees=tuple(args.remove_tree),
    )


def _update(args: argparse.Namespace) -> int:
    from ..publish.rootedit import check_root_signers
    from ..publish.roots import plan_update, update_root

    expires_in = _expiry(args)
    change = _change(args)
    chain, new = plan_update(args.tree, change, expires_in=expires_in)
    labels, complete = _root_key_ids(args)
    if complete:  # before any passphrase; checked again on the loaded keys
        check_root_signers(list(labels), old=chain.newest.root, new=new, labels=labels)
    result = update_root(
        args.tree, _load_root_keys(args), change, expires_in=expires_in, labels=labels
    )
    print(f"wrote {result.path}: {_summary(result.root)}")
    return EXIT_OK


def _summary(root: Root) -> str:
    from .._format.signedfile import format_time

    return (
        f"root version {root.version} of tree {root.name!r}; root keys "
        f"{', '.join(root.root.keyids)} ({root.root.threshold} must sign); signers "
        f"{', '.join(root.signers.keyids)} ({root.signers.threshold} must sign); "
        f"expires {format_time(root.expires)}"
    )


def _show(args: argparse.Namespace) -> int:
    from .._format.keys import TrustedKeys
    from ..publish.rootshow import list_directory_roots, list_remote_roots

    pin = None
    if args.root:
        try:
            pin = TrustedKeys.from_arg([Path(p) for p in args.root], args.root_threshold)
        except SecureImportError as exc:
            raise UsageError(str(exc)) from None
    target: str = args.target
    if "://" in target:
        from .._client.remote import normalize_url
        from .._net.transport import RequestsFetcher
        from ..config import Config

        url = normalize_url(target)
        fetcher = RequestsFetcher(Config(cafile=args.cafile))
        try:
            listing = list_remote_roots(url, fetcher, pin)
        finally:
            fetcher.close()
    elif Path(target).is_dir():
        listing = list_directory_roots(Path(target), pin)
    else:
        raise UsageError(
            f"{target!r} is neither a directory nor an https:// URL; give the tree's "
            f"directory or its https:// URL ({PROG} root show TREE|URL)"
        )
    if args.format == "json":
        print(json.dumps(listing.to_json(), indent=2))
    else:
        print("\n".join(listing.text_lines()))
    return EXIT_OK
