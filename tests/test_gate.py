"""The CI gate as pipelines use it (docs/ci.md), through real subprocesses.

The text summary line, ``--format github`` annotations, the JSON schema,
progress on a terminal (a real pseudo-terminal) and never elsewhere,
``sign --check``, the pre-commit hook and the GitHub Actions example.  The
examples in docs/ci.md are run as written.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, TESTCODE, Signer, write_tree

from secure_urlimport._format.manifest import encode_manifest, manifest_message, split_manifest_file
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.gate.audit import PROBLEM_KINDS
from secure_urlimport.gate.output import escape_data, escape_property, one_line
from secure_urlimport.publish.keyfile import save_private_key
from secure_urlimport.publish.signcheck import CHANGE_KINDS

DOC = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
HOOKS = REPO / ".pre-commit-hooks.yaml"
LARGE = 250  # files: more than progress.MIN_FILES


def _env(**extra: str) -> dict[str, str]:
    drop = (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SECURE_URLIMPORT_PASSPHRASE",
        "GITHUB_WORKSPACE",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def cli(*args: str | Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_urlimport", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(**env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def with_terminal_stderr(*args: str | Path, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (exit code, stdout, terminal output)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "secure_urlimport", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=_env(),
            cwd=cwd,
        )
    finally:
        os.close(slave)
    terminal = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=120), stdout, terminal.decode()


# -- layouts -------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, publisher: Signer) -> Path:
    """A repository as docs/ci.md assumes: build/tree (signed, version 7), keys/publisher.pub."""
    repo = tmp_path / "repo"
    tree = repo / "build" / "tree"
    shutil.copytree(TESTCODE, tree, ignore=shutil.ignore_patterns("__pycache__"))
    publisher.sign(tree, version=7)
    (repo / "keys").mkdir()
    shutil.copy(publisher.pub, repo / "keys" / "publisher.pub")
    return repo


def tamper_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


def large_tree(root: Path, publisher: Signer) -> Path:
    write_tree(root, {f"pkg{i % 10}/mod{i}.py": f"VALUE = {i}\n" for i in range(LARGE)})
    for i in range(10):
        (root / f"pkg{i}" / "__init__.py").write_text("")
    publisher.sign(root)
    return root


def doc_block(marker: str) -> str:
    """The fenced code block of docs/ci.md that contains *marker*."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", DOC, re.MULTILINE | re.DOTALL)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, marker
    return found[0]


def doc_indented_lines() -> set[str]:
    return {line[4:] for line in DOC.splitlines() if line.startswith("    ")}


def normalize_expiry(line: str) -> str:
    return re.sub(r"expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "expires 2026-05-01T12:00:00Z", line)


# -- text: one summary line ----------------------------------------------------------


def test_text_output_ends_with_the_documented_summary_line(workspace: Path):
    result = cli("verify", "build/tree", "--pubkey", "keys/publisher.pub", cwd=workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "secure-urlimport verify: OK: 4 files checked, 0 problems; tree build/tree, version 7"
    ]
    assert result.stdout.splitlines()[0] in doc_indented_lines()
    assert re.match(_documented_regex("^secure-urlimport verify:"), result.stdout)


def test_text_output_lists_problems_then_a_summary_counting_them_by_kind(workspace: Path):
    tree = workspace / "build" / "tree"
    tamper_same_size(tree / "fib.py")
    write_tree(tree, {"grok/new.py": "x = 1\n"})
    result = cli("verify", "build/tree", "--pubkey", "keys/publisher.pub", cwd=workspace)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == (
        "secure-urlimport verify: FAILED: 4 files checked, 2 problems "
        "(1 tampered, 1 unsigned); tree build/tree, version 7"
    )
    assert set(lines) <= doc_indented_lines()  # the docs' example, verbatim
    match = re.match(_documented_regex("^secure-urlimport verify:"), lines[-1])
    assert match and match.group(1) == "FAILED" and match.group(3) == "2"


def _documented_regex(prefix: str) -> str:
    found = [line for line in doc_indented_lines() if line.startswith(prefix)]
    assert len(found) == 1
    return found[0]


def test_text_summary_without_a_trusted_manifest_has_no_version(workspace: Path):
    (workspace / "build" / "tree" / MANIFEST_NAME).unlink()
    result = cli("verify", "build/tree", "--pubkey", "keys/publisher.pub", cwd=workspace)
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("invalid-manifest: secure-urlimport.manifest: cannot read")
    assert "secure-urlimport sign build/tree --key KEY" in first  # says what to do
    assert result.stdout.splitlines()[-1] == (
        "secure-urlimport verify: FAILED: 0 files checked, 5 problems "
        "(1 invalid-manifest, 4 unsigned); tree build/tree"
    )


def test_text_output_keeps_each_problem_on_one_line(workspace: Path):
    write_tree(workspace / "build" / "tree", {"data/bad\nname\x1b[31m.txt": "x"})
    result = cli("verify", "build/tree", "--pubkey", "keys/publisher.pub", cwd=workspace)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        "unpublishable: data/bad\\nname\\x1b[31m.txt: control or format character"
    )
    assert "\x1b" not in result.stdout
    assert len(result.stdout.splitlines()) == 2
    assert one_line("a\nb\x1bc\u200bd é") == "a\\nb\\x1bc\\u200bd é"


