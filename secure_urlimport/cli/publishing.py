"""The publisher's commands: ``keygen``, ``sign`` and ``sign --check``."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, KeyFileError, SecureImportError

if TYPE_CHECKING:
    pass

from .common import EXIT_FAILED, EXIT_OK, PROG, UsageError

__all__ = ["cmd_keygen", "cmd_sign"]


def cmd_keygen(args: argparse.Namespace) -> int:
    from .._format.keys import PrivateKey
    from ..publish.keyfile import passphrase_from_env_or_prompt, save_private_key, write_public_key

    if args.pkcs11 is not None:
        return _keygen_in_token(args)
    key_path, pub_path = Path(f"{args.prefix}.key"), Path(f"{args.prefix}.pub")
    for path in (key_path, pub_path):
        # lexists: a dangling symlink planted at the name counts (exists() says no).
        if os.path.lexists(path):
            raise KeyFileError(
                f"{path} already exists (or is a symlink); choose another PREFIX or remove it"
            )
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


def _keygen_in_token(args: argparse.Namespace) -> int:
    """``keygen --pkcs11 URI PREFIX``: the pair is made in the token; only PREFIX.pub is written."""
    from ..publish.keyfile import write_public_key
    from ..publish.pkcs11 import generate_in_token
    from ..publish.pkcs11uri import is_pkcs11_uri

    if args.unencrypted:
        raise UsageError("--unencrypted has no effect with --pkcs11 (no key file is written)")
    if not is_pkcs11_uri(args.pkcs11):
        raise UsageError(
            "--pkcs11 takes a pkcs11: URI naming the token and the new key's label, "
            "e.g. 'pkcs11:token=release;object=signing-key'"
        )
    pub_path = Path(f"{args.prefix}.pub")
    if os.path.lexists(pub_path):
        raise KeyFileError(
            f"{pub_path} already exists (or is a symlink); choose another PREFIX or remove it"
        )
    public = generate_in_token(args.pkcs11, lambda key: write_public_key(key, pub_path))
    print(
        f"made an Ed25519 key in the token (never extractable) and wrote {pub_path} "
        f"(key id {public.keyid}); sign with --key '{_without_pin(args.pkcs11)}'"
    )
    return EXIT_OK


def _without_pin(uri: str) -> str:
    """*uri* as safe to print: without its pin-value."""
    path, sep, query = uri.partition("?")
    kept = [item for item in query.split("&") if item and not item.startswith("pin-value=")]
    return path + ("?" + "&".join(kept) if sep and kept else "")


def cmd_sign(args: argparse.Namespace) -> int:
    from ..publish.progress import terminal_progress
    from ..publish.signers import load_signer
    from ..publish.signing import parse_duration, sign_tree

    if args.check:
        return _sign_check(args)
    if args.pubkey:
        raise UsageError(
            "--pubkey goes with --check (sign --check DIR --pubkey PUB); "
            "to sign, give the private key: --key KEY"
        )
    if not args.key:
        raise UsageError(
            f"sign needs --key KEY, a private key file made by '{PROG} keygen PREFIX' (PREFIX.key)"
        )
    try:
        expires_in = parse_duration(args.expires or "90d")
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    _refuse_keys_the_root_does_not_list(args)
    keys = [load_signer(spec) for spec in args.key]
    with terminal_progress(f"{PROG} sign") as progress:
        result = sign_tree(
            args.directory,
            keys,
            version=args.version,
            expires_in=expires_in,
            name=args.name,
            progress=progress,
            allow_version_jump=args.allow_version_jump,
            shard_threshold=_shard_threshold(args),
        )
    ids = ", ".join(k.keyid for k in keys)
    print(
        f"signed {result.files} file(s) in {args.directory} as version {result.version} "
        f"with key(s) {ids}; expires {result.expires:%Y-%m-%d %H:%M} UTC"
    )
    return EXIT_OK


def _shard_threshold(args: argparse.Namespace) -> int:
    from ..publish.sharding import SHARD_THRESHOLD

    threshold: int | None = getattr(args, "shard_threshold", None)
    if threshold is None:
        return SHARD_THRESHOLD
    if threshold < 0:
        raise UsageError("--shard-threshold must be 0 or more (0: always shard)")
    return threshold


def _refuse_keys_the_root_does_not_list(args: argparse.Namespace) -> None:
    """With a root in the tree, refuse (before any passphrase) a ``--key`` its newest
    root does not list for the tree's name; ``sign_tree`` checks the loaded keys again."""
    from ..publish.keyargs import signer_key_id
    from ..publish.rootchain import check_release_signers, read_root_chain
    from ..publish.signing import tree_name

    if not args.directory.is_dir():
        return  # sign_tree says so
    chain = read_root_chain(args.directory)
    if chain is None:
        return
    keyids = [signer_key_id(spec, "--key") for spec in args.key]
    if all(keyid is not None for keyid in keyids):  # a token's id is known once it is open
        known = [keyid for keyid in keyids if keyid is not None]
        check_release_signers(chain, tree_name(args.directory, args.name), known)
    newest = chain.newest.root
    if datetime.now(UTC) >= newest.expires:
        print(
            f"{PROG} sign: warning: root version {newest.version} of {args.directory} expired "
            f"at {newest.expires:%Y-%m-%d %H:%M} UTC; consumers refuse every release until "
            f"the root key holders publish a new root ('{PROG} root update "
            f"{args.directory} --root-key R.key')",
            file=sys.stderr,
        )


def _sign_check(args: argparse.Namespace) -> int:
    """``sign --check``: what signing would change; reads key ids, never a private key."""
    from .._format.keys import load_public_keys
    from ..gate.output import text_lines
    from ..publish.keyfile import read_key_id
    from ..publish.pkcs11uri import is_pkcs11_uri
    from ..publish.progress import terminal_progress
    from ..publish.signcheck import check_tree

    if not (args.key or args.pubkey):
        raise UsageError(
            "sign --check needs the signers' --key KEY (only its key id is read) or --pubkey PUB"
        )
    for option, value in (
        ("--version", args.version),
        ("--expires", args.expires),
        ("--allow-version-jump", args.allow_version_jump or None),
        ("--shard-threshold", getattr(args, "shard_threshold", None)),
    ):
        if value is not None:
            raise UsageError(f"{option} has no effect with --check; leave it out")
    if not args.directory.is_dir():
        raise UsageError(f"{args.directory} is not a directory; give the tree you sign")
    if any(is_pkcs11_uri(spec) for spec in args.key or ()):
        raise UsageError(
            "sign --check reads key ids from key files; for a key in a token give its "
            "public key instead: --pubkey PREFIX.pub (written by keygen --pkcs11)"
        )
    try:
        keyids = [read_key_id(path) for path in args.key or ()]
        pubkeys = load_public_keys(list(args.pubkey)) if args.pubkey else []
    except SecureImportError as exc:
        raise UsageError(str(exc)) from None
    with terminal_progress(f"{PROG} sign --check") as progress:
        check = check_tree(
            args.directory,
            keyids,
            pubkeys,
            now=datetime.now(UTC),
            name=args.name,
            progress=progress,
        )
    print("\n".join(text_lines(check)))
    return EXIT_OK if check.up_to_date else EXIT_FAILED
