"""The pure trust core (trusted_set.TrustedManifests), tested like python-tuf's trusted set:
bytes, keys, the clock and stored records in; a manifest or an exact error out. No server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_formats import (
    CHECK_AT,
    K1,
    K2,
    STRANGER,
    URL,
    build_body,
    build_manifest,
    pinned,
    sign_body,
)

from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.manifest import Manifest
from secure_urlimport._trust.trusted_set import TrustedManifests
from secure_urlimport._trust.verify import TrustedState
from secure_urlimport.errors import (
    BadSignatureError,
    ExpiredManifestError,
    RollbackError,
    UntrustedKeyError,
    WrongTreeError,
)


def trusted_set(*keys: PrivateKey, threshold: int = 1, name: str | None = None) -> TrustedManifests:
    return TrustedManifests(pinned(*(keys or (K1,)), threshold=threshold), name=name)


def accept(
    tset: TrustedManifests, data: bytes, stored: dict[str, TrustedState] | None = None
) -> Manifest:
    manifest = tset.verify(data, now=CHECK_AT, stored=stored or {}, url=URL)
    return tset.accept(manifest, now=CHECK_AT)


def test_a_manifest_signed_by_the_pinned_key_becomes_the_newest() -> None:
    tset = trusted_set()
    manifest = accept(tset, build_manifest(version=3))
    assert manifest.version == 3
    assert tset.newest is manifest


def test_a_manifest_signed_by_an_unpinned_key_is_refused_and_nothing_changes() -> None:
    tset = trusted_set()
    with pytest.raises(UntrustedKeyError):
        accept(tset, build_manifest(keys=[STRANGER]))
    assert tset.newest is None


def test_a_manifest_whose_body_was_altered_after_signing_is_refused() -> None:
    body = build_body(version=2)
    data = sign_body(body, K1).replace(b"mod.py", b"mod.pz", 1)
    assert data != sign_body(body, K1)
    with pytest.raises(BadSignatureError):
        accept(trusted_set(), data)


def test_two_of_two_keys_are_required_when_the_threshold_is_two() -> None:
    with pytest.raises(UntrustedKeyError):
        accept(trusted_set(K1, K2, threshold=2), build_manifest(keys=[K1]))
    assert accept(trusted_set(K1, K2, threshold=2), build_manifest(keys=[K1, K2])).version == 1


def test_every_valid_pinned_signer_is_reported_even_past_the_threshold() -> None:
    manifest = accept(trusted_set(K1, K2), build_manifest(keys=[K1, K2]))
    assert manifest.signers == {K1.keyid, K2.keyid}


def test_a_pinned_tree_name_refuses_another_tree() -> None:
    with pytest.raises(WrongTreeError):
        accept(trusted_set(name="plugins"), build_manifest())


def test_an_expired_manifest_is_refused() -> None:
    tset = trusted_set()
    data = build_manifest(lifetime=timedelta(minutes=30))
    with pytest.raises(ExpiredManifestError):
        accept(tset, data)


def test_a_release_older_than_a_stored_record_of_a_pinned_key_is_refused() -> None:
    stored = {K1.keyid: TrustedState(5, "0" * 64)}
    with pytest.raises(RollbackError):
        accept(trusted_set(), build_manifest(version=4), stored)


def test_a_stored_record_of_a_key_no_longer_pinned_does_not_set_the_floor() -> None:
    stored = {K2.keyid: TrustedState(2**63 - 1, "0" * 64)}
    assert accept(trusted_set(K1), build_manifest(version=1), stored).version == 1


def test_a_rewritten_release_with_the_same_version_is_refused() -> None:
    tset = trusted_set()
    accept(tset, build_manifest(version=2))
    with pytest.raises(RollbackError):
        accept(tset, build_manifest({"other.py": b"X = 1\n"}, version=2))


def test_a_release_older_than_one_accepted_in_this_process_is_refused() -> None:
    tset = trusted_set()
    accept(tset, build_manifest(version=3))
    with pytest.raises(RollbackError):
        accept(tset, build_manifest(version=2))


def test_an_older_release_verified_before_a_newer_one_landed_never_replaces_it() -> None:
    """Two threads: one verifies v2 (floor still 1), the other accepts v3 first."""
    tset = trusted_set()
    accept(tset, build_manifest(version=1))
    slow = tset.verify(build_manifest(version=2), now=CHECK_AT, stored={}, url=URL)
    fast = accept(tset, build_manifest(version=3))
    assert tset.accept(slow, now=CHECK_AT) is fast
    assert tset.newest is fast


def test_a_race_with_an_expired_newer_release_uses_the_one_just_verified() -> None:
    """The newer release accepted meanwhile has expired: it cannot be used, so the
    older one just verified serves, but the floor stays at the newer one."""
    tset = trusted_set()
    slow = tset.verify(
        build_manifest(version=2, lifetime=timedelta(days=9)), now=CHECK_AT, stored={}, url=URL
    )
    newer = accept(tset, build_manifest(version=3, lifetime=timedelta(hours=2)))
    later = CHECK_AT + timedelta(hours=3)
    assert tset.accept(slow, now=later) is slow
    assert tset.newest is newer
