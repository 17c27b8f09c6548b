"""The CI gate: check a published tree (a directory or an https URL) and list every problem.

Unlike the importer, which stops at the first refusal, an audit goes on and
collects all problems so one CI run shows everything to fix.  With pinned
root keys (``--root``) the root chain is checked first (roots.py) and the
manifest is verified against the signers the newest root names; every file is
checked against the keys its manifest was verified against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from .._format.bundle import Bundle, bundle_members
from .._format.keys import TrustedKeys
from .._format.manifest import FileEntry, Manifest
from .._format.paths import BUNDLE_NAME, MANIFEST_NAME, is_metadata_file
from .._format.root import Root
from .._net.fetcher import Fetcher
from .._trust.trusted_set import verify_under_root
from .._trust.verify import (
    check_expiry,
    check_name,
    release_keys,
    verify_file,
    verify_manifest_signatures,
)
from ..errors import (
    BadSignatureError,
    ExpiredManifestError,
    HTTPStatusError,
    ResponseTooLargeError,
    SecureImportError,
    TamperedFileError,
    UntrustedKeyError,
)
from ..publish.findings import Finding, Findings, plural
from ..publish.keyfile import MAX_FILE_BYTES as MAX_KEY_FILE_BYTES
from ..publish.keyfile import is_private_key_file
from ..publish.localfile import read_tree_file
from ..publish.progress import ProgressFn
from ..publish.signing import holds_private_key, scan_tree
from ..publish.versions import MAX_MANIFEST_BYTES
from .roots import ROOT_PROBLEM_KINDS, anchor_for, directory_roots, remote_roots
from .shards import SHARD_PROBLEM, local_shard_reader, remote_shard_reader, with_shard_entries

__all__ = ["PROBLEM_KINDS", "Problem", "Report", "audit_directory", "audit_url"]

log = logging.getLogger("secure_urlimport")

#: Every kind of problem, as it appears in text and JSON output.
PROBLEM_KINDS = {
    "invalid-manifest": "the manifest is missing, malformed, not signed by the pinned keys, "
    "or names another tree than --name",
    "stale": "the manifest has expired; re-sign the tree",
    "unsigned": "a file in the tree is not in the signed manifest",
    "missing": "a file in the manifest is not in the tree",
    "tampered": "a file's size or SHA-256 differs from the manifest",
    "bad-signature": "a file's signature does not verify with the pinned keys "
    "(or, with --root, the keys the newest root lists)",
    "unpublishable": "an entry that cannot be signed: symlink, special file or bad name",
    "download": "a file could not be downloaded",
    "stale-bundle": "secure-urlimport.bundle does not hold the signed modules",
    "private-key": "a private key file is in the published tree",
    "shard": SHARD_PROBLEM,
    **ROOT_PROBLEM_KINDS,
}

_PRIVATE_KEY = (
    "a private key file is in the tree, published to everyone: move it out, "
    "replace the key (it is no longer secret) and re-sign"
)


#: A problem the gate found (the findings model shared with ``sign --check``).
Problem = Finding


@dataclass
class Report:
    """Everything ``verify`` found in one tree; ``ok`` when nothing."""

    target: str
    version: int | None = None
    files_checked: int = 0
    findings: Findings = field(default_factory=lambda: Findings(PROBLEM_KINDS))

    #: The command whose summary line this is (``secure-urlimport verify: …``).
    command: ClassVar[str] = "verify"

    @property
    def problems(self) -> list[Finding]:
        return self.findings.items

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, kind: str, path: str, message: str) -> None:
        log.debug("%s: %s: %s", kind, path, message)
        self.findings.add(kind, path, message)

    def summary(self) -> str:
        """One line: ``OK|FAILED: N files checked, M problems (…); tree T, version V``.

        The CLI prefixes it with ``secure-urlimport verify: ``; docs/ci.md
        documents the format, so keep the two in step.
        """
        verdict = "OK" if self.ok else "FAILED"
        checked = plural(self.files_checked, "file")
        version = f", version {self.version}" if self.version is not None else ""
        return (
            f"{verdict}: {checked} checked, {self.findings.summary('problem')}; "
            f"tree {self.target}{version}"
        )

    def to_json(self) -> dict[str, Any]:
        """The stable ``verify --format json`` document (schema version 1)."""
        return {
            "schema": 1,
            "target": self.target,
            "ok": self.ok,
            "version": self.version,
            "files_checked": self.files_checked,
            "problems": [finding.to_json() for finding in self.findings],
        }


def _check_manifest(
    report: Report,
    data: bytes,
    trusted: TrustedKeys | Root,
    *,
    now: datetime,
    where: str,
    name: str | None,
) -> Manifest | None:
    """The manifest, verified against pinned keys or the signers a root names."""
    try:
        if isinstance(trusted, Root):
            manifest = verify_under_root(data, trusted, url=where)
            # As the client: without --name, the root's own tree.
            check_name(manifest, name if name is not None else trusted.name, url=where)
        else:
            manifest = verify_manifest_signatures(data, trusted, url=where)
            check_name(manifest, name, url=where)
    except SecureImportError as exc:
        report.add("invalid-manifest", MANIFEST_NAME, str(exc))
        return None
    report.version = manifest.version
    log.debug("verified manifest %s: version %d", where, manifest.version)
    try:
        check_expiry(manifest, now=now, url=where)
    except ExpiredManifestError as exc:
        report.add("stale", MANIFEST_NAME, str(exc))
    return manifest


def _check_file(
    report: Report,
    entry: FileEntry,
    data: bytes,
    *,
    manifest: Manifest,
    where: str,
) -> None:
    report.files_checked += 1
    try:
        verify_file(entry, data, manifest, release_keys(manifest, url=where), url=where)
        log.debug("verified %s", where)
    except TamperedFileError as exc:
        report.add("tampered", entry.path, str(exc))
    except (BadSignatureError, UntrustedKeyError) as exc:
        report.add("bad-signature", entry.path, str(exc))


def audit_directory(
    root: Path,
    trusted: TrustedKeys | None,
    *,
    now: datetime,
    name: str | None = None,
    progress: ProgressFn | None = None,
    root_pin: TrustedKeys | None = None,
) -> Report:
    """Check a signed tree on disk: manifest, every listed file, and no unsigned extras.

    *trusted*: the pinned signing keys; or None and *root_pin*, the pinned
    root keys, whose chain (the tree's root files) names the signing keys.
    *progress(done, total)* is called after each listed file is checked.
    """
    root = Path(root)
    report = Report(str(root))
    anchor = anchor_for(
        report.findings, trusted, root_pin, directory_roots(root), target=str(root), now=now
    )
    scan = scan_tree(root)
    for problem in scan.problems:
        why = f"{problem.why}; fix or remove it, then re-sign the tree"
        report.add("unpublishable", problem.path, why)
    data = _read_local_manifest(report, root)
    manifest = None
    if data is not None and anchor is not None:
        manifest = _check_manifest(report, data, anchor, now=now, where=str(root), name=name)
        manifest = with_shard_entries(report.findings, manifest, local_shard_reader(root))
    _check_unlisted(report, root, scan.files, manifest.files if manifest is not None else {})
    if manifest is not None:
        _check_listed_files(report, root, manifest, progress)
        _check_bundle(report, _read_local_bundle(report, root, manifest), manifest)
    return report


def _check_unlisted(
    report: Report, root: Path, files: Sequence[str], listed: Mapping[str, FileEntry]
) -> None:
    """Report the tree's files the manifest does not list (and the key files among them)."""
    for rel in files:
        if rel not in listed and not is_metadata_file(rel):
            report.add("unsigned", rel, f"{rel} is not in the signed manifest; re-sign the tree")
            if holds_private_key(root / rel):
                report.add("private-key", rel, _PRIVATE_KEY)


def _read_local_manifest(report: Report, root: Path) -> bytes | None:
    """The manifest's bytes (never through a symlink, at most the client's cap), or None."""
    try:
        data = read_tree_file(root / MANIFEST_NAME, MAX_MANIFEST_BYTES)
    except OSError as exc:
        report.add(
            "invalid-manifest",
            MANIFEST_NAME,
            f"cannot read the manifest ({exc.strerror or exc}); sign the tree first: "
            f"secure-urlimport sign {root} --key KEY",
        )
        return None
    if len(data) > MAX_MANIFEST_BYTES:
        report.add(
            "invalid-manifest",
            MANIFEST_NAME,
            f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes, which clients "
            "refuse; re-sign the tree",
        )
        return None
    return data


def _read_local_bundle(report: Report, root: Path, manifest: Manifest) -> bytes | None:
    """The bundle, read at most one byte past the signed modules' size (longer is stale)."""
    size = sum(entry.size for entry in bundle_members(manifest.files))
    try:
        return read_tree_file(root / BUNDLE_NAME, size)
    except FileNotFoundError:
        return None  # publishing without a bundle is allowed, only slower
    except OSError as exc:
        report.add(
            "stale-bundle",
            BUNDLE_NAME,
            f"{BUNDLE_NAME} cannot be read "
            f"({exc.strerror or exc}); sign the tree again (it rewrites the bundle)",
        )
        return None


def _check_bundle(report: Report, data: bytes | None, manifest: Manifest) -> None:
    """Report a bundle that does not hold exactly the signed modules.

    Clients never trust it (each member is verified), so this costs them only
    speed and a warning -- but it means the tree was published half-way.
    """
    if data is None:
        return
    problem = Bundle(data, bundle_members(manifest.files)).first_difference()
    if problem is not None:
        report.add(
            "stale-bundle",
            BUNDLE_NAME,
            f"{BUNDLE_NAME} does not hold the signed modules ({problem}); clients fall "
            "back to one download per file and warn. Sign the tree again (it rewrites "
            "the bundle) and publish the bundle together with the manifest",
        )


def _check_listed_files(
    report: Report,
    root: Path,
    manifest: Manifest,
    progress: ProgressFn | None,
) -> None:
    total = len(manifest.files)
    for done, (rel, entry) in enumerate(manifest.files.items(), 1):
        path = root / rel
        try:
            # Past the signed size only as far as a key file can reach: longer is tampered.
            data = read_tree_file(path, max(entry.size, MAX_KEY_FILE_BYTES))
        except OSError as exc:  # absent, a symlink or special file, or unreadable
            report.add(
                "missing",
                rel,
                f"{rel} is in the manifest but not in {root} as a "
                f"readable regular file ({exc.strerror or exc}); restore it, or "
                "re-sign the tree without it",
            )
        else:
            if is_private_key_file(data):
                report.add("private-key", rel, _PRIVATE_KEY)
            _check_file(report, entry, data, manifest=manifest, where=str(path))
        if progress is not None:
            progress(done, total)


def audit_url(
    url: str,
    trusted: TrustedKeys | None,
    fetcher: Fetcher,
    *,
    now: datetime,
    max_manifest_bytes: int,
    file_url: Callable[[str], str],
    name: str | None = None,
    progress: ProgressFn | None = None,
    root_pin: TrustedKeys | None = None,
) -> Report:
    """Check a published tree over https: manifest and every listed file
    (*trusted* and *root_pin*: see :func:`audit_directory`).

    Files the server has but the manifest does not list cannot be seen (there
    is no listing); they are never imported either.  *progress(done, total)* is
    called after each listed file.
    """
    report = Report(url)
    anchor = anchor_for(
        report.findings, trusted, root_pin, remote_roots(fetcher, file_url), target=url, now=now
    )
    if anchor is None:
        return report
    manifest_url = file_url(MANIFEST_NAME)
    try:
        data = fetcher.fetch(manifest_url, max_bytes=max_manifest_bytes)
    except SecureImportError as exc:
        report.add("invalid-manifest", MANIFEST_NAME, str(exc))
        return report
    manifest = _check_manifest(report, data, anchor, now=now, where=manifest_url, name=name)
    manifest = with_shard_entries(report.findings, manifest, remote_shard_reader(fetcher, file_url))
    if manifest is None:
        return report
    total = len(manifest.files)
    for done, (rel, entry) in enumerate(manifest.files.items(), 1):
        _check_remote_file(report, entry, fetcher, where=file_url(rel), manifest=manifest)
        if progress is not None:
            progress(done, total)
    _check_bundle(
        report, _remote_bundle(report, fetcher, file_url(BUNDLE_NAME), manifest), manifest
    )
    return report


def _remote_bundle(
    report: Report, fetcher: Fetcher, where: str, manifest: Manifest
) -> bytes | None:
    """The served bundle (a few bytes over its size at most), or None if there is none."""
    size = sum(entry.size for entry in bundle_members(manifest.files))
    try:
        return fetcher.fetch(where, max_bytes=size)
    except HTTPStatusError as exc:
        if exc.status != 404:
            report.add("download", BUNDLE_NAME, str(exc))
    except ResponseTooLargeError:
        return b"\0" * (size + 1)  # too long: reported as stale
    except SecureImportError as exc:
        report.add("download", BUNDLE_NAME, str(exc))
    return None


def _check_remote_file(
    report: Report,
    entry: FileEntry,
    fetcher: Fetcher,
    *,
    where: str,
    manifest: Manifest,
) -> None:
    rel = entry.path
    try:
        body = fetcher.fetch(where, max_bytes=entry.size)
    except HTTPStatusError as exc:
        kind = "missing" if exc.status == 404 else "download"
        report.add(kind, rel, str(exc))
        return
    except ResponseTooLargeError as exc:
        report.add("tampered", rel, str(exc))  # longer than the signed size
        return
    except SecureImportError as exc:
        report.add("download", rel, str(exc))
        return
    _check_file(report, entry, body, manifest=manifest, where=where)
