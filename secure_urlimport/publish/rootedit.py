"""Building the next root, and checking who may sign it: pure, no files, no passphrases.

``root init`` builds version 1 (:func:`first_root`), ``root update`` version
N+1 from N and a :class:`RootChange` (:func:`next_root`).  Both refuse a
root no release could satisfy (a threshold above the keys of its role, a
role with no key) and an expiry not in the future.  :func:`check_root_signers`
is what the chain rules (``_trust/root_chain.py``) will ask of the result:
a threshold of the previous root's root keys and of the new root's own,
checked on key ids so the command line can refuse before any passphrase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .._format.keys import PublicKey, Signer
from .._format.root import Role, Root, encode_root, encode_root_body, root_message
from .._format.signedfile import MAX_SIGNATURE_LINES
from ..errors import ConfigurationError, SigningError

__all__ = [
    "DEFAULT_ROOT_EXPIRY",
    "RootChange",
    "check_root_signers",
    "first_root",
    "next_root",
    "sign_root",
]

#: A root expires a year after it is made unless ``--expires`` says otherwise.
DEFAULT_ROOT_EXPIRY = timedelta(days=365)
#: As for manifests: longer defeats expiry (and a frozen root would stay valid).
MAX_ROOT_EXPIRY = timedelta(days=3660)

_KeyRole = dict[str, PublicKey]


@dataclass(frozen=True)
class RootChange:
    """What ``root update`` changes; key ids for removals (``.pub`` files are read first)."""

    add_signers: tuple[PublicKey, ...] = ()
    remove_signers: tuple[str, ...] = ()
    add_root_keys: tuple[PublicKey, ...] = ()
    remove_root_keys: tuple[str, ...] = ()
    threshold: int | None = None
    root_threshold: int | None = None
    #: (tree name, key) pairs: the key joins that tree's role (made with threshold 1).
    tree_signers: tuple[tuple[str, PublicKey], ...] = ()
    tree_thresholds: tuple[tuple[str, int], ...] = ()
    remove_trees: tuple[str, ...] = ()


def first_root(
    *,
    name: str,
    root_keys: Sequence[PublicKey],
    root_threshold: int,
    signers: Sequence[PublicKey],
    threshold: int,
    trees: Mapping[str, tuple[Sequence[PublicKey], int]] | None = None,
    now: datetime,
    expires_in: timedelta,
) -> Root:
    """Version 1 of a tree's root."""
    root_role = _added({}, root_keys, "root key", "the new root")
    signer_role = _added({}, signers, "signer", "the new root")
    tree_roles = {
        tree: (_added({}, keys, f"tree {tree!r} signer", "the new root"), tree_threshold)
        for tree, (keys, tree_threshold) in (trees or {}).items()
    }
    return _assemble(
        name,
        1,
        now=now,
        expires_in=expires_in,
        root_role=(root_role, root_threshold),
        signer_role=(signer_role, threshold),
        trees=tree_roles,
    )


def next_root(old: Root, change: RootChange, *, now: datetime, expires_in: timedelta) -> Root:
    """Version N+1: *old* with *change* applied (a root key rotation included)."""
    where = f"root version {old.version}"
    root_role = _removed(_role_keys(old, old.root), change.remove_root_keys, "root key", where)
    root_role = _added(root_role, change.add_root_keys, "root key", where)
    signer_role = _removed(_role_keys(old, old.signers), change.remove_signers, "signer", where)
    signer_role = _added(signer_role, change.add_signers, "signer", where)
    trees = _changed_trees(old, change, where)
    return _assemble(
        old.name,
        old.version + 1,
        now=now,
        expires_in=expires_in,
        root_role=(root_role, _or(change.root_threshold, old.root.threshold)),
        signer_role=(signer_role, _or(change.threshold, old.signers.threshold)),
        trees=trees,
    )


def _or(given: int | None, kept: int) -> int:
    return kept if given is None else given