# -- github ------------------------------------------------------------------------


def test_github_format_clean_tree_prints_only_the_summary(workspace: Path):
    result = cli(
        "verify",
        "build/tree",
        "--pubkey",
        "keys/publisher.pub",
        "--format",
        "github",
        cwd=workspace,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::" not in result.stdout
    assert result.stdout.splitlines() == [
        "secure-urlimport verify: OK: 4 files checked, 0 problems; tree build/tree, version 7"
    ]


def test_github_format_annotates_each_problem_on_its_file(workspace: Path):
    tree = workspace / "build" / "tree"
    tamper_same_size(tree / "fib.py")
    result = cli(
        "verify",
        "build/tree",
        "--pubkey",
        "keys/publisher.pub",
        "--format",
        "github",
        cwd=workspace,
    )
    assert result.returncode == 1
    assert set(result.stdout.splitlines()) <= doc_indented_lines()  # the docs' example
    (tree / "spam.py").unlink()
    write_tree(tree, {"grok/new.py": "x = 1\n"})
    # An absolute TARGET still gives paths relative to the working directory.
    result = cli(
        "verify", tree, "--pubkey", "keys/publisher.pub", "--format", "github", cwd=workspace
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    errors = sorted(
        re.findall(
            r"^::error file=([^,]*),title=secure-urlimport ([\w-]+)::", result.stdout, re.MULTILINE
        )
    )
    assert errors == [
        ("build/tree/fib.py", "tampered"),
        ("build/tree/grok/new.py", "unsigned"),
        ("build/tree/spam.py", "missing"),
    ]
    assert lines[-1].startswith("secure-urlimport verify: FAILED: 3 files checked, 3 problems")


def test_github_file_is_relative_to_github_workspace(workspace: Path, tmp_path: Path):
    tamper_same_size(workspace / "build" / "tree" / "fib.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tree = workspace / "build" / "tree"
    inside = cli(
        "verify",
        tree,
        "--pubkey",
        workspace / "keys" / "publisher.pub",
        "--format",
        "github",
        cwd=elsewhere,
        GITHUB_WORKSPACE=str(workspace),
    )
    assert inside.returncode == 1
    assert inside.stdout.startswith(
        "::error file=build/tree/fib.py,title=secure-urlimport tampered::"
    )
    outside = cli(
        "verify",
        tree,
        "--pubkey",
        workspace / "keys" / "publisher.pub",
        "--format",
        "github",
        cwd=elsewhere,
        GITHUB_WORKSPACE=str(elsewhere),
    )
    assert outside.returncode == 1
    assert outside.stdout.startswith(f"::error file={escape_property(str(tree / 'fib.py'))},title=")


def test_github_annotation_escapes_file_and_message(workspace: Path):
    tree = workspace / "build" / "tree"
    write_tree(tree, {"data/100%,a:b\nc.txt": "x"})
    result = cli(
        "verify",
        "build/tree",
        "--pubkey",
        "keys/publisher.pub",
        "--format",
        "github",
        cwd=workspace,
    )
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith(
        "::error file=build/tree/data/100%25%2Ca%3Ab%0Ac.txt,"
        "title=secure-urlimport unpublishable::control or format character"
    )
    assert len(result.stdout.splitlines()) == 2  # one annotation, one summary


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("plain", "plain", "plain"),
        ("50% done", "50%25 done", "50%25 done"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("x: y, z", "x: y, z", "x%3A y%2C z"),
        ("%0A", "%250A", "%250A"),
    ],
)
def test_workflow_command_escaping(text: str, data: str, prop: str):
    assert escape_data(text) == data
    assert escape_property(text) == prop


def test_github_format_for_an_https_tree_names_urls_without_file(workspace: Path, serve, tls):
    tree = workspace / "build" / "tree"
    server = serve(tree)
    pub = workspace / "keys" / "publisher.pub"
    ok = cli("verify", server.url, "--pubkey", pub, "--cafile", tls.cafile, "--format", "github")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines() == [
        f"secure-urlimport verify: OK: 4 files checked, 0 problems; tree {server.url}, version 7"
    ]
    tamper_same_size(tree / "grok" / "blah.py")
    (tree / "spam.py").unlink()
    bad = cli("verify", server.url, "--pubkey", pub, "--cafile", tls.cafile, "--format", "github")
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert "file=" not in bad.stdout
    assert (
        f"::error title=secure-urlimport tampered::{server.url}/grok/blah.py does not match"
        in bad.stdout
    )
    missing = next(line for line in lines if "missing" in line)
    assert missing.startswith("::error title=secure-urlimport missing::")
    assert f"{server.url}/spam.py" in missing
    assert lines[-1].startswith("secure-urlimport verify: FAILED: 3 files checked, 2 problems")


def test_unreachable_server_is_a_problem_of_the_tree_not_a_usage_error(workspace: Path):
    result = cli(
        "verify",
        "https://127.0.0.1:1/tree",
        "--pubkey",
        "keys/publisher.pub",
        "--format",
        "github",
        cwd=workspace,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("::error title=secure-urlimport invalid-manifest::")
    assert "https://127.0.0.1:1/tree/secure-urlimport.manifest" in result.stdout.splitlines()[0]


def test_github_format_usage_errors_still_exit_2(workspace: Path):
    result = cli(
        "verify",
        "build/nope",
        "--pubkey",
        "keys/publisher.pub",
        "--format",
        "github",
        cwd=workspace,
    )
    assert result.returncode == 2
    assert "give the signed tree's directory or its https:// URL" in result.stderr
    bad_pub = workspace / "keys" / "bad.pub"
    bad_pub.write_text("not a key\n")
    assert (
        cli(
            "verify", "build/tree", "--pubkey", bad_pub, "--format", "github", cwd=workspace
        ).returncode
        == 2
    )


# -- json: the documented schema -------------------------------------------------------


def _doc_table(header: str) -> dict[str, str]:
    """``{name: second column}`` of the docs table whose header row starts with *header*."""
    start = DOC.index(header)
    rows = {}
    for line in DOC[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    return rows


_TYPES = {
    "integer": (int,),
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "integer or null": (int, type(None)),
}


def _check_against_doc(doc: dict[str, object]) -> None:
    fields = _doc_table("| field | type |")
    top = {k: v for k, v in fields.items() if not k.startswith("problems[]")}
    assert list(doc) == list(top)
    for name, type_name in top.items():
        assert isinstance(doc[name], _TYPES[type_name]), name
    assert not isinstance(doc["files_checked"], bool)
    item_fields = {
        k.removeprefix("problems[]."): v for k, v in fields.items() if k.startswith("problems[]")
    }
    problems = doc["problems"]
    assert isinstance(problems, list)
    for problem in problems:
        assert list(problem) == list(item_fields)
        assert all(isinstance(problem[k], str) for k in item_fields)
        assert problem["kind"] in PROBLEM_KINDS


def test_json_output_matches_the_documented_schema(workspace: Path):
    ok = cli(
        "verify", "build/tree", "--pubkey", "keys/publisher.pub", "--format", "json", cwd=workspace
    )
    assert ok.returncode == 0
    doc = json.loads(ok.stdout)
    _check_against_doc(doc)
    assert doc == {
        "schema": 1,
        "target": "build/tree",
        "ok": True,
        "version": 7,
        "files_checked": 4,
        "problems": [],
    }
    example = json.loads(doc_block('"schema": 1'))
    assert list(example) == list(doc)


def test_json_output_with_problems_matches_the_documented_schema(workspace: Path):
    tree = workspace / "build" / "tree"
    (tree / MANIFEST_NAME).write_bytes(b"garbage")
    result = cli(
        "verify", "build/tree", "--pubkey", "keys/publisher.pub", "--format", "json", cwd=workspace
    )
    assert result.returncode == 1
    doc = json.loads(result.stdout)  # stdout is the document and nothing else
    _check_against_doc(doc)
    assert doc["ok"] is False and doc["version"] is None and doc["files_checked"] == 0
    assert doc["problems"][0]["kind"] == "invalid-manifest"
    assert doc["problems"][0]["path"] == MANIFEST_NAME


def test_documented_kinds_are_the_kinds_reported():
    assert set(_doc_table("| kind | meaning |\n| --- | --- |\n| `invalid-manifest`")) == set(
        PROBLEM_KINDS
    )
    assert set(_doc_table("| kind | meaning |\n| --- | --- |\n| `added`")) == set(CHANGE_KINDS)


# -- progress: on a terminal only ------------------------------------------------------


def test_verify_shows_progress_on_a_terminal_for_a_large_tree(tmp_path: Path, publisher: Signer):
    root = large_tree(tmp_path / "big", publisher)
    code, stdout, terminal = with_terminal_stderr(
        "verify", root, "--pubkey", publisher.pub, "--format", "json"
    )
    assert code == 0, stdout + terminal
    assert f"\rsecure-urlimport verify: {LARGE + 10}/{LARGE + 10} files" in terminal
    assert terminal.endswith("\r")  # the line is erased before the results
    assert "\r" not in stdout
    assert json.loads(stdout)["files_checked"] == LARGE + 10


def test_verify_shows_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path, publisher: Signer):
    root = large_tree(tmp_path / "big", publisher)
    result = cli("verify", root, "--pubkey", publisher.pub)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "\r" not in result.stdout and "files checked" in result.stdout


def test_no_progress_on_a_terminal_for_a_small_tree(workspace: Path):
    code, stdout, terminal = with_terminal_stderr(
        "verify",
        "build/tree",
        "--pubkey",
        "keys/publisher.pub",
        "--format",
        "github",
        cwd=workspace,
    )
    assert code == 0
    assert terminal == ""
    assert stdout.startswith("secure-urlimport verify: OK")


def test_sign_and_sign_check_show_progress_on_a_terminal(tmp_path: Path, publisher: Signer):
    root = large_tree(tmp_path / "big", publisher)
    key = tmp_path / "publisher.key"
    save_private_key(publisher.key, key, None)
    code, stdout, terminal = with_terminal_stderr("sign", root, "--key", key)
    assert code == 0, stdout + terminal
    assert f"\rsecure-urlimport sign: {LARGE + 10}/{LARGE + 10} files" in terminal
    assert stdout.startswith(f"signed {LARGE + 10} file(s)")
    code, stdout, terminal = with_terminal_stderr("sign", "--check", root, "--key", key)
    assert code == 0, stdout + terminal
    assert f"\rsecure-urlimport sign --check: {LARGE + 10}/{LARGE + 10} files" in terminal
    assert "\r" not in stdout


def test_sign_and_sign_check_show_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, publisher: Signer
):
    root = large_tree(tmp_path / "big", publisher)
    key = tmp_path / "publisher.key"
    save_private_key(publisher.key, key, None)
    signed = cli("sign", root, "--key", key)
    assert signed.returncode == 0 and signed.stderr == ""
    checked = cli("sign", "--check", root, "--key", key)
    assert checked.returncode == 0 and checked.stderr == ""


# -- sign --check ---------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry under *root* (hidden temp files included) with bytes and mtime."""
    return {
        p.relative_to(root).as_posix(): (
            p.read_bytes() if p.is_file() else b"",
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def encrypted_key(tmp_path: Path, publisher: Signer) -> Path:
    path = tmp_path / "publisher.key"
    save_private_key(publisher.key, path, b"a passphrase nobody will type")
    return path


def test_sign_check_up_to_date_exits_0_without_passphrase_and_writes_nothing(
    workspace: Path, encrypted_key: Path
):
    tree = workspace / "build" / "tree"
    before = _snapshot(workspace)
    # No SECURE_URLIMPORT_PASSPHRASE and no terminal: decrypting would fail.
    by_key = cli("sign", "--check", "build/tree", "--key", encrypted_key, cwd=workspace)
    assert by_key.returncode == 0, by_key.stdout + by_key.stderr
    assert [normalize_expiry(line) for line in by_key.stdout.splitlines()] == [
        "secure-urlimport sign --check: UP TO DATE: tree build/tree, version 7, 4 files, "
        "expires 2026-05-01T12:00:00Z; signatures not checked (give --pubkey to check them)"
    ]
    by_pub = cli("sign", "--check", "build/tree", "--pubkey", "keys/publisher.pub", cwd=workspace)
    assert by_pub.returncode == 0, by_pub.stdout + by_pub.stderr
    assert normalize_expiry(by_pub.stdout.strip()) in doc_indented_lines()
    assert by_pub.stderr == by_key.stderr == ""
    assert _snapshot(workspace) == before
    assert not [p for p in tree.rglob(".*")]  # no temporary file left behind


def test_sign_check_lists_added_removed_changed_exits_1_and_writes_nothing(
    workspace: Path, encrypted_key: Path
):
    tree = workspace / "build" / "tree"
    tamper_same_size(tree / "fib.py")
    (tree / "spam.py").unlink()
    write_tree(tree, {"grok/new.py": "x = 1\n"})
    before = _snapshot(workspace)
    result = cli("sign", "--check", "build/tree", "--key", encrypted_key, cwd=workspace)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == [
        "added: grok/new.py: not in the manifest; signing would add it",
        "removed: spam.py: in the manifest but not in the tree; signing would drop it",
        "changed: fib.py: differs from the manifest (size or SHA-256); "
        "signing would sign the new content",
        "secure-urlimport sign --check: WOULD CHANGE: 3 changes (1 added, 1 changed, 1 removed); "
        "tree build/tree, version 7; to update it: secure-urlimport sign build/tree --key KEY",
    ]
    assert set(lines) <= doc_indented_lines()  # the docs' example, verbatim
    assert re.match(_documented_regex("^secure-urlimport sign --check:"), lines[-1])
    assert _snapshot(workspace) == before


def test_sign_check_reports_an_expired_manifest(tmp_path: Path, publisher: Signer):
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n"})
    publisher.sign(root, now=datetime(2020, 1, 1, tzinfo=UTC))
    result = cli("sign", "--check", root, "--pubkey", publisher.pub)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"expired: {MANIFEST_NAME}: expired at 2020-03-31T00:00:00Z; signing renews it"
    )
    assert "WOULD CHANGE: 1 change (1 expired)" in result.stdout


def test_sign_check_reports_other_signers_and_another_name(
    tmp_path: Path, publisher: Signer, stranger: Signer
):
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n"})
    stranger.sign(root, name="other")
    result = cli("sign", "--check", root, "--pubkey", publisher.pub)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:2] == [
        f"signers: {MANIFEST_NAME}: signed by {stranger.key.keyid}; "
        f"signing would sign with {publisher.key.keyid}",
        f"name: {MANIFEST_NAME}: the manifest names the tree 'other'; signing would name it 'tree'",
    ]
    same = cli("sign", "--check", root, "--pubkey", stranger.pub, "--name", "other")
    assert same.returncode == 0, same.stdout


def test_sign_check_with_pubkey_finds_an_edited_manifest_that_key_ids_cannot(
    tmp_path: Path, publisher: Signer, encrypted_key: Path
):
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n"})
    publisher.sign(root)
    path = root / MANIFEST_NAME
    signed = split_manifest_file(path.read_bytes())
    body = signed.body.replace(b'"version": 1', b'"version":  1')  # same values
    assert body != signed.body
    path.write_bytes(encode_manifest(body, signed.signatures))
    by_pub = cli("sign", "--check", root, "--pubkey", publisher.pub)
    assert by_pub.returncode == 1
    assert by_pub.stdout.startswith(
        f"bad-signature: {MANIFEST_NAME}: the signature by key {publisher.key.keyid} "
        "does not verify"
    )
    # Key ids alone cannot see it, and the summary says so.
    by_key = cli("sign", "--check", root, "--key", encrypted_key)
    assert by_key.returncode == 0
    assert "signatures not checked (give --pubkey to check them)" in by_key.stdout


def test_sign_check_with_pubkey_finds_a_file_signature_from_another_release(
    tmp_path: Path, publisher: Signer
):
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n", "other.py": "y = 2\n"})
    publisher.sign(root)
    v1 = json.loads(split_manifest_file((root / MANIFEST_NAME).read_bytes()).body)
    publisher.sign(root)
    v2 = json.loads(split_manifest_file((root / MANIFEST_NAME).read_bytes()).body)
    v2["files"]["mod.py"]["signatures"] = v1["files"]["mod.py"]["signatures"]
    body = json.dumps(v2).encode()
    keyid = publisher.key.keyid
    (root / MANIFEST_NAME).write_bytes(
        encode_manifest(body, [(keyid, publisher.key.sign(manifest_message(keyid, body)))])
    )
    result = cli("sign", "--check", root, "--pubkey", publisher.pub)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"bad-signature: mod.py: no valid signature by key {keyid} for version 2; "
        "signing would sign it again"
    )
    assert "other.py" not in result.stdout


def test_sign_check_of_an_unsigned_tree_lists_every_file(tmp_path: Path, publisher: Signer):
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n", "pkg/__init__.py": ""})
    result = cli("sign", "--check", root, "--pubkey", publisher.pub)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:3] == [
        f"manifest: {MANIFEST_NAME}: no manifest yet; signing would create one",
        "added: mod.py: signing would add it",
        "added: pkg/__init__.py: signing would add it",
    ]
    assert not (root / MANIFEST_NAME).exists()


