"""Sharded trees (manifest format 2, issue #14): every shard is the one the signed index pins.

The simulator serves a sharded release (``sign_tree`` with a low threshold);
each test stages one attack on the shards or on the per-file signatures of
format 2 and asserts the exact error, and that no attacker code ran (the
would-be module writes a marker file).  Hand-made releases (:func:`compose_sharded`)
stand in for a publisher tool that the pinned key signs but that cuts shards
wrongly: the index verifies, the shard must not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from conftest import evil_source
from simulator import (
    Release,
    RepositorySimulator,
    assert_never_ran,
    cache_root,
    compose,
    make_root,
    sign_release,
)

from secure_urlimport import (
    BadSignatureError,
    ManifestFormatError,
    ResponseTooLargeError,
    TamperedFileError,
    install,
    uninstall,
)
from secure_urlimport._format.entry import FileEntry
from secure_urlimport._format.keys import PrivateKey, TrustedKeys
from secure_urlimport._format.manifest import (
    SHARDED_FORMAT,
    Manifest,
    encode_body,
    encode_manifest,
    file_message_v2,
    manifest_message,
)
from secure_urlimport._format.paths import MANIFEST_NAME, SHARD_DIR
from secure_urlimport._format.shard import MAX_SHARDS, ShardRef, encode_shard
from secure_urlimport.gate.audit import audit_url

KEY = PrivateKey.from_seed(bytes([0x51]) * 32)


#: As long (in decimal digits) as the marker-writing source: shards of either are the same size.
HONEST = "VALUE = 0\n" + "#" * 100 + "\n"


def big_tree(marker_source: str = HONEST) -> dict[str, str]:
    """8 packages of 50 modules: about four shards."""
    files = {}
    for p in range(8):
        files[f"pkg{p}/__init__.py"] = ""
        for m in range(50):
            files[f"pkg{p}/mod{m}.py"] = f"VALUE = {p * 100 + m}\n"
    files["pkg0/mod0.py"] = marker_source
    return files


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


def publish(sim: RepositorySimulator, files: Mapping[str, str], **kw: object) -> Release:
    return sim.publish(files, [KEY], shard_threshold=10, **kw)  # type: ignore[arg-type]


def shard_of(release: Release, path: str) -> ShardRef:
    refs = release.manifest.shards
    return [ref for ref in refs if ref.first <= path][-1]


def entry_v2(path: str, data: bytes, name: str = "tree") -> FileEntry:
    sha = hashlib.sha256(data).hexdigest()
    sig = KEY.sign(file_message_v2(KEY.keyid, name, path, sha, len(data)))
    return FileEntry(path, len(data), sha, {KEY.keyid: sig})


def compose_sharded(
    groups: Sequence[Mapping[str, bytes]],
    *,
    version: int = 1,
    firsts: Sequence[str] | None = None,
) -> Release:
    """A format-2 release assembled by hand: one shard per group (pinned at
    *firsts*, default each group's smallest path), signed by KEY."""
    shards = [encode_shard([entry_v2(p, d) for p, d in g.items()]) for g in groups]
    starts = list(firsts) if firsts is not None else [min(g) for g in groups]
    refs = tuple(
        ShardRef(first, hashlib.sha256(s).hexdigest(), len(s))
        for first, s in zip(starts, shards, strict=True)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        version,
        now,
        now + timedelta(days=1),
        (KEY.keyid,),
        {},
        name="tree",
        format=SHARDED_FORMAT,
        shards=refs,
    )
    body = encode_body(manifest)
    data = encode_manifest(body, [(KEY.keyid, KEY.sign(manifest_message(KEY.keyid, body)))])
    files = {p: d for g in groups for p, d in g.items()}
    return Release(version, files, data, {ref.path: s for ref, s in zip(refs, shards, strict=True)})


def pin(sim: RepositorySimulator):
    return install(sim.url, pubkey=KEY.public.raw, fetcher=sim)


# -- the honest case: the index and one shard


def test_one_import_reads_the_index_one_shard_and_its_own_files(sim, marker):
    release = publish(sim, big_tree())
    assert len(release.manifest.shards) >= 3 and release.manifest.files == {}
    pin(sim)
    assert importlib.import_module("pkg3.mod7").VALUE == 307
    shard = shard_of(release, "pkg3/mod7.py").path
    assert sim.requested_paths() == [MANIFEST_NAME, shard, "pkg3/__init__.py", "pkg3/mod7.py"]


def test_after_a_one_file_release_a_warm_consumer_fetches_the_index_one_shard_and_the_file(sim):
    first = publish(sim, big_tree())
    pin(sim)
    importlib.import_module("pkg3.mod7")
    uninstall(sim.url)
    for name in ("pkg3.mod7", "pkg3"):
        del __import__("sys").modules[name]
    files = big_tree()
    files["pkg3/mod7.py"] = "VALUE = 'new'\n"
    second = publish(sim, files)
    changed = {r.path for r in second.manifest.shards} - {r.path for r in first.manifest.shards}
    assert changed == {shard_of(second, "pkg3/mod7.py").path}
    sim.requests.clear()
    pin(sim)
    assert importlib.import_module("pkg3.mod7").VALUE == "new"
    # pkg3/__init__.py comes from the disk cache: same bytes, same digest.
    assert sim.requested_paths() == [MANIFEST_NAME, *changed, "pkg3/mod7.py"]


# -- shards that are not the pinned ones


def test_a_shard_swapped_for_another_releases_is_refused(sim, marker):
    old = publish(sim, big_tree(evil_source(marker)))  # an old, vulnerable release
    new = publish(sim, big_tree())
    sim.put(shard_of(new, "pkg0/mod0.py").path, old.shards[shard_of(old, "pkg0/mod0.py").path])
    sim.put("pkg0/mod0.py", evil_source(marker))
    pin(sim)
    with pytest.raises(TamperedFileError, match="not the one the signed manifest pins"):
        importlib.import_module("pkg0.mod0")
    assert_never_ran(marker, "pkg0.mod0")


def test_a_stale_edge_shard_is_fetched_again_past_the_cache(sim, marker):
    old = publish(sim, big_tree(evil_source(marker)))
    new = publish(sim, big_tree())
    url = shard_of(new, "pkg0/mod0.py").path
    # The edge holds other bytes under the new shard's name (the simulator's
    # stale_edge() keeps a release's own paths; a shard's name is its digest).
    sim._edge[sim.url_of(url)] = old.shards[shard_of(old, "pkg0/mod0.py").path]
    pin(sim)
    assert importlib.import_module("pkg0.mod0").VALUE == 0
    assert sim.fresh_requests == [sim.url_of(url)]
    assert_never_ran(marker)


def test_a_shard_whose_digest_differs_at_the_origin_too_is_refused_after_one_retry(sim, marker):
    release = publish(sim, big_tree())
    path = shard_of(release, "pkg0/mod0.py").path
    sim.modify(path, lambda data: data.replace(b'":["', b'":("', 1))  # same size
    pin(sim)
    with pytest.raises(TamperedFileError, match="not the one the signed manifest pins"):
        importlib.import_module("pkg0.mod0")
    assert sim.requested(path) == 1 and sim.fresh_requests == [sim.url_of(path)]
    assert_never_ran(marker, "pkg0.mod0")


def test_a_huge_shard_is_refused_at_its_pinned_size(sim, marker):
    release = publish(sim, big_tree())
    path = shard_of(release, "pkg0/mod0.py").path
    sim.put(path, b"{" + b" " * (10 << 20))
    pin(sim)
    with pytest.raises(ResponseTooLargeError):
        importlib.import_module("pkg0.mod0")
    assert_never_ran(marker, "pkg0.mod0")


def test_a_tampered_cached_shard_is_discarded_and_fetched_again(sim, caplog):
    release = publish(sim, big_tree())
    pin(sim)
    importlib.import_module("pkg0.mod0")
    uninstall(sim.url)
    del __import__("sys").modules["pkg0.mod0"], __import__("sys").modules["pkg0"]
    digest = shard_of(release, "pkg0/mod0.py").sha256
    cached = cache_root() / "files" / digest[:2] / digest[2:]
    assert cached.exists()
    cached.write_bytes(b"{}")
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        pin(sim)
        assert importlib.import_module("pkg0.mod0").VALUE == 0
    assert f"discarding the cached shard {digest}" in caplog.text


# -- shards cut wrongly under a valid index


def test_a_shard_with_a_path_outside_its_range_is_refused(sim, marker):
    # Shard 0 also lists b/evil.py, which the index gives to shard 1.
    evil = evil_source(marker).encode()
    sim.serve(compose_sharded([{"a/__init__.py": b"", "b/evil.py": evil}, {"b/__init__.py": b""}]))
    pin(sim)
    with pytest.raises(ManifestFormatError, match="outside its range"):
        importlib.import_module("a")
    assert_never_ran(marker, "a", "b.evil")


def test_two_shards_claiming_one_path_are_refused(sim, marker):
    evil = evil_source(marker).encode()
    release = compose_sharded([{"a/__init__.py": b"", "a/m.py": evil}, {"a/m.py": b"X = 1\n"}])
    sim.serve(release)
    pin(sim)
    with pytest.raises(ManifestFormatError, match="outside its range"):
        importlib.import_module("a.m")
    assert_never_ran(marker, "a", "a.m")


def test_a_shard_listing_a_file_the_index_ranges_exclude_is_refused(sim, marker):
    # The index's first shard starts at b/; a.py sorts before every range.
    evil = evil_source(marker).encode()
    sim.serve(compose_sharded([{"a.py": evil, "b/__init__.py": b""}], firsts=["b/__init__.py"]))
    pin(sim)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("a")  # no shard's range holds a.py: not in the tree
    with pytest.raises(ManifestFormatError, match="outside its range"):
        importlib.import_module("b")
    assert_never_ran(marker, "a", "b")


def test_an_index_listing_too_many_shards_is_refused_before_any_shard_is_read(sim, marker):
    refs = [ShardRef(f"p{i:06}.py", f"{i:064x}", 1) for i in range(MAX_SHARDS + 1)]
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        1,
        now,
        now + timedelta(days=1),
        (KEY.keyid,),
        {},
        name="tree",
        format=SHARDED_FORMAT,
        shards=tuple(refs),
    )
    body = encode_body(manifest)
    sim.put(
        MANIFEST_NAME,
        encode_manifest(body, [(KEY.keyid, KEY.sign(manifest_message(KEY.keyid, body)))]),
    )
    with pytest.raises(ManifestFormatError, match="at most 65536 pins"):
        pin(sim)
    assert not any(p.startswith(SHARD_DIR) for p in sim.requested_paths())


