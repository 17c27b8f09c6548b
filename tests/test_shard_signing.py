"""``sign`` of a big tree writes manifest format 2 and its shards; ``sign --check`` and
``verify`` (directory and URL) check every shard (issue #14).

Small thresholds stand in for the 2,000-file default so the trees stay small.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secure_urlimport._format.keys import PrivateKey, TrustedKeys
from secure_urlimport._format.manifest import parse_manifest_body, split_manifest_file
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME, SHARD_DIR
from secure_urlimport._format.shard import parse_shard_body
from secure_urlimport.gate.audit import audit_directory
from secure_urlimport.publish.sharding import SHARD_THRESHOLD
from secure_urlimport.publish.signcheck import check_tree
from secure_urlimport.publish.signing import sign_tree

KEY = PrivateKey.from_seed(bytes([7]) * 32)
NOW = datetime.now(UTC).replace(microsecond=0)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def tree(packages: int = 20, modules: int = 50) -> dict[str, str]:
    files = {}
    for p in range(packages):
        files[f"pkg{p}/__init__.py"] = ""
        for m in range(modules):
            files[f"pkg{p}/mod{m}.py"] = f"VALUE = {p * 1000 + m}\n" + "#" * 40 + "\n"
    return files


def manifest_of(root: Path):
    return parse_manifest_body(split_manifest_file((root / MANIFEST_NAME).read_bytes()).body)


def shard_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / SHARD_DIR).iterdir())}


def sign(root: Path, version: int | None = None, threshold: int = 100) -> None:
    sign_tree(root, [KEY], now=NOW, name="big", shard_threshold=threshold, version=version)


def pinned() -> TrustedKeys:
    return TrustedKeys.from_arg([KEY.public], 1)


@pytest.fixture
def big(tmp_path: Path) -> Path:
    root = tmp_path / "big"
    write(root, tree())
    sign(root)
    return root


def test_the_default_threshold_keeps_a_thousand_module_tree_in_format_1() -> None:
    assert SHARD_THRESHOLD >= 1020


def test_a_tree_above_the_threshold_is_signed_as_an_index_of_shards(big: Path) -> None:
    manifest = manifest_of(big)
    assert manifest.format == 2 and manifest.files == {} and len(manifest.shards) > 5
    on_disk = shard_files(big)
    assert sorted(on_disk) == sorted(ref.sha256 for ref in manifest.shards)
    listed = {p for data in on_disk.values() for p in parse_shard_body(data)}
    assert listed == set(tree())
    assert not (big / BUNDLE_NAME).exists()  # a single import must not fetch every module
    # The index and one shard of this 1,020-file tree are far below 64 KiB.
    assert (big / MANIFEST_NAME).stat().st_size + max(map(len, on_disk.values())) < 40_000


def test_a_tree_at_or_below_the_threshold_stays_format_1(tmp_path: Path) -> None:
    root = tmp_path / "small"
    write(root, tree(2, 5))
    sign(root, threshold=12)
    assert manifest_of(root).format == 1 and (root / BUNDLE_NAME).exists()
    assert not (root / SHARD_DIR).exists()


def test_unchanged_shards_are_byte_identical_across_releases(big: Path) -> None:
    first = manifest_of(big)
    before = shard_files(big)
    (big / "pkg7/mod3.py").write_text("VALUE = 'changed'\n")
    sign(big)
    second = manifest_of(big)
    after = shard_files(big)
    assert second.version == first.version + 1
    new = {ref.sha256 for ref in second.shards} - {ref.sha256 for ref in first.shards}
    assert len(new) == 1  # one file changed: one shard changed
    for digest in {ref.sha256 for ref in second.shards} - new:
        assert after[digest] == before[digest]
    # The previous release's shards are kept for consumers mid-update...
    assert {ref.sha256 for ref in first.shards} <= set(after)
    # ...and dropped once two releases no longer pin them.
    (big / "pkg9/mod1.py").write_text("VALUE = 'again'\n")
    sign(big)
    kept = set(shard_files(big))
    third = manifest_of(big)
    assert kept == {r.sha256 for r in second.shards} | {r.sha256 for r in third.shards}


def test_an_added_file_changes_at_most_two_shards(big: Path) -> None:
    first = {ref.sha256 for ref in manifest_of(big).shards}
    write(big, {"pkg4/extra.py": "X = 1\n"})
    sign(big)
    assert len({ref.sha256 for ref in manifest_of(big).shards} - first) <= 2


def test_verify_and_sign_check_pass_on_a_sharded_tree(big: Path) -> None:
    report = audit_directory(big, pinned(), now=NOW + timedelta(hours=1))
    assert report.ok, report.problems
    assert report.files_checked == len(tree())
    check = check_tree(big, [KEY.keyid], [KEY.public], now=NOW, name="big")
    assert check.up_to_date, check.changes
    assert check.files == len(tree())


def test_verify_reports_a_tampered_and_a_missing_shard(big: Path) -> None:
    refs = manifest_of(big).shards
    tampered = big / refs[0].path
    tampered.write_bytes(tampered.read_bytes().replace(b'":["', b'":("', 1))  # same size
    (big / refs[1].path).unlink()
    report = audit_directory(big, pinned(), now=NOW)
    kinds = {(p.kind, p.path) for p in report.problems}
    assert ("shard", refs[0].path) in kinds and ("shard", refs[1].path) in kinds
    check = check_tree(big, [KEY.keyid], [KEY.public], now=NOW, name="big")
    assert [c.kind for c in check.changes if c.path == MANIFEST_NAME] == ["manifest"]


def test_verify_reports_a_tampered_file_of_a_sharded_tree(big: Path) -> None:
    (big / "pkg3/mod3.py").write_text("VALUE = 'evil'\n")
    report = audit_directory(big, pinned(), now=NOW)
    assert [(p.kind, p.path) for p in report.problems] == [("tampered", "pkg3/mod3.py")]
    check = check_tree(big, [KEY.keyid], [KEY.public], now=NOW, name="big")
    assert [(c.kind, c.path) for c in check.changes] == [("changed", "pkg3/mod3.py")]


def test_the_cli_signs_a_small_tree_sharded_with_shard_threshold_0(tmp_path: Path) -> None:
    import subprocess
    import sys

    from secure_urlimport.publish.keyfile import save_private_key

    root = tmp_path / "t"
    write(root, {"a.py": "A = 1\n", "b/c.py": "C = 2\n"})
    key_file = tmp_path / "k.key"
    save_private_key(KEY, key_file, None)
    run = [sys.executable, "-m", "secure_urlimport", "sign", str(root), "--key", str(key_file)]
    result = subprocess.run(
        [*run, "--shard-threshold", "0"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert manifest_of(root).format == 2 and len(shard_files(root)) == 1
    result = subprocess.run(
        [*run, "--shard-threshold", "-1"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "--shard-threshold must be 0 or more" in result.stderr