def _changed_trees(old: Root, change: RootChange, where: str) -> dict[str, tuple[_KeyRole, int]]:
    trees = {tree: (_role_keys(old, role), role.threshold) for tree, role in old.trees.items()}
    for tree in dict.fromkeys(change.remove_trees):
        if tree not in trees:
            raise ConfigurationError(
                f"cannot remove tree {tree!r}: {where} has no role for it "
                f"(its trees: {', '.join(map(repr, sorted(trees))) or 'none'})"
            )
        del trees[tree]
    for tree, key in change.tree_signers:
        if tree == old.name:
            raise ConfigurationError(
                f"{tree!r} is the root's own tree: add its signers with --add-signer"
            )
        keys, tree_threshold = trees.get(tree, ({}, 1))
        trees[tree] = (_added(keys, [key], f"tree {tree!r} signer", where), tree_threshold)
    for tree, tree_threshold in change.tree_thresholds:
        if tree not in trees:
            raise ConfigurationError(
                f"--tree-threshold {tree}={tree_threshold}: {where} has no role for tree "
                f"{tree!r} (add its signers with --tree-signer {tree}=S.pub)"
            )
        trees[tree] = (trees[tree][0], tree_threshold)
    return trees


def _role_keys(root: Root, role: Role) -> _KeyRole:
    return {keyid: root.keys[keyid] for keyid in role.keyids}


def _added(keys: _KeyRole, new: Iterable[PublicKey], what: str, where: str) -> _KeyRole:
    result = dict(keys)
    for key in new:
        if key.keyid in result:
            already = "given twice" if key.keyid not in keys else f"already a {what} of {where}"
            raise ConfigurationError(f"cannot add {what} {key.keyid}: it is {already}")
        result[key.keyid] = key
    return result


def _removed(keys: _KeyRole, gone: Iterable[str], what: str, where: str) -> _KeyRole:
    result = dict(keys)
    for keyid in gone:
        if keyid not in result:
            raise ConfigurationError(
                f"cannot remove {what} {keyid}: {where} does not list it as a {what} "
                f"(its {what}s: {', '.join(sorted(keys)) or 'none'})"
            )
        del result[keyid]
    return result


def _assemble(
    name: str,
    version: int,
    *,
    now: datetime,
    expires_in: timedelta,
    root_role: tuple[_KeyRole, int],
    signer_role: tuple[_KeyRole, int],
    trees: Mapping[str, tuple[_KeyRole, int]],
) -> Root:
    if expires_in <= timedelta(0):
        raise ConfigurationError(
            f"the root's expiry must be in the future, not {expires_in} from now: "
            "consumers refuse an expired root"
        )
    if expires_in > MAX_ROOT_EXPIRY:
        raise ConfigurationError("the root's validity must be at most 3660 days")
    if not name or len(name) > 200 or not name.isprintable():
        raise ConfigurationError("the tree name must be printable, 1 to 200 characters")
    roles = {
        "root": _role(*root_role, "root key", "--root-threshold"),
        "signers": _role(*signer_role, "signer", "--threshold"),
    }
    tree_roles = {
        tree: _role(keys, k, f"tree {tree!r} signer", f"--tree-threshold {tree}=N")
        for tree, (keys, k) in trees.items()
    }
    _refuse_both_roles(root_role[0], [signer_role[0], *(keys for keys, _ in trees.values())])
    keys = {**root_role[0], **signer_role[0]}
    for tree_keys, _ in trees.values():
        keys.update(tree_keys)
    now = now.replace(microsecond=0)
    return Root(
        name=name,
        version=version,
        created=now,
        expires=now + expires_in,
        keys={k: keys[k] for k in sorted(keys)},
        root=roles["root"],
        signers=roles["signers"],
        trees=dict(sorted(tree_roles.items())),
    )


