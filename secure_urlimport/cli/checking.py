"""``verify``: the CI gate on a directory or an https:// tree."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SecureImportError

if TYPE_CHECKING:
    from .._format.keys import TrustedKeys
    from ..gate.audit import Report
    from ..publish.progress import ProgressFn

from .common import EXIT_FAILED, EXIT_OK, PROG, UsageError, check_pins

__all__ = ["cmd_verify"]


def cmd_verify(args: argparse.Namespace) -> int:
    from .._format.keys import TrustedKeys
    from ..gate.audit import audit_directory
    from ..gate.output import github_lines, text_lines
    from ..publish.progress import terminal_progress

    check_pins(args)
    trusted = root_pin = None
    try:
        if args.root is not None:
            threshold = 1 if args.root_threshold is None else args.root_threshold
            root_pin = TrustedKeys.from_arg([Path(p) for p in args.root], threshold)
        else:
            threshold = 1 if args.threshold is None else args.threshold
            trusted = TrustedKeys.from_arg([Path(p) for p in args.pubkey], threshold)
    except SecureImportError as exc:
        raise UsageError(str(exc)) from None
    now = datetime.now(UTC)
    target: str = args.target
    root, file_url = None, None
    with terminal_progress(f"{PROG} verify") as progress:
        if "://" in target:
            report, file_url = _audit_remote(
                target,
                trusted,
                root_pin,
                cafile=args.cafile,
                now=now,
                name=args.name,
                progress=progress,
            )
        elif Path(target).is_dir():
            root = Path(target)
            report = audit_directory(
                root, trusted, now=now, name=args.name, progress=progress, root_pin=root_pin
            )
        else:
            raise UsageError(
                f"TARGET {target!r} is neither a directory nor an https:// URL; "
                "give the signed tree's directory or its https:// URL"
            )
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif args.format == "github":
        print("\n".join(github_lines(report, root=root, file_url=file_url)))
    else:
        print("\n".join(text_lines(report)))
    return EXIT_OK if report.ok else EXIT_FAILED


def _audit_remote(
    target: str,
    trusted: TrustedKeys | None,
    root_pin: TrustedKeys | None,
    *,
    cafile: str | None,
    now: datetime,
    name: str | None,
    progress: ProgressFn,
) -> tuple[Report, Callable[[str], str]]:
    """The report for an https tree, and how its files' URLs are spelled."""
    from .._client.remote import RemoteTree
    from ..config import Config
    from ..gate.audit import audit_url

    config = Config(cafile=cafile)
    try:
        tree = RemoteTree(target, trusted, config, root_pin=root_pin)
    except SecureImportError as exc:
        raise UsageError(str(exc)) from None
    try:
        report = audit_url(
            tree.url,
            trusted,
            tree.fetcher,
            now=now,
            name=name,
            max_manifest_bytes=config.max_manifest_bytes,
            file_url=tree.file_url,
            progress=progress,
            root_pin=root_pin,
        )
    finally:
        tree.close()
    return report, tree.file_url
