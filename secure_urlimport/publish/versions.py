"""Which version a new release gets, and why the manifest in the tree is not trusted for it.

Clients refuse any version below one they have seen, so the version the
signer publishes is irreversible: publish 2**63 - 1 once and no later release
is ever accepted.  The manifest already in the tree is only a file in a
checkout -- a contributor may have edited its ``"version"`` -- so its version
counts only if its signature verifies against the keys signing now.  Large
jumps need the caller to say so (:data:`MAX_VERSION_JUMP`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._format.keys import PublicKey, Signer, TrustedKeys
from .._format.paths import MANIFEST_NAME
from .._format.signedfile import MAX_VERSION
from .._trust.verify import verify_manifest_signatures
from ..config import Config
from ..errors import ConfigurationError, SecureImportError, SigningError, shown
from .localfile import read_tree_file

__all__ = ["MAX_VERSION_JUMP", "choose_version", "trusted_previous_version"]

#: The largest step above the previous version (0 for a new tree) that needs no
#: ``allow_jump``.  2**32 leaves room for more than 2**30 releases at maximal
#: steps, so counting up can never exhaust the space by accident, and still
#: lets a first release use a Unix time in seconds (about 1.8e9) as its version.
MAX_VERSION_JUMP = 2**32

#: A manifest larger than the client would download is no manifest of ours.
MAX_MANIFEST_BYTES = Config.max_manifest_bytes

_HINT = "pass --version N with N above the last version you published"


def trusted_previous_version(
    root: Path, keys: Sequence[Signer], also: Sequence[PublicKey] = ()
) -> int | None:
    """The version of the manifest in *root*, if one of *keys* (or of *also*: the
    signers the tree's roots listed) signed it; None if there is none.

    Raises :class:`SigningError` for a manifest that cannot be read, is not a
    regular file (a symlink is never followed) or does not verify.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        data = read_tree_file(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SigningError(f"{path} cannot be read ({exc.strerror or exc}); {_HINT}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise SigningError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes; {_HINT}")
    known = [*(key.public for key in keys), *also]
    signing = TrustedKeys({key.keyid: key for key in known}, threshold=1)
    try:
        return verify_manifest_signatures(data, signing, url=str(path)).version
    except SecureImportError as exc:
        raise SigningError(
            f"{path} is not a manifest signed by the signing key(s) "
            f"{', '.join(signing.keyids)}, so its version cannot be trusted (it may have "
            f"been edited; {_cut(str(exc))}); {_HINT}"
        ) from None


def choose_version(previous: int | None, requested: int | None, *, allow_jump: bool) -> int:
    """The new release's version: *requested*, or the trusted *previous* + 1."""
    if requested is not None and not 1 <= requested <= MAX_VERSION:
        raise ConfigurationError(f"--version must be from 1 to {MAX_VERSION}, not {requested}")
    if requested is None:
        if previous is not None and previous >= MAX_VERSION:
            raise SigningError(f"the tree is at the highest version {MAX_VERSION}")
        return 1 if previous is None else previous + 1
    if previous is not None and requested <= previous:
        raise SigningError(
            f"--version {requested} is not newer than the tree's current version {previous}; "
            "clients that saw it would refuse the tree as a rollback"
        )
    base = previous or 0
    if requested - base > MAX_VERSION_JUMP and not allow_jump:
        after = "0 (no trusted earlier manifest)" if previous is None else str(previous)
        raise SigningError(
            f"--version {requested} is more than {MAX_VERSION_JUMP} above version {after}; "
            "clients refuse every later release below it, so a mistyped number can use up "
            f"the versions left (the highest is {MAX_VERSION}). If you mean it, add "
            "--allow-version-jump"
        )
    return requested


def _cut(text: str, limit: int = 300) -> str:
    # The reason quotes the manifest, which a contributor controls: escaped
    # (no terminal escapes) and cut to one screen.
    return shown(text, limit)