# -- per-file signatures across formats


def test_a_format_2_file_signature_replayed_under_format_1_is_refused(sim, marker):
    evil = evil_source(marker)
    borrowed = entry_v2("mod.py", evil.encode())  # signed for a format-2 release of "tree"
    sim.serve(
        compose({"mod.py": evil}, version=1, manifest_keys=[KEY], entries={"mod.py": borrowed})
    )
    pin(sim)
    with pytest.raises(BadSignatureError):
        importlib.import_module("mod")
    assert_never_ran(marker, "mod")


def test_a_format_1_file_signature_replayed_under_format_2_is_refused(sim, marker):
    evil = evil_source(marker)
    v1 = sign_release({"mod.py": evil}, [KEY]).entry("mod.py")  # format 1, version 1
    sharded = compose_sharded([{"mod.py": evil.encode()}])
    shard = encode_shard([v1])
    ref = dataclasses.replace(
        sharded.manifest.shards[0], sha256=hashlib.sha256(shard).hexdigest(), size=len(shard)
    )
    manifest = dataclasses.replace(sharded.manifest, shards=(ref,))
    body = encode_body(manifest)
    data = encode_manifest(body, [(KEY.keyid, KEY.sign(manifest_message(KEY.keyid, body)))])
    sim.serve(Release(1, {"mod.py": evil.encode()}, data, {ref.path: shard}))
    pin(sim)
    with pytest.raises(BadSignatureError):
        importlib.import_module("mod")
    assert_never_ran(marker, "mod")