def test_sign_check_of_an_unsignable_tree_exits_1(tmp_path: Path, publisher: Signer):
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n"})
    publisher.sign(root)
    (root / "link.py").symlink_to(root / "mod.py")
    result = cli("sign", "--check", root, "--pubkey", publisher.pub)
    assert result.returncode == 1
    assert result.stdout.startswith("unpublishable: link.py: symlink")


def test_sign_check_usage_errors_exit_2(workspace: Path, encrypted_key: Path):
    def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return cli("sign", "--check", *args, cwd=workspace)

    no_key = check("build/tree")
    assert no_key.returncode == 2 and "--key KEY" in no_key.stderr
    for extra in (["--version", "9"], ["--expires", "1d"]):
        refused = check("build/tree", "--key", encrypted_key, *extra)
        assert refused.returncode == 2 and "no effect with --check" in refused.stderr
    not_dir = check("build/nope", "--key", encrypted_key)
    assert not_dir.returncode == 2 and "is not a directory" in not_dir.stderr
    (workspace / "keys" / "bad.pub").write_text("not a key\n")
    assert check("build/tree", "--pubkey", "keys/bad.pub").returncode == 2
    (workspace / "bad.key").write_text("{}")
    assert check("build/tree", "--key", "bad.key").returncode == 2


