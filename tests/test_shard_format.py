"""Manifest format 2, shard files and the v2 file message (issue #14), with each refusal.

No network: bodies are built in memory from the project's own format helpers;
the verdicts come from ``_trust`` (``verify_shard``, ``verify_file_signatures``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from secure_urlimport._format.entry import FileEntry
from secure_urlimport._format.keys import PrivateKey, TrustedKeys
from secure_urlimport._format.manifest import (
    SHARDED_FORMAT,
    Manifest,
    encode_body,
    file_message,
    file_message_v2,
    parse_manifest_body,
)
from secure_urlimport._format.shard import (
    MAX_SHARD_BYTES,
    MAX_SHARDS,
    ShardRef,
    cut_shards,
    digest_text,
    encode_shard,
    parse_shard_body,
)
from secure_urlimport._format.signedfile import length_prefixed
from secure_urlimport._trust.shards import check_case_folds, flatten, verify_shard
from secure_urlimport._trust.verify import verify_file_signatures
from secure_urlimport.errors import BadSignatureError, ManifestFormatError, TamperedFileError

K1 = PrivateKey.from_seed(bytes([1]) * 32)
AT = datetime(2031, 5, 17, 12, 0, 0, tzinfo=UTC)
URL = "https://example.invalid/tree/secure-urlimport.shards/x"


def entry_v2(path: str, data: bytes, name: str = "tree", key: PrivateKey = K1) -> FileEntry:
    sha = hashlib.sha256(data).hexdigest()
    sig = key.sign(file_message_v2(key.keyid, name, path, sha, len(data)))
    return FileEntry(path, len(data), sha, {key.keyid: sig})


def entry_v1(path: str, data: bytes, version: int, key: PrivateKey = K1) -> FileEntry:
    sha = hashlib.sha256(data).hexdigest()
    sig = key.sign(file_message(key.keyid, version, path, sha, len(data)))
    return FileEntry(path, len(data), sha, {key.keyid: sig})


def index(
    *groups: list[FileEntry], version: int = 1, name: str = "tree"
) -> tuple[Manifest, list[bytes]]:
    """A format-2 manifest pinning one shard per group, and the shards' bytes."""
    shards = [encode_shard(group) for group in groups]
    refs = tuple(
        ShardRef(min(e.path for e in g), hashlib.sha256(s).hexdigest(), len(s))
        for g, s in zip(groups, shards, strict=True)
    )
    manifest = Manifest(
        version,
        AT,
        AT + timedelta(days=1),
        (K1.keyid,),
        {},
        name=name,
        format=SHARDED_FORMAT,
        shards=refs,
    )
    return manifest, shards


def body_with(**changes: object) -> bytes:
    manifest, _ = index([entry_v2("a.py", b"1")], [entry_v2("b.py", b"2")])
    obj = json.loads(encode_body(manifest))
    obj.update(changes)
    return json.dumps(obj).encode()


# -- the v2 file message


def test_file_message_v2_is_tag_keyid_name_path_digest_size() -> None:
    sha = "ab" * 32
    assert file_message_v2(K1.keyid, "tree", "pkg/m.py", sha, 5) == length_prefixed(
        b"secure-urlimport/file/v2",
        K1.keyid.encode(),
        b"tree",
        b"pkg/m.py",
        bytes.fromhex(sha),
        b"5",
    )


def test_file_message_v2_never_equals_a_v1_message() -> None:
    sha = "ab" * 32
    assert file_message_v2(K1.keyid, "1", "m.py", sha, 5) != file_message(
        K1.keyid, 1, "m.py", sha, 5
    )


# -- format 2 manifests


def test_a_sharded_manifest_round_trips() -> None:
    manifest, _ = index([entry_v2("a.py", b"1")], [entry_v2("b/c.py", b"2")])
    parsed = parse_manifest_body(encode_body(manifest))
    assert parsed.format == 2 and parsed.shards == manifest.shards and parsed.files == {}
    assert parsed.shard_range(0) == ("a.py", "b/c.py") and parsed.shard_range(1) == ("b/c.py", None)


def test_format_2_inline_lists_its_files_with_no_shards() -> None:
    entry = entry_v2("a.py", b"1")
    manifest = Manifest(
        1,
        AT,
        AT + timedelta(days=1),
        (K1.keyid,),
        {"a.py": entry},
        name="tree",
        format=SHARDED_FORMAT,
    )
    parsed = parse_manifest_body(encode_body(manifest))
    assert parsed.files == {"a.py": entry} and parsed.shards == ()