# -- the gate over https


def test_verify_over_https_checks_every_shard(sim):
    release = publish(sim, big_tree())
    trusted = TrustedKeys.from_arg([KEY.public], 1)
    now = datetime.now(UTC)

    def audit():
        return audit_url(
            sim.url, trusted, sim, now=now, max_manifest_bytes=1 << 24, file_url=sim.url_of
        )

    report = audit()
    assert report.ok, report.problems
    assert report.files_checked == len(big_tree())
    ref = release.manifest.shards[2]
    sim.put(ref.path, b"{}")
    sim.drop(release.manifest.shards[1].path)
    problems = [(p.kind, p.path) for p in audit().problems]
    assert ("shard", ref.path) in problems and (
        "shard",
        release.manifest.shards[1].path,
    ) in problems


# -- pinned by root keys


def test_a_sharded_tree_pinned_by_its_root_costs_one_root_probe_more(sim):
    root_key = PrivateKey.from_seed(bytes([0x53]) * 32)
    sim.put_root(1, make_root(1, root_keys=[root_key], signers=[KEY]))
    release = publish(sim, big_tree())
    install(sim.url, root=root_key.public.raw, fetcher=sim)
    assert importlib.import_module("pkg3.mod7").VALUE == 307
    shard = shard_of(release, "pkg3/mod7.py").path
    asked = [p for p in sim.requested_paths() if not p.startswith("secure-urlimport.root.")]
    assert asked == [MANIFEST_NAME, shard, "pkg3/__init__.py", "pkg3/mod7.py"]
    probes = [p for p in sim.requested_paths() if p.startswith("secure-urlimport.root.")]
    assert probes == ["secure-urlimport.root.1", "secure-urlimport.root.2"]