def test_sign_without_check_needs_a_private_key(workspace: Path):
    before = _snapshot(workspace)
    no_key = cli("sign", "build/tree", cwd=workspace)
    assert no_key.returncode == 2 and "secure-urlimport keygen" in no_key.stderr
    pub_only = cli("sign", "build/tree", "--pubkey", "keys/publisher.pub", cwd=workspace)
    assert pub_only.returncode == 2 and "--pubkey goes with --check" in pub_only.stderr
    assert _snapshot(workspace) == before


# -- pre-commit hook and GitHub Actions example --------------------------------------------


def parse_hooks(text: str) -> list[dict[str, object]]:
    """The tiny YAML subset .pre-commit-hooks.yaml uses: a list of flat mappings."""
    hooks: list[dict[str, object]] = []
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.startswith("- "):
            hooks.append({})
            line = line[2:]
        key, sep, value = line.strip().partition(": ")
        assert sep and hooks, raw
        hooks[-1][key] = {"true": True, "false": False}.get(value, value)
    return hooks


def _entry_command(entry: str) -> list[str]:
    words = shlex.split(entry)
    script = Path(sys.executable).parent / words[0]
    assert script.exists(), f"{script} missing: install the project (pip install -e .)"
    return [str(script), *words[1:]]


def test_pre_commit_hook_is_defined_as_documented():
    hooks = parse_hooks(HOOKS.read_text())
    assert [h["id"] for h in hooks] == ["secure-urlimport-verify"]
    hook = hooks[0]
    assert hook["entry"] == "secure-urlimport verify"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    assert hook["always_run"] is True
    assert "secure-urlimport-verify" in doc_block("repos:")
    assert "secure-urlimport = " in (REPO / "pyproject.toml").read_text()


