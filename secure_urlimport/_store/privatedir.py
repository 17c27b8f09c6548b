"""Client-state directories that no other local user can change.

The rollback records in ``<cache dir>/state/`` are what stops a restarted
client from accepting an older signed release: whoever can delete or replace
them can replay one.  So every directory this library creates for client
state is 0700, whatever the umask, and the directory it is about to use (and
its ``state/``) must belong to this user and be writable by nobody else --
the rule :func:`is_private`, which the bytecode cache applies to its key too.

A directory failing the rule is refused with a :class:`ConfigurationError`
that says how to fix it, rather than used without a cache: "no cache" would
also mean no rollback records, so every restart would accept any older
release that is still unexpired -- the very replay the rule is there to stop,
behind a warning that a daemon's log swallows.  A directory that merely
cannot be *created* (a read-only home) is still only a warning, as before:
nobody else controls it, and nothing is written there.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ..config import Config
from ..errors import ConfigurationError

__all__ = ["client_state_dir", "is_private", "make_private_dirs"]

log = logging.getLogger("secure_urlimport")

# Ownership needs POSIX user ids; elsewhere only creation applies.
_HAS_UIDS = hasattr(os, "getuid")


def is_private(info: os.stat_result) -> bool:
    """True if the file or directory *info* describes is this user's and no
    other user can write it."""
    return not _HAS_UIDS or (info.st_uid == os.getuid() and not info.st_mode & 0o022)


def make_private_dirs(path: Path) -> None:
    """Create *path* and each missing parent with mode 0700, whatever the umask.

    ``Path.mkdir(mode, parents=True)`` gives the parents the umask's mode
    (0775 under umask 002); an existing directory is left as it is.
    """
    missing: list[Path] = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask, chmod's is not


def client_state_dir(config: Config, url: str) -> Path:
    """Where the tree at *url* keeps rollback records and caches: created 0700
    if missing, refused (ConfigurationError) if it or its ``state/`` is not
    this user's alone."""
    root = config.state_dir()
    try:
        make_private_dirs(root)
    except OSError as exc:
        log.warning(
            "cannot create the client-state directory %s (%s): rollback records "
            "and downloads of %s are not kept across restarts",
            root,
            exc,
            url,
        )
        return root
    for directory in (root, root / "state"):
        _refuse_unsafe(directory, url)
    return root


def _refuse_unsafe(directory: Path, url: str) -> None:
    try:
        link = os.lstat(directory)
        info = os.stat(directory)  # followed: a ~/.cache symlinked elsewhere is normal
    except FileNotFoundError:
        return  # made 0700 when first written
    except OSError as exc:
        log.debug("cannot inspect %s: %s", directory, exc)
        return  # nothing can be read or written there either
    if stat.S_ISLNK(link.st_mode) and link.st_uid != os.getuid():
        # Another user's link (say /tmp/secure_urlimport under XDG_CACHE_HOME=/tmp)
        # could be pointed elsewhere after this check.
        info = link
    if is_private(info):
        if not stat.S_ISDIR(info.st_mode):  # our own file in the way: like a read-only disk
            log.warning(
                "%s is not a directory: rollback records and downloads of %s are "
                "not kept across restarts",
                directory,
                url,
            )
        return
    yours = info.st_uid == os.getuid()
    problem = (
        f"other users can write it (mode {stat.S_IMODE(info.st_mode):04o})"
        if yours
        else f"it belongs to user id {info.st_uid}, not to this user ({os.getuid()})"
    )
    state = directory if directory.name == "state" else directory / "state"
    fix = (
        f"run chmod 700 {directory} and delete {state} (others could have changed the "
        "records in it), or "
        if yours
        else ""
    )
    raise ConfigurationError(
        f"refusing to keep the client state of {url} in {directory}: {problem}; whoever "
        "can change it can delete its rollback records and replay an old release; "
        f"{fix}set SECURE_URLIMPORT_CACHE_DIR (or Config(cache_dir=...)) to a directory "
        "of your own",
        path=url,
    )