def test_format_1_body_is_unchanged_byte_for_byte() -> None:
    entry = entry_v1("a.py", b"1", 1)
    manifest = Manifest(1, AT, AT + timedelta(days=1), (K1.keyid,), {"a.py": entry}, name="t")
    body = encode_body(manifest)
    assert b'"shards"' not in body and b'"format": 1' in body
    assert parse_manifest_body(body) == manifest


D0 = digest_text("00" * 32)
D1 = digest_text("11" * 32)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"shards": None}, "shards is not a list"),
        ({"shards": [["a.py", "0" * 64]]}, "is not \\[first_path"),
        ({"shards": [["../a.py", D0, 1]]}, "invalid first path"),
        ({"shards": [["a.py", "0" * 64, 1]]}, "malformed sha256"),  # hex is not base64url
        ({"shards": [["a.py", D0[:-1] + "=", 1]]}, "malformed sha256"),
        ({"shards": [["a.py", D0[:-1] + "B", 1]]}, "non-canonical sha256"),
        ({"shards": [["a.py", D0, 0]]}, "size not in"),
        ({"shards": [["a.py", D0, MAX_SHARD_BYTES + 1]]}, "size not in"),
        ({"shards": [["b.py", D0, 1], ["a.py", D1, 1]]}, "not sorted"),
        ({"shards": [["a.py", D0, 1], ["a.py", D1, 1]]}, "not sorted"),
        ({"shards": [["a.py", D0, 1], ["b.py", D0, 1]]}, "twice"),
        (
            {"files": {"c.py": {"sha256": "0" * 64, "signatures": {K1.keyid: ""}, "size": 0}}},
            "lists files itself",
        ),
    ],
)
def test_a_malformed_index_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestFormatError, match=message):
        parse_manifest_body(body_with(**changes))


def test_an_index_of_a_million_shards_is_refused_before_any_is_read() -> None:
    pins = [[f"p{i:07}.py", digest_text(f"{i:064x}"), 1] for i in range(MAX_SHARDS + 1)]
    with pytest.raises(ManifestFormatError, match="at most 65536 pins"):
        parse_manifest_body(body_with(shards=pins))


def test_format_2_without_shards_key_and_format_1_with_it_are_refused() -> None:
    obj = json.loads(body_with())
    del obj["shards"]
    with pytest.raises(ManifestFormatError, match="body keys"):
        parse_manifest_body(json.dumps(obj).encode())
    with pytest.raises(ManifestFormatError, match="body keys"):
        parse_manifest_body(body_with(format=1))
    with pytest.raises(ManifestFormatError, match="body keys"):
        parse_manifest_body(body_with(format=3))  # an unknown format's keys are not known


# -- shard files


def test_a_shard_round_trips_and_is_deterministic() -> None:
    entries = [entry_v2("b.py", b"2"), entry_v2("a.py", b"1")]
    data = encode_shard(entries)
    assert data == encode_shard(list(reversed(entries)))
    assert parse_shard_body(data) == {e.path: e for e in entries}


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"files":{},"format":1,"type":"secure-urlimport/shard"}', "non-empty"),
        (b'{"files":{"a":1},"format":2,"type":"secure-urlimport/shard"}', "format-1 shard"),
        (b'{"files":{"a":1},"format":1,"type":"secure-urlimport/manifest"}', "format-1 shard"),
        (b'{"files":{"a":1},"format":1,"type":"secure-urlimport/shard","x":1}', "body keys"),
        (b'{"files":{"a":1},"format":1.0,"type":"secure-urlimport/shard"}', "non-integer"),
        (b'{"files":{},"files":{},"format":1,"type":"secure-urlimport/shard"}', "repeats"),
        (b"[]", "not a JSON object"),
        (b"\xff", "not valid JSON"),
        (b'{"files":{"a":1},"format":1,"type":"secure-urlimport/shard"}', "is not \\[sha256"),
        (b'{"files":{"a":["x",1,{}]},"format":1,"type":"secure-urlimport/shard"}', "malformed sha"),
    ],
)
def test_a_malformed_shard_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(ManifestFormatError, match=message):
        parse_shard_body(body)


def test_a_shard_with_a_case_fold_pair_is_refused() -> None:
    with pytest.raises(ManifestFormatError, match="differ only in case"):
        parse_shard_body(encode_shard([entry_v2("A.txt", b"1"), entry_v2("a.txt", b"2")]))
    with pytest.raises(ManifestFormatError, match="differ only in case"):
        check_case_folds({"A.txt": entry_v2("A.txt", b""), "a.txt": entry_v2("a.txt", b"")})


# -- a shard against its pin (_trust)


def test_the_pinned_shard_verifies() -> None:
    manifest, shards = index([entry_v2("a.py", b"1")], [entry_v2("b.py", b"2")])
    assert set(verify_shard(shards[1], manifest, 1, url=URL)) == {"b.py"}