def _documented_hook_args() -> list[str]:
    match = re.search(r"args: \[(.*)\]", doc_block("repos:"))
    assert match
    return [arg.strip() for arg in match.group(1).split(",")]


def test_pre_commit_hook_with_the_documented_args_passes_a_signed_tree(workspace: Path):
    hook = parse_hooks(HOOKS.read_text())[0]
    command = [*_entry_command(str(hook["entry"])), *_documented_hook_args()]
    result = subprocess.run(
        command, cwd=workspace, capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("secure-urlimport verify: OK")


def test_pre_commit_hook_with_the_documented_args_refuses_a_tampered_tree(workspace: Path):
    tamper_same_size(workspace / "build" / "tree" / "spam.py")
    hook = parse_hooks(HOOKS.read_text())[0]
    command = [*_entry_command(str(hook["entry"])), *_documented_hook_args()]
    result = subprocess.run(
        command, cwd=workspace, capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    assert result.returncode == 1
    assert result.stdout.startswith("tampered: spam.py")


def _workflow_commands() -> list[list[str]]:
    workflow = doc_block("runs-on:")
    for needed in ("actions/checkout@", "actions/setup-python@", "pip install", "--format github"):
        assert needed in workflow
    runs = re.findall(r"^\s*- run: (secure-urlimport .*)$", workflow, re.MULTILINE)
    assert runs
    return [_entry_command(run) for run in runs]


def test_actions_example_passes_a_signed_tree(workspace: Path):
    for command in _workflow_commands():
        result = subprocess.run(
            command,
            cwd=workspace,
            capture_output=True,
            text=True,
            env=_env(GITHUB_WORKSPACE=str(workspace)),
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "::error" not in result.stdout


def test_actions_example_annotates_and_fails_a_tampered_tree(workspace: Path):
    tamper_same_size(workspace / "build" / "tree" / "grok" / "blah.py")
    for command in _workflow_commands():
        result = subprocess.run(
            command,
            cwd=workspace,
            capture_output=True,
            text=True,
            env=_env(GITHUB_WORKSPACE=str(workspace)),
            timeout=120,
            check=False,
        )
        assert result.returncode == 1
        assert result.stdout.startswith(
            "::error file=build/tree/grok/blah.py,title=secure-urlimport tampered::"
        )
