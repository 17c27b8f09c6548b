"""``sign --check``: what signing a tree would change, from public information only.

Compares the tree on disk with the manifest already in it: files added,
removed or changed, an expired manifest, other signers, another tree name.
Key ids come from private key files' clear-text headers (nothing is decrypted)
or from ``.pub`` files; with public keys the existing signatures are checked
too.  Nothing is written.  This is the publisher's diff, not the gate:
``verify`` is the gate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from .._format.keys import PublicKey, TrustedKeys
from .._format.manifest import (
    FileEntry,
    Manifest,
    SignedManifestFile,
    format_time,
    manifest_message,
    parse_manifest_body,
    split_manifest_file,
)
from .._format.paths import MANIFEST_NAME
from .._format.shard import ShardRef
from .._trust.shards import flatten
from .._trust.verify import check_threshold, verify_file_signatures
from ..errors import BadSignatureError, ManifestFormatError, TamperedFileError, UntrustedKeyError
from .findings import Finding, Findings, plural
from .keyfile import MAX_FILE_BYTES as MAX_KEY_FILE_BYTES
from .keyfile import is_private_key_file
from .localfile import read_tree_file
from .progress import ProgressFn
from .signing import holds_private_key, scan_tree, tree_name
from .versions import MAX_MANIFEST_BYTES

__all__ = ["CHANGE_KINDS", "Change", "SignCheck", "check_tree"]

#: Every kind of change ``sign --check`` reports (docs/ci.md lists them too).
CHANGE_KINDS = {
    "added": "a file in the tree is not in the manifest",
    "removed": "a file in the manifest is no longer in the tree",
    "changed": "a file's size or SHA-256 differs from the manifest",
    "expired": "the manifest has expired",
    "signers": "the manifest is signed by other keys than the ones given",
    "name": "the manifest names another tree than --name (default: the directory's name)",
    "bad-signature": "a signature by a key given with --pubkey does not verify",
    "manifest": "there is no manifest, or it cannot be read",
    "unpublishable": "an entry signing would refuse: symlink, special file, bad name",
    "private-key": "a private key file is in the tree; signing refuses to publish it",
}


#: A change ``sign`` would make (the findings model shared with the gate).
Change = Finding


@dataclass
class SignCheck:
    """What ``sign`` would change in *root*; no findings means up to date."""

    root: Path
    files: int = 0
    version: int | None = None
    expires: datetime | None = None
    signatures_checked: bool = False
    findings: Findings = field(default_factory=lambda: Findings(CHANGE_KINDS))

    #: The command whose summary line this is (``secure-urlimport sign --check: …``).
    command: ClassVar[str] = "sign --check"

    @property
    def changes(self) -> list[Finding]:
        return self.findings.items

    @property
    def up_to_date(self) -> bool:
        return not self.findings

    def add(self, kind: str, path: str, message: str) -> None:
        self.findings.add(kind, path, message)

    def summary(self) -> str:
        """One line: ``UP TO DATE: …`` or ``WOULD CHANGE: N changes (…); …``."""
        version = f", version {self.version}" if self.version is not None else ""
        tree = f"tree {self.root}{version}"
        if self.up_to_date:
            expires = format_time(self.expires) if self.expires else "?"
            checked = (
                "signatures checked"
                if self.signatures_checked
                else "signatures not checked (give --pubkey to check them)"
            )
            return f"UP TO DATE: {tree}, {plural(self.files, 'file')}, expires {expires}; {checked}"
        return (
            f"WOULD CHANGE: {self.findings.summary('change')}; {tree}; "
            f"to update it: secure-urlimport sign {self.root} --key KEY"
        )


def check_tree(
    root: Path,
    keyids: Sequence[str],
    pubkeys: Sequence[PublicKey],
    *,
    now: datetime,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> SignCheck:
    """Compare *root* with its manifest as ``sign --key`` (*keyids*, *pubkeys*) would.

    Reads only; *progress(done, total)* is called after each file compared.
    """
    root = Path(root)
    check = SignCheck(root, signatures_checked=bool(pubkeys))
    scan = scan_tree(root)
    check.files = len(scan.files)
    for problem in scan.problems:
        why = f"{problem.why}; signing would refuse the tree: fix or remove it"
        check.add("unpublishable", problem.path, why)
    signed, manifest = _read_manifest(check)
    if signed is None or manifest is None:
        for rel in scan.files:
            check.add("added", rel, "signing would add it")
        _report_private_keys(check, scan.files)
        return check
    check.version, check.expires = manifest.version, manifest.expires
    signing = _compare_signers(check, signed, keyids, pubkeys)
    _compare_header(check, manifest, now=now, name=tree_name(root, name))
    _compare_files(check, scan.files, manifest, signing, progress)
    return check


def _compare_header(check: SignCheck, manifest: Manifest, *, now: datetime, name: str) -> None:
    """Report an expired manifest, or one naming another tree than signing would."""
    if now >= manifest.expires:
        check.add(
            "expired",
            MANIFEST_NAME,
            f"expired at {format_time(manifest.expires)}; signing renews it",
        )
    if manifest.name != name:
        check.add(
            "name",
            MANIFEST_NAME,
            f"the manifest names the tree {manifest.name!r}; signing would name it {name!r}",
        )


def _report_private_keys(check: SignCheck, files: Sequence[str]) -> None:
    for rel in files:
        if holds_private_key(check.root / rel):
            check.add("private-key", rel, _PRIVATE_KEY)


_PRIVATE_KEY = "a private key file; signing would refuse the tree: move it out of the tree"


def _read_manifest(check: SignCheck) -> tuple[SignedManifestFile | None, Manifest | None]:
    path = check.root / MANIFEST_NAME
    try:
        data = read_tree_file(path, MAX_MANIFEST_BYTES)  # never through a symlink
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestFormatError(f"larger than {MAX_MANIFEST_BYTES} bytes")
        signed = split_manifest_file(data)
        return signed, _with_shards(check.root, parse_manifest_body(signed.body))
    except FileNotFoundError:
        check.add("manifest", MANIFEST_NAME, "no manifest yet; signing would create one")
    except OSError as exc:
        check.add("manifest", MANIFEST_NAME, f"cannot read the manifest ({exc.strerror or exc})")
    except ManifestFormatError as exc:
        check.add(
            "manifest",
            MANIFEST_NAME,
            f"the manifest cannot be read ({exc}); signing needs --version N to replace it",
        )
    return None, None


def _with_shards(root: Path, manifest: Manifest) -> Manifest:
    """A sharded manifest with every entry of its shards (each checked against its pin)."""

    def read(ref: ShardRef) -> bytes:
        try:
            return read_tree_file(root / ref.path, ref.size)
        except OSError as exc:
            raise ManifestFormatError(
                f"its shard {ref.path} cannot be read ({exc.strerror or exc})"
            ) from None

    try:
        return flatten(manifest, read, url=lambda ref: ref.path)
    except TamperedFileError as exc:
        raise ManifestFormatError(str(exc)) from None


def _compare_signers(
    check: SignCheck,
    signed: SignedManifestFile,
    keyids: Sequence[str],
    pubkeys: Sequence[PublicKey],
) -> list[TrustedKeys]:
    """Report other signers and bad manifest signatures.

    Returns the *pubkeys* that did sign, each alone as the pinned keys (threshold
    1): the verification core then checks its signatures, and a finding names it.
    """
    present = {keyid for keyid, _ in signed.signatures}
    wanted = set(keyids) | {key.keyid for key in pubkeys}
    if present != wanted:
        check.add(
            "signers",
            MANIFEST_NAME,
            f"signed by {', '.join(sorted(present))}; "
            f"signing would sign with {', '.join(sorted(wanted))}",
        )
    signing = [TrustedKeys({key.keyid: key}, 1) for key in pubkeys if key.keyid in present]
    for alone in signing:
        _check_manifest_signature(check, signed, alone)
    return signing


def _check_manifest_signature(
    check: SignCheck, signed: SignedManifestFile, alone: TrustedKeys
) -> None:
    """Report the manifest unless the one key of *alone* signed exactly its body."""
    try:
        check_threshold(
            signed.signatures,
            lambda keyid: manifest_message(keyid, signed.body),
            alone,
            what=MANIFEST_NAME,
        )
    except (BadSignatureError, UntrustedKeyError):
        check.add(
            "bad-signature",
            MANIFEST_NAME,
            f"the signature by key {alone.keyids[0]} "
            "does not verify: the manifest was edited after signing; signing replaces it",
        )


def _compare_files(
    check: SignCheck,
    files: Sequence[str],
    manifest: Manifest,
    signing: Sequence[TrustedKeys],
    progress: ProgressFn | None,
) -> None:
    on_disk = set(files)
    added = [rel for rel in files if rel not in manifest.files]
    for rel in added:
        check.add("added", rel, "not in the manifest; signing would add it")
    _report_private_keys(check, added)  # the files compared below are checked as read
    for rel in sorted(manifest.files.keys() - on_disk):
        check.add("removed", rel, "in the manifest but not in the tree; signing would drop it")
    common = [rel for rel in files if rel in manifest.files]
    for done, rel in enumerate(common, 1):
        _compare_file(check, manifest.files[rel], manifest, signing)
        if progress is not None:
            progress(done, len(common))


def _compare_file(
    check: SignCheck, entry: FileEntry, manifest: Manifest, signing: Sequence[TrustedKeys]
) -> None:
    try:
        # Past the signed size only as far as a key file can reach: longer is "changed".
        data = read_tree_file(check.root / entry.path, max(entry.size, MAX_KEY_FILE_BYTES))
    except OSError as exc:
        check.add(
            "unpublishable",
            entry.path,
            f"cannot be read ({exc.strerror or exc}); signing would fail: fix its permissions",
        )
        return
    if is_private_key_file(data):
        check.add("private-key", entry.path, _PRIVATE_KEY)
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        check.add(
            "changed",
            entry.path,
            "differs from the manifest (size or SHA-256); signing would sign the new content",
        )
        return
    for alone in signing:
        _check_file_signature(check, entry, manifest, alone)


def _check_file_signature(
    check: SignCheck, entry: FileEntry, manifest: Manifest, alone: TrustedKeys
) -> None:
    """Report *entry* unless the one key of *alone* signed it for this release."""
    try:
        verify_file_signatures(entry, manifest, alone, url=entry.path)
    except (BadSignatureError, UntrustedKeyError):
        check.add(
            "bad-signature",
            entry.path,
            f"no valid signature by key {alone.keyids[0]} "
            f"for version {manifest.version}; signing would sign it again",
        )