def test_a_shard_that_is_not_the_pinned_bytes_is_refused() -> None:
    manifest, shards = index([entry_v2("a.py", b"1")], [entry_v2("b.py", b"2")])
    with pytest.raises(TamperedFileError, match="not the one the signed manifest pins"):
        verify_shard(shards[0], manifest, 1, url=URL)
    with pytest.raises(TamperedFileError, match="not the one the signed manifest pins"):
        verify_shard(shards[1] + b" ", manifest, 1, url=URL)


def test_a_shard_listing_a_path_outside_its_range_is_refused() -> None:
    # The index pins a shard whose bytes hold a path the next pin's range owns.
    manifest, shards = index(
        [entry_v2("a.py", b"1"), entry_v2("c.py", b"3")], [entry_v2("b.py", b"2")]
    )
    with pytest.raises(ManifestFormatError, match="outside its range"):
        verify_shard(shards[0], manifest, 0, url=URL)


def test_a_shard_without_its_first_path_is_refused() -> None:
    manifest, shards = index([entry_v2("b.py", b"1")])
    manifest = dataclasses.replace(
        manifest, shards=(dataclasses.replace(manifest.shards[0], first="a.py"),)
    )
    with pytest.raises(ManifestFormatError, match="does not hold its first path"):
        verify_shard(shards[0], manifest, 0, url=URL)


def test_flatten_reads_every_shard_and_refuses_case_folds_across_shards() -> None:
    manifest, shards = index([entry_v2("A.py", b"1")], [entry_v2("a.py", b"2")])
    by_digest = {hashlib.sha256(s).hexdigest(): s for s in shards}
    with pytest.raises(ManifestFormatError, match="differ only in case"):
        flatten(manifest, lambda ref: by_digest[ref.sha256], url=lambda ref: ref.path)
    manifest, shards = index([entry_v2("a.py", b"1")], [entry_v2("b.py", b"2")])
    by_digest = {hashlib.sha256(s).hexdigest(): s for s in shards}
    flat = flatten(manifest, lambda ref: by_digest[ref.sha256], url=lambda ref: ref.path)
    assert set(flat.files) == {"a.py", "b.py"}


# -- file signatures under each format


def keys() -> TrustedKeys:
    return TrustedKeys.from_arg([K1.public], 1)


def test_a_v2_signature_verifies_in_format_2() -> None:
    manifest, _ = index([entry_v2("a.py", b"1")])
    verify_file_signatures(entry_v2("a.py", b"1"), manifest, keys(), url=URL)


def test_a_v2_signature_for_another_tree_name_is_refused() -> None:
    manifest, _ = index([entry_v2("a.py", b"1")], name="tree")
    with pytest.raises(BadSignatureError, match="does not verify"):
        verify_file_signatures(entry_v2("a.py", b"1", name="other"), manifest, keys(), url=URL)


def test_a_format_1_signature_replayed_under_format_2_is_refused() -> None:
    manifest, _ = index([entry_v2("a.py", b"1")])
    with pytest.raises(BadSignatureError, match="does not verify"):
        verify_file_signatures(entry_v1("a.py", b"1", 1), manifest, keys(), url=URL)


def test_a_format_2_signature_replayed_under_format_1_is_refused() -> None:
    manifest = Manifest(1, AT, AT + timedelta(days=1), (K1.keyid,), {}, name="1")
    with pytest.raises(BadSignatureError, match="does not verify"):
        verify_file_signatures(entry_v2("a.py", b"1", name="1"), manifest, keys(), url=URL)


# -- cutting (sign)


def _tree(n: int, changed: str = "", extra: str = "") -> list[FileEntry]:
    paths = sorted([f"pkg{i // 50}/mod{i % 50}.py" for i in range(n)] + ([extra] if extra else []))
    return [entry_v2(p, b"changed" if p == changed else p.encode()) for p in paths]


def _digests(entries: list[FileEntry]) -> list[bytes]:
    return [encode_shard(group) for group in cut_shards(entries, 4096)]


def test_shards_are_cut_near_the_target_size() -> None:
    groups = cut_shards(_tree(2000), 4096)
    sizes = [len(encode_shard(g)) for g in groups]
    assert max(sizes) <= 4096 * 6 // 5 + 400
    assert 3500 < sum(sizes) / len(sizes) < 4700


def test_a_changed_file_changes_one_shard_and_an_added_file_at_most_two() -> None:
    before = set(_digests(_tree(2000)))
    changed = set(_digests(_tree(2000, changed="pkg7/mod3.py")))
    assert len(changed - before) == 1
    added = set(_digests(_tree(2000, extra="pkg7/mod3a.py")))
    assert len(added - before) <= 2