def _refuse_both_roles(root_keys: _KeyRole, signer_roles: Sequence[_KeyRole]) -> None:
    both = sorted({k for role in signer_roles for k in role} & set(root_keys))
    if both:
        raise ConfigurationError(
            f"key(s) {', '.join(both)} would be both a root key and a release signer: "
            "a root key stays offline, a signing key lives in CI, and a leaked signing "
            "key must not be able to sign a new root; make a separate key for each role"
        )


def _role(keys: _KeyRole, threshold: int, what: str, option: str) -> Role:
    if not keys:
        raise ConfigurationError(
            f"a root with no {what} is refused: "
            + (
                "nobody could sign a release"
                if what != "root key"
                else "nobody could ever sign the next root"
            )
        )
    if type(threshold) is not int or not 1 <= threshold <= len(keys):
        raise ConfigurationError(
            f"{option} {threshold} cannot be met by the {len(keys)} key(s) "
            f"{', '.join(sorted(keys))} of the {what}s: " + _why_threshold(what)
        )
    if threshold > MAX_SIGNATURE_LINES:
        raise ConfigurationError(
            f"{option} {threshold} cannot be met: clients read at most "
            f"{MAX_SIGNATURE_LINES} signatures on a file, so " + _why_threshold(what)
        )
    return Role(tuple(sorted(keys)), threshold)


def _why_threshold(what: str) -> str:
    if what == "root key":
        return "no next root could ever be signed; give a threshold from 1 to the key count"
    return "no release could ever be signed; give a threshold from 1 to the key count"


def check_root_signers(
    keyids: Sequence[str],
    *,
    old: Root | None,
    new: Root,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Refuse unless *keyids* meet the threshold of *old*'s root keys (if any)
    and of *new*'s own root keys, and every one of them is a root key of either.

    *labels* names each key id for messages (``--root-key`` file names).
    """
    labels = labels or {}
    if not keyids:
        raise SigningError("a root needs at least one --root-key to sign it")
    given = set(keyids)
    if len(given) > MAX_SIGNATURE_LINES:
        raise SigningError(
            f"{len(given)} root keys would sign root version {new.version}, and clients "
            f"refuse a root with more than {MAX_SIGNATURE_LINES} signatures: give at most "
            f"{MAX_SIGNATURE_LINES} --root-key (the thresholds of the old and the new root keys)"
        )
    allowed = set(new.root.keyids) | (set(old.root.keyids) if old else set())
    for keyid in dict.fromkeys(keyids):
        if keyid not in allowed:
            label = f"{labels[keyid]} (key id {keyid})" if keyid in labels else f"key {keyid}"
            previous = f" or of root version {old.version}" if old else ""
            raise SigningError(
                f"--root-key {label} is not a root key of the new root version "
                f"{new.version}{previous} (root keys: {', '.join(sorted(allowed))}); "
                "its signature would count for nothing"
            )
    if old is not None:
        _require(given, old.root, f"root version {old.version} must approve the next root: ")
    _require(
        given,
        new.root,
        f"the new root version {new.version} must be signed by its own root keys too "
        "(proof that their holders have them): ",
    )


def _require(given: set[str], role: Role, head: str) -> None:
    present = [k for k in role.keyids if k in given]
    if len(present) < role.threshold:
        missing = [k for k in role.keyids if k not in given]
        raise SigningError(
            f"{head}{role.threshold} of the root keys {', '.join(role.keyids)} must sign; "
            f"{len(present)} given, missing: {', '.join(missing)} (give more --root-key)"
        )


def sign_root(
    new: Root,
    signers: Sequence[Signer],
    *,
    old: Root | None,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """The signed file of *new*, signed by every one of *signers* (checked first)."""
    unique = list({signer.keyid: signer for signer in signers}.values())
    check_root_signers([s.keyid for s in unique], old=old, new=new, labels=labels)
    body = encode_root_body(new)
    signatures = [(s.keyid, s.sign(root_message(s.keyid, body))) for s in unique]
    return encode_root(body, sorted(signatures))
