"""Signing a source tree: walk it, refuse what cannot be published, write the manifest.

The walk (:func:`scan_tree`) is shared with the local ``verify`` gate so both
agree on which files make up a tree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from .._format.bundle import build_bundle, bundle_members
from .._format.keys import PublicKey, Signer
from .._format.manifest import (
    MAX_NAME_CHARS,
    SHARDED_FORMAT,
    FileEntry,
    Manifest,
    encode_body,
    encode_manifest,
    file_message,
    file_message_v2,
    manifest_message,
)
from .._format.paths import BUNDLE_NAME, MANIFEST_NAME, is_metadata_file, path_problem
from .._store.atomic import write_atomically
from ..errors import ConfigurationError, SigningError
from .keyfile import MAX_FILE_BYTES as MAX_KEY_FILE_BYTES
from .keyfile import is_private_key_file
from .localfile import read_tree_file
from .progress import ProgressFn
from .rootchain import check_release_signers, read_root_chain
from .sharding import SHARD_THRESHOLD, build_shards, previous_shards, prune_shards, write_shards
from .versions import choose_version, trusted_previous_version

__all__ = [
    "DEFAULT_EXPIRY",
    "PathProblem",
    "SignResult",
    "SigningError",
    "TreeScan",
    "holds_private_key",
    "parse_duration",
    "scan_tree",
    "sign_tree",
    "tree_name",
]

#: Manifests expire 90 days after signing unless ``--expires`` says otherwise.
DEFAULT_EXPIRY = timedelta(days=90)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Longer validity defeats the point of expiry (and overflows datetime).
MAX_EXPIRY = timedelta(days=3660)
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")  # ASCII digits only

_SYMLINK = "symlink (publish real files only)"

#: Directories never published: bytecode caches (the importer never reads them).
SKIPPED_DIRS = frozenset({"__pycache__"})


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` as a timedelta."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigurationError(
            f"duration {text!r} is not a positive number followed by s, m, h, d or w (e.g. 90d)"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_EXPIRY.total_seconds():
        raise ConfigurationError(f"duration {text!r} is longer than the maximum of 3660d")
    return timedelta(seconds=seconds)


class PathProblem(NamedTuple):
    """Why an entry of a tree cannot be published: its tree-relative *path* and *why*."""

    path: str
    why: str

    def line(self) -> str:
        """``path: why``, as :class:`SigningError` lists it."""
        return f"{self.path}: {self.why}"


@dataclass
class TreeScan:
    """The publishable files of a tree (relative paths) and what is wrong with it."""

    files: list[str] = field(default_factory=list)
    problems: list[PathProblem] = field(default_factory=list)


def scan_tree(root: Path) -> TreeScan:
    """Every regular file under *root* that belongs in the signed tree.

    Skipped silently: the metadata (manifest, bundle, every root version; see
    :func:`paths.is_metadata_file`), hidden (dot) entries and ``__pycache__``.
    Reported as problems: symlinks, special files, names that cannot be
    published (see :func:`paths.path_problem`) and case-fold collisions.
    """
    scan = TreeScan()
    folded: dict[str, str] = {}

    def unreadable(error: OSError) -> None:
        # Skipping it silently would publish (and audit) an incomplete tree.
        where = Path(error.filename or root).relative_to(root).as_posix()
        scan.problems.append(PathProblem(where, f"cannot be read ({error.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = _kept_dirs(scan, dirpath, prefix, dirnames)
        for name in sorted(filenames):
            rel = prefix + name
            if name.startswith(".") or is_metadata_file(rel):
                continue
            problem = _file_problem(os.path.join(dirpath, name), rel, folded)
            if problem is not None:
                scan.problems.append(PathProblem(rel, problem))
            else:
                scan.files.append(rel)
    scan.files.sort()
    return scan


def _kept_dirs(scan: TreeScan, dirpath: str, prefix: str, dirnames: list[str]) -> list[str]:
    """The subdirectories to walk into, sorted; symlinks are *scan* problems."""
    kept = []
    for name in sorted(dirnames):
        if name.startswith(".") or name in SKIPPED_DIRS:
            continue
        if os.path.islink(os.path.join(dirpath, name)):
            scan.problems.append(PathProblem(prefix + name, _SYMLINK))
            continue
        kept.append(name)
    return kept


def holds_private_key(path: Path | str) -> bool:
    """True if the file at *path* is a private key file (for ``sign --check``, ``verify``).

    Reads at most one byte more than a key file can have; unreadable is False
    (the caller reports those on its own).
    """
    try:
        return is_private_key_file(read_tree_file(path, MAX_KEY_FILE_BYTES))
    except OSError:
        return False


def _file_problem(path: str, rel: str, folded: dict[str, str]) -> str | None:
    """Why the file at *path* (*rel* in the tree) cannot be published, or None.

    *folded* maps the case-folded names seen so far to their spelling.
    """
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return _SYMLINK
    if not stat.S_ISREG(mode):
        return "not a regular file"
    problem = path_problem(rel)
    if problem is None:
        other = folded.setdefault(rel.casefold(), rel)
        if other != rel:
            return f"differs from {other!r} only in case"
    return problem


@dataclass(frozen=True)
class SignResult:
    manifest_path: Path
    version: int
    files: int
    expires: datetime


def sign_tree(
    root: Path,
    keys: Sequence[Signer],
    *,
    version: int | None = None,
    expires_in: timedelta = DEFAULT_EXPIRY,
    now: datetime | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
    allow_version_jump: bool = False,
    shard_threshold: int = SHARD_THRESHOLD,
) -> SignResult:
    """Sign every file under *root* with every key and write the manifest atomically.

    *name* labels the tree (default: the directory's name); clients that pin it
    refuse manifests of other trees signed by the same key.  *progress(done,
    total)* is called after each file is signed.  The default *version* is one
    above the tree's manifest, which must then verify against *keys*; a
    *version* more than :data:`versions.MAX_VERSION_JUMP` above it needs
    *allow_version_jump*.  A tree holding a private key file is refused, and
    so is one whose root chain (``secure-urlimport.root.*``) does not verify or
    whose newest root does not list *keys* as signers of the tree's name.
    A tree of more than *shard_threshold* files is written sharded (manifest
    format 2, see ``sharding.py``); a smaller one as format 1.
    """
    root = Path(root)
    if not keys:
        raise ConfigurationError("sign needs at least one private key")
    files = _publishable_files(root)
    chain = read_root_chain(root)  # a broken chain is refused: nothing is signed on it
    listed: list[PublicKey] = []
    if chain is not None:
        listed = check_release_signers(chain, tree_name(root, name), [k.keyid for k in keys])
    version = _choose_version(root, keys, version, allow_version_jump, listed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    if expires_in > MAX_EXPIRY or expires_in <= timedelta(0):
        raise ConfigurationError("the validity must be positive and at most 3660 days")
    label = tree_name(root, name)
    if len(label) > MAX_NAME_CHARS or not label.isprintable():
        raise ConfigurationError("--name must be printable and at most 200 characters")
    sharded = len(files) > shard_threshold
    entries, modules = _sign_files(root, files, keys, version if not sharded else label, progress)
    manifest = Manifest(
        version=version,
        created=now,
        expires=now + expires_in,
        keyids=tuple(k.keyid for k in keys),
        files=entries,
        name=label,
    )
    if sharded:
        path = _write_sharded_release(root, manifest, keys)
    else:
        keep = previous_shards(root)
        path = _write_release(root, manifest, keys, modules)
        prune_shards(root, keep, sharded=False)
    return SignResult(path, version, len(entries), manifest.expires)


def _publishable_files(root: Path) -> list[str]:
    """The files :func:`sign_tree` signs; raise listing every entry it cannot publish."""
    if not root.is_dir():
        raise SigningError(f"{root} is not a directory; give the tree to sign")
    scan = scan_tree(root)
    if scan.problems:
        raise SigningError(
            f"cannot sign {root}: {len(scan.problems)} problem(s); fix or remove these entries "
            "and sign again (only regular files with publishable names are signed)",
            [problem.line() for problem in scan.problems],
        )
    return scan.files


def _sign_files(
    root: Path,
    files: Sequence[str],
    keys: Sequence[Signer],
    version: int | str,
    progress: ProgressFn | None,
) -> tuple[dict[str, FileEntry], dict[str, bytes]]:
    """Every file's signed entry, and the modules' bytes (the bundle's members, read once).

    *version*: the tree version the v1 messages name, or (a str) the tree
    name the v2 messages of a format-2 release name instead.

    Raises listing every private key file among them, checked on the bytes signed.
    """
    entries = {}
    modules: dict[str, bytes] = {}
    secrets = []
    for done, rel in enumerate(files, 1):
        entries[rel], data = _sign_file(root, rel, keys, version)
        if is_private_key_file(data):
            secrets.append(PathProblem(rel, "a private key file; move it out of the tree"))
        if rel.endswith(".py"):
            modules[rel] = data
        if progress is not None:
            progress(done, len(files))
    if secrets:
        raise SigningError(
            f"refusing to sign {root}: it holds {len(secrets)} private key file(s), which "
            "publishing would hand to everyone; move them out of the tree and sign again",
            [secret.line() for secret in secrets],
        )
    return entries, modules


def _write_release(
    root: Path, manifest: Manifest, keys: Sequence[Signer], modules: dict[str, bytes]
) -> Path:
    """Sign *manifest*, write the bundle and then the manifest; the manifest's path."""
    body = encode_body(manifest)
    sigs = [(k.keyid, k.sign(manifest_message(k.keyid, body))) for k in keys]
    # The bundle first: a client that sees the new manifest with the old
    # bundle only falls back to downloading files one by one.
    write_atomically(root / BUNDLE_NAME, build_bundle(bundle_members(manifest.files), modules))
    path = root / MANIFEST_NAME
    write_atomically(path, encode_manifest(body, sigs))
    return path


def _write_sharded_release(root: Path, manifest: Manifest, keys: Sequence[Signer]) -> Path:
    """Write the shards, then the index that pins them, then prune (sharding.py)."""
    keep = previous_shards(root)
    shards = build_shards(manifest.files)
    write_shards(root, shards)
    index = dataclasses.replace(
        manifest, files={}, format=SHARDED_FORMAT, shards=tuple(ref for ref, _ in shards)
    )
    body = encode_body(index)
    sigs = [(k.keyid, k.sign(manifest_message(k.keyid, body))) for k in keys]
    path = root / MANIFEST_NAME
    write_atomically(path, encode_manifest(body, sigs))
    prune_shards(root, keep | {ref.sha256 for ref, _ in shards}, sharded=True)
    return path


def tree_name(root: Path, name: str | None) -> str:
    """The name ``sign`` gives the tree: *name*, or the directory's own name."""
    return Path(root).resolve().name if name is None else name


def _choose_version(
    root: Path,
    keys: Sequence[Signer],
    requested: int | None,
    allow_jump: bool,
    listed: Sequence[PublicKey],
) -> int:
    try:
        previous = trusted_previous_version(root, keys, listed)
    except SigningError:
        if requested is None:
            raise
        previous = None  # the untrusted manifest is replaced; the caller chose the version
    return choose_version(previous, requested, allow_jump=allow_jump)


def _sign_file(
    root: Path, rel: str, keys: Sequence[Signer], version: int | str
) -> tuple[FileEntry, bytes]:
    try:
        # Never through a symlink, never a FIFO: the name may have been swapped since the scan.
        data = read_tree_file(os.path.join(root, rel))  # not pathlib: thousands of files
    except OSError as exc:
        raise SigningError(
            f"cannot sign {root}: {rel} cannot be read ({exc.strerror or exc})"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if isinstance(version, str):  # format 2: the tree name instead of the version
        messages = {
            k.keyid: file_message_v2(k.keyid, version, rel, digest, len(data)) for k in keys
        }
    else:
        messages = {k.keyid: file_message(k.keyid, version, rel, digest, len(data)) for k in keys}
    sigs = {k.keyid: k.sign(messages[k.keyid]) for k in keys}
    return FileEntry(rel, len(data), digest, sigs), data
