"""The CI gate's root check: walk a tree's root chain from pinned root keys.

``verify TARGET --root R.pub`` walks ``secure-urlimport.root.1``, ``.2``, …
of a directory or an https tree with the client's own walk
(``_client/root_walk.py``: the same rules, the same bound), reports
``untrusted-root`` or ``expired-root``, and hands the newest root it trusted
to the manifest check, which then verifies the manifest against the signers
that root names.  An expired root is reported and still used for the rest of
the check, so one run lists every problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .._client.root_walk import fetch_root, walk_chain
from .._format.keys import TrustedKeys
from .._format.root import MAX_ROOT_BYTES, Root, root_file_name
from .._net.fetcher import Fetcher
from .._trust.root_chain import TrustedRoot
from ..errors import DownloadError, ExpiredRootError, SecureImportError
from ..publish.findings import Findings
from ..publish.localfile import read_tree_file

__all__ = [
    "ROOT_PROBLEM_KINDS",
    "anchor_for",
    "check_root_chain",
    "directory_roots",
    "remote_roots",
]

log = logging.getLogger("secure_urlimport")

ROOT_PROBLEM_KINDS = {
    "untrusted-root": "the root chain does not verify from the pinned --root keys "
    "(missing, signed by too few root keys, replayed, skipped or another tree's)",
    "expired-root": "the newest root has expired; the root key holders publish a new one",
}

RootReader = Callable[[int], "bytes | None"]


def directory_roots(root: Path) -> RootReader:
    """Read root versions from a tree on disk (never through a symlink, capped)."""

    def read(version: int) -> bytes | None:
        try:
            data = read_tree_file(root / root_file_name(version), MAX_ROOT_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DownloadError(
                f"cannot read {root / root_file_name(version)} ({exc.strerror or exc}): "
                "make it a readable regular file"
            ) from None
        if len(data) > MAX_ROOT_BYTES:
            raise DownloadError(
                f"{root / root_file_name(version)} is larger than {MAX_ROOT_BYTES} bytes, "
                "which clients refuse: it is not a root"
            )
        return data

    return read


def remote_roots(fetcher: Fetcher, file_url: Callable[[str], str]) -> RootReader:
    """Read root versions over https, as the client does (404 and 403: none)."""
    return lambda version: fetch_root(fetcher, file_url(root_file_name(version)))


def check_root_chain(
    findings: Findings,
    pin: TrustedKeys,
    read: RootReader,
    *,
    where: Callable[[int], str],
    now: datetime,
) -> Root | None:
    """The newest root the chain reaches from *pin* (None: none); problems go to *findings*."""
    newest: list[TrustedRoot] = []
    asked: list[int] = []

    def reading(version: int) -> bytes | None:
        asked.append(version)
        return read(version)

    try:
        trusted = walk_chain(None, pin, reading, where=where, now=now, keep=newest.append)
    except ExpiredRootError as exc:
        findings.add("expired-root", root_file_name(newest[-1].root.version), str(exc))
    except DownloadError as exc:
        findings.add("download", root_file_name(asked[-1] if asked else 1), str(exc))
    except SecureImportError as exc:
        findings.add("untrusted-root", root_file_name(asked[-1] if asked else 1), str(exc))
    else:
        log.debug("root chain: version %d trusted", trusted.root.version)
        return trusted.root
    return newest[-1].root if newest else None


def anchor_for(
    findings: Findings,
    trusted: TrustedKeys | None,
    root_pin: TrustedKeys | None,
    read: RootReader,
    *,
    target: str,
    now: datetime,
) -> TrustedKeys | Root | None:
    """What the manifest is checked against: the pinned keys (*trusted*), or the
    newest root the chain reaches from *root_pin* (None: nothing to check with)."""
    if root_pin is None:
        if trusted is None:
            raise ValueError("pin the signing keys or the root keys")
        return trusted
    return check_root_chain(
        findings, root_pin, read, where=lambda v: f"{target}/{root_file_name(v)}", now=now
    )
