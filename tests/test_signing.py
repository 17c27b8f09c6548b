"""sign_tree (what gets signed, what is refused, versions, atomic writes) and the local audit.

Independent of tests/conftest.py: keys are fixed seeds, trees live under
``tmp_path`` and every clock is passed in explicitly.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secure_urlimport._format.keys import PrivateKey, TrustedKeys
from secure_urlimport._format.manifest import (
    encode_manifest,
    file_message,
    manifest_message,
    split_manifest_file,
)
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport._trust.verify import verify_file, verify_manifest
from secure_urlimport.errors import (
    BadSignatureError,
    ConfigurationError,
    SecureImportError,
)
from secure_urlimport.publish.signing import SigningError, parse_duration, sign_tree

K1 = PrivateKey.from_seed(bytes([0x11]) * 32)
K2 = PrivateKey.from_seed(bytes([0x22]) * 32)
STRANGER = PrivateKey.from_seed(bytes([0xEE]) * 32)

SIGNED_AT = datetime(2031, 5, 17, 12, 0, 0, tzinfo=UTC)
CHECK_AT = SIGNED_AT + timedelta(hours=1)

TREE: dict[str, bytes] = {
    "top.py": b"X = 1\n",
    "pkg/__init__.py": b"",
    "pkg/mod.py": b"def f():\n    return 1\n",
    "pkg/sub/__init__.py": b"# sub\n",
    "pkg/data/table.json": b'{"a": 1}\n',
    "pkg/data/blob.bin": bytes(range(256)),
    "README.txt": b"read me\n",
    "my-data/notes.txt": b"a data file may live in any directory\n",
    "sub/secure-urlimport.manifest": b"only the root manifest is special\n",
}

NEVER_SIGNED: dict[str, bytes] = {
    "__pycache__/top.cpython-311.pyc": b"\x00bytecode",
    "pkg/__pycache__/mod.cpython-311.pyc": b"\x00bytecode",
    ".hidden": b"secret\n",
    "pkg/.hidden.py": b"raise SystemExit\n",
    ".git/config": b"[core]\n",
    "pkg/.cache/x.py": b"x = 1\n",
}


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def pinned(*keys: PrivateKey, threshold: int = 1) -> TrustedKeys:
    return TrustedKeys.from_arg([k.public for k in keys], threshold)


def read_manifest(root: Path, trusted: TrustedKeys | None = None, now: datetime = CHECK_AT):
    data = (root / MANIFEST_NAME).read_bytes()
    return verify_manifest(data, trusted or pinned(K1), now=now, previous=None, url=str(root))


def leftovers(root: Path) -> list[str]:
    """Temporary files a signing run may have left in *root*."""
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree", TREE)


# --------------------------------------------------------------------------- what is signed


def test_signs_every_python_and_data_file(tree: Path) -> None:
    write_tree(tree, NEVER_SIGNED)
    result = sign_tree(tree, [K1], now=SIGNED_AT)
    manifest = read_manifest(tree)
    assert set(manifest.files) == set(TREE)
    assert result.files == len(TREE)
    assert result.manifest_path == tree / MANIFEST_NAME
    for rel, entry in manifest.files.items():
        verify_file(entry, (tree / rel).read_bytes(), manifest, pinned(K1), url=rel)


def test_manifest_itself_is_never_signed(tree: Path) -> None:
    sign_tree(tree, [K1], now=SIGNED_AT)
    sign_tree(tree, [K1], now=SIGNED_AT)
    assert MANIFEST_NAME not in read_manifest(tree).files


def test_empty_tree_signs_an_empty_manifest(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert sign_tree(root, [K1], now=SIGNED_AT).files == 0
    assert dict(read_manifest(root).files) == {}


def test_every_key_signs_every_file(tree: Path) -> None:
    sign_tree(tree, [K1, K2], now=SIGNED_AT)
    both = pinned(K1, K2, threshold=2)
    manifest = read_manifest(tree, both)
    for rel, entry in manifest.files.items():
        assert set(entry.signatures) == {K1.keyid, K2.keyid}
        verify_file(entry, (tree / rel).read_bytes(), manifest, both, url=rel)


def test_signing_without_a_key_is_a_configuration_error(tree: Path) -> None:
    with pytest.raises(ConfigurationError):
        sign_tree(tree, [])


def test_signing_something_that_is_not_a_directory_is_refused(tree: Path) -> None:
    with pytest.raises(SigningError):
        sign_tree(tree / "top.py", [K1])
    with pytest.raises(SigningError):
        sign_tree(tree / "absent", [K1])


def test_expiry_defaults_to_90_days_and_follows_expires_in(tree: Path) -> None:
    assert sign_tree(tree, [K1], now=SIGNED_AT).expires == SIGNED_AT + timedelta(days=90)
    result = sign_tree(tree, [K1], now=SIGNED_AT, expires_in=timedelta(hours=12))
    assert result.expires == SIGNED_AT + timedelta(hours=12)
    assert read_manifest(tree).expires == result.expires


# --------------------------------------------------------------------------- refusals


def _refused(root: Path) -> SigningError:
    with pytest.raises(SigningError) as info:
        sign_tree(root, [K1], now=SIGNED_AT)
    assert not (root / MANIFEST_NAME).exists()
    assert leftovers(root) == []
    assert info.value.problems
    return info.value


def test_symlinked_file_is_refused(tree: Path) -> None:
    (tree / "link.py").symlink_to(tree / "top.py")
    error = _refused(tree)
    assert error.problems == ["link.py: symlink (publish real files only)"]


def test_symlink_pointing_outside_the_tree_is_refused(tree: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    (tree / "pkg" / "leak.txt").symlink_to(secret)
    assert [p.split(":")[0] for p in _refused(tree).problems] == ["pkg/leak.txt"]


def test_dangling_symlink_is_refused(tree: Path) -> None:
    (tree / "gone.py").symlink_to(tree / "does-not-exist.py")
    assert [p.split(":")[0] for p in _refused(tree).problems] == ["gone.py"]


def test_symlinked_directory_is_refused(tree: Path) -> None:
    (tree / "pkg2").symlink_to(tree / "pkg", target_is_directory=True)
    error = _refused(tree)
    assert error.problems == ["pkg2: symlink (publish real files only)"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_is_refused(tree: Path) -> None:
    os.mkfifo(tree / "pkg" / "pipe")
    error = _refused(tree)
    assert error.problems == ["pkg/pipe: not a regular file"]


DATA_PY = ["my-pkg/mod.py", "tools/hook-foo.py", "pkg/data/my-script.py", "pkg/2to3.py"]


def test_python_files_no_import_can_name_are_signed_as_data(tree: Path) -> None:
    # What real wheels hold (numpy's _pyinstaller/hook-numpy.py): files that
    # tools read by path.  Signed like any data file; the finder never maps a
    # module name onto them (tests/test_data_py.py).
    write_tree(tree, dict.fromkeys(DATA_PY, b"x = 1\n"))
    sign_tree(tree, [K1], now=SIGNED_AT)
    manifest = read_manifest(tree)
    for rel in DATA_PY:
        verify_file(manifest.files[rel], b"x = 1\n", manifest, pinned(K1), url=rel)


@pytest.mark.parametrize("name", ["\uff4dod.py", "m\u043ed.py", "caf\u00e9/mod.py"])
def test_non_ascii_module_name_is_refused(tree: Path, name: str) -> None:
    # The twin: Python would import these from a directory, this importer never
    # does (look-alike letters), so they are refused rather than signed as data.
    write_tree(tree, {name: b"x = 1\n"})
    error = _refused(tree)
    assert [p.split(":")[0] for p in error.problems] == [name]
    assert "module name is not ASCII" in error.problems[0]


@pytest.mark.parametrize(
    "name",
    ["x\\..\\..\\evil.txt", "a\u2029b.txt", "a\u2028b.txt", "a\x85b.txt", "a\u200bb.txt"],
    ids=[
        "backslash-traversal",
        "paragraph-separator",
        "line-separator",
        "c1-control",
        "zero-width-space",
    ],
)
def test_data_file_name_that_another_system_reads_differently_is_refused(
    tree: Path, name: str
) -> None:
    # One real file, legal on Linux, whose name a Windows client splits at the
    # backslashes (x/../../evil.txt) or a terminal shows as two lines.  Not
    # .py, so only the backslash / control-character rule can refuse it.
    (tree / name).write_bytes(b"data\n")
    [problem] = _refused(tree).problems
    reason = "backslash in path" if "\\" in name else "control or format character in path"
    assert problem.startswith(name) and problem.endswith(reason)


def _case_sensitive(directory: Path) -> bool:
    (directory / "probe").write_text("")
    sensitive = not (directory / "PROBE").exists()
    (directory / "probe").unlink()
    return sensitive


def test_case_fold_collision_is_refused(tree: Path) -> None:
    if not _case_sensitive(tree):
        pytest.skip("the file system folds case: A.py and a.py cannot both exist")
    write_tree(tree, {"A.py": b"x = 1\n", "a.py": b"x = 2\n"})
    error = _refused(tree)
    assert error.problems == ["a.py: differs from 'A.py' only in case"]


def test_every_problem_is_listed_at_once(tree: Path) -> None:
    (tree / "link.py").symlink_to(tree / "top.py")
    (tree / "linkdir").symlink_to(tree / "pkg", target_is_directory=True)
    write_tree(tree, {"\uff4dod.py": b"x = 1\n"})
    expected = {"link.py", "linkdir", "\uff4dod.py"}
    if hasattr(os, "mkfifo"):
        os.mkfifo(tree / "fifo")
        expected.add("fifo")
    if _case_sensitive(tree):
        write_tree(tree, {"Top.py": b"x = 2\n"})
        expected.add("top.py")
    error = _refused(tree)
    assert {p.split(":")[0] for p in error.problems} == expected
    assert len(error.problems) == len(expected)
    assert f"{len(expected)} problem(s)" in str(error)


def test_refusal_leaves_the_previous_manifest_untouched(tree: Path) -> None:
    sign_tree(tree, [K1], now=SIGNED_AT)
    before = (tree / MANIFEST_NAME).read_bytes()
    (tree / "link.py").symlink_to(tree / "top.py")
    with pytest.raises(SigningError):
        sign_tree(tree, [K1], now=SIGNED_AT + timedelta(days=1))
    assert (tree / MANIFEST_NAME).read_bytes() == before
    assert leftovers(tree) == []


def test_hidden_entries_are_skipped_even_when_they_are_symlinks(tree: Path) -> None:
    (tree / ".link").symlink_to(tree / "top.py")
    (tree / ".linkdir").symlink_to(tree / "pkg", target_is_directory=True)
    assert sign_tree(tree, [K1], now=SIGNED_AT).files == len(TREE)


def test_unreadable_directory_is_reported_not_skipped(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root, chmod 000 does not stop reads, so simulate the denied listing.
    real_scandir = os.scandir
    hidden = tree / "pkg" / "sub"

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if Path(os.fsdecode(path)) == hidden:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    try:
        sign_tree(tree, [K1], now=SIGNED_AT)
    except SigningError as error:
        assert any(p.startswith("pkg/sub") for p in error.problems), error.problems
        assert not (tree / MANIFEST_NAME).exists()
        return
    assert "pkg/sub/__init__.py" in read_manifest(tree).files, (
        "pkg/sub could not be listed and was silently left out of the signed tree"
    )


# --------------------------------------------------------------------------- versions


def test_versions_count_up_from_one(tree: Path) -> None:
    assert sign_tree(tree, [K1], now=SIGNED_AT).version == 1
    assert read_manifest(tree).version == 1
    assert sign_tree(tree, [K1], now=SIGNED_AT).version == 2
    assert read_manifest(tree).version == 2


@pytest.mark.parametrize("requested", [1, 4, 5])
def test_explicit_version_not_above_current_is_refused(tree: Path, requested: int) -> None:
    sign_tree(tree, [K1], version=5, now=SIGNED_AT)
    before = (tree / MANIFEST_NAME).read_bytes()
    with pytest.raises(SigningError, match="not newer"):
        sign_tree(tree, [K1], version=requested, now=SIGNED_AT)
    assert (tree / MANIFEST_NAME).read_bytes() == before


def test_explicit_higher_version_is_used_and_continued(tree: Path) -> None:
    sign_tree(tree, [K1], now=SIGNED_AT)
    assert sign_tree(tree, [K1], version=10, now=SIGNED_AT).version == 10
    assert read_manifest(tree).version == 10
    assert sign_tree(tree, [K1], now=SIGNED_AT).version == 11


@pytest.mark.parametrize("requested", [0, -1])
def test_version_below_one_is_a_configuration_error(tree: Path, requested: int) -> None:
    with pytest.raises(ConfigurationError):
        sign_tree(tree, [K1], version=requested, now=SIGNED_AT)
    assert not (tree / MANIFEST_NAME).exists()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"garbage", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(b"secure-urlimport-manifest v1\nsignature k AAAA\n\n{}", id="no-version"),
        pytest.param(
            b'secure-urlimport-manifest v1\nsignature k AAAA\n\n{"version": 3}', id="partial"
        ),
    ],
)
def test_corrupt_existing_manifest_is_refused_with_a_hint(tree: Path, content: bytes) -> None:
    (tree / MANIFEST_NAME).write_bytes(content)
    with pytest.raises(SigningError, match="--version"):
        sign_tree(tree, [K1], now=SIGNED_AT)
    assert (tree / MANIFEST_NAME).read_bytes() == content


def test_corrupt_existing_manifest_with_explicit_version_signs(tree: Path) -> None:
    (tree / MANIFEST_NAME).write_bytes(b"garbage")
    assert sign_tree(tree, [K1], version=7, now=SIGNED_AT).version == 7
    assert read_manifest(tree).version == 7


def test_corrupt_existing_manifest_with_huge_number_is_refused_with_a_hint(tree: Path) -> None:
    body = b'{"version": ' + b"9" * 5000 + b"}"
    (tree / MANIFEST_NAME).write_bytes(b"secure-urlimport-manifest v1\nsignature k AAAA\n\n" + body)
    with pytest.raises(SigningError, match="--version"):
        sign_tree(tree, [K1], now=SIGNED_AT)


def test_version_beyond_the_format_maximum_is_refused(tree: Path) -> None:
    with pytest.raises(SecureImportError):
        sign_tree(tree, [K1], version=2**63, now=SIGNED_AT)
    assert not (tree / MANIFEST_NAME).exists()


def test_highest_version_is_signed_and_verifies(tree: Path) -> None:
    signed = sign_tree(tree, [K1], version=2**63 - 1, now=SIGNED_AT, allow_version_jump=True)
    assert signed.version == 2**63 - 1
    assert read_manifest(tree).version == 2**63 - 1


# --------------------------------------------------------------------------- atomic write


def test_failed_replace_keeps_the_previous_manifest_intact(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_tree(tree, [K1], now=SIGNED_AT)
    before = (tree / MANIFEST_NAME).read_bytes()
    (tree / "top.py").write_bytes(b"X = 2\n")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", refuse)
        with pytest.raises(OSError, match="No space left"):
            sign_tree(tree, [K1], now=SIGNED_AT + timedelta(days=1))
    assert (tree / MANIFEST_NAME).read_bytes() == before
    assert sorted(p.name for p in tree.iterdir() if p.name.startswith(".")) == []
    assert read_manifest(tree).version == 1


def test_failed_fsync_keeps_the_previous_manifest_intact(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_tree(tree, [K1], now=SIGNED_AT)
    before = (tree / MANIFEST_NAME).read_bytes()

    def refuse(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", refuse)
        with pytest.raises(OSError, match="Input/output"):
            sign_tree(tree, [K1], now=SIGNED_AT)
    assert (tree / MANIFEST_NAME).read_bytes() == before
    assert leftovers(tree) == []


def test_written_manifest_is_world_readable(tree: Path) -> None:
    sign_tree(tree, [K1], now=SIGNED_AT)
    assert (tree / MANIFEST_NAME).stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- parse_duration


def _text_id(value: object) -> str | None:
    # No backslashes, spaces or empty ids: mutmut passes test ids back to
    # pytest, and an id it cannot find counts as a killed mutant.
    if not isinstance(value, str):
        return None
    return (
        "".join(
            ch if ch.isascii() and ch.isprintable() and ch not in " \\" else "~" for ch in value
        )
        or "empty"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30s", timedelta(seconds=30)),
        ("45m", timedelta(minutes=45)),
        ("2w", timedelta(weeks=2)),
        ("1s", timedelta(seconds=1)),
        (" 7d\n", timedelta(days=7)),
        ("007d", timedelta(days=7)),
    ],
    ids=_text_id,
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0d",
        "0s",
        "10",
        "d",
        "-1d",
        "+1d",
        "1y",
        "",
        " ",
        "1.5d",
        "1D",
        "1 d",
        "1dd",
        "1d2h",
        "1000000000d",
    ],
    ids=_text_id,
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["999999999w", "99999999d"])
def test_absurd_expiry_is_a_configuration_error(tree: Path, text: str) -> None:
    with pytest.raises(ConfigurationError):
        sign_tree(tree, [K1], expires_in=parse_duration(text), now=SIGNED_AT)


# --------------------------------------------------------------------------- speed


def test_signing_2000_small_files_is_fast(tmp_path: Path) -> None:
    root = tmp_path / "big"
    for i in range(2000):
        path = root / f"pkg{i % 40}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"VALUE = %d\n" % i)
    start = time.perf_counter()
    result = sign_tree(root, [K1], now=SIGNED_AT)
    elapsed = time.perf_counter() - start
    print(f"signed {result.files} files in {elapsed:.3f} s: {result.files / elapsed:.0f} files/s")
    assert result.files == 2000
    assert elapsed < 2.0


# --------------------------------------------------------------------------- audit_directory


def test_audit_of_a_clean_tree_is_ok(tree: Path) -> None:
    from secure_urlimport.gate.audit import audit_directory

    sign_tree(tree, [K1], now=SIGNED_AT)
    report = audit_directory(tree, pinned(K1), now=CHECK_AT)
    assert report.ok, report.problems
    assert report.version == 1
    assert report.files_checked == len(TREE)
    assert "OK" in report.summary()
    assert report.to_json()["ok"] is True


def test_audit_reports_every_kind_of_problem_together(tree: Path) -> None:
    from secure_urlimport.gate.audit import audit_directory

    signed_at = datetime(2020, 1, 1, tzinfo=UTC)
    sign_tree(tree, [K1], now=signed_at)  # expired by now
    (tree / "pkg" / "mod.py").write_bytes(b"def f():\n    return 2\n")  # tampered
    (tree / "extra.py").write_bytes(b"import os\n")  # unsigned
    (tree / "README.txt").unlink()  # missing
    (tree / "link.py").symlink_to(tree / "top.py")  # unpublishable
    report = audit_directory(tree, pinned(K1), now=datetime.now(UTC))
    found = {(p.kind, p.path) for p in report.problems}
    assert found == {
        ("stale", MANIFEST_NAME),
        ("tampered", "pkg/mod.py"),
        ("unsigned", "extra.py"),
        ("missing", "README.txt"),
        ("unpublishable", "link.py"),
    }
    assert not report.ok
    assert report.version == 1
    summary = report.summary()
    for kind in ("stale", "tampered", "unsigned", "missing", "unpublishable"):
        assert kind in summary
    doc = report.to_json()
    assert doc["ok"] is False and len(doc["problems"]) == 5
    json.dumps(doc)


def test_audit_reports_a_file_signature_from_another_release(tree: Path) -> None:
    # Mix-and-match on disk: the manifest (validly re-signed) carries mod.py's
    # signature from version 1 in a version 2 tree.
    from secure_urlimport.gate.audit import audit_directory

    sign_tree(tree, [K1], now=SIGNED_AT)
    v1 = json.loads(split_manifest_file((tree / MANIFEST_NAME).read_bytes()).body)
    sign_tree(tree, [K1], now=SIGNED_AT)
    v2 = json.loads(split_manifest_file((tree / MANIFEST_NAME).read_bytes()).body)
    assert v2["version"] == 2
    v2["files"]["pkg/mod.py"]["signatures"] = v1["files"]["pkg/mod.py"]["signatures"]
    body = json.dumps(v2).encode()
    (tree / MANIFEST_NAME).write_bytes(
        encode_manifest(body, [(K1.keyid, K1.sign(manifest_message(K1.keyid, body)))])
    )
    report = audit_directory(tree, pinned(K1), now=CHECK_AT)
    assert [(p.kind, p.path) for p in report.problems] == [("bad-signature", "pkg/mod.py")]

    manifest = read_manifest(tree)
    entry = manifest.files["pkg/mod.py"]
    with pytest.raises(BadSignatureError):
        verify_file(entry, (tree / "pkg/mod.py").read_bytes(), manifest, pinned(K1), url="x")
    sig = base64.b64decode(v1["files"]["pkg/mod.py"]["signatures"][K1.keyid])
    assert K1.public.verifies(
        sig, file_message(K1.keyid, 1, "pkg/mod.py", entry.sha256, entry.size)
    )


def test_audit_of_a_tree_signed_by_an_unpinned_key(tree: Path) -> None:
    from secure_urlimport.gate.audit import audit_directory

    sign_tree(tree, [STRANGER], now=SIGNED_AT)
    report = audit_directory(tree, pinned(K1), now=CHECK_AT)
    kinds = {p.kind for p in report.problems}
    assert "invalid-manifest" in kinds
    assert STRANGER.keyid in next(
        p.message for p in report.problems if p.kind == "invalid-manifest"
    )
    # Without a trusted manifest, every file on disk is unsigned.
    assert {p.path for p in report.problems if p.kind == "unsigned"} == set(TREE)


def test_audit_of_an_unsigned_tree(tree: Path) -> None:
    from secure_urlimport.gate.audit import audit_directory

    report = audit_directory(tree, pinned(K1), now=CHECK_AT)
    assert ("invalid-manifest", MANIFEST_NAME) in {(p.kind, p.path) for p in report.problems}
    assert {p.path for p in report.problems if p.kind == "unsigned"} == set(TREE)
    assert report.version is None
