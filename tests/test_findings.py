"""The findings model the gate (``verify``) and ``sign --check`` share, and its renderings.

Ordering, counting and the summary line; text, GitHub and JSON output of a
report; ``sign --check``'s signature checks through the verification core.
Each success has its failure twin.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_tree

from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.manifest import encode_manifest, manifest_message, split_manifest_file
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.gate.audit import PROBLEM_KINDS, Problem, Report
from secure_urlimport.gate.output import finding_line, github_lines, summary_line, text_lines
from secure_urlimport.publish.findings import Finding, Findings, plural
from secure_urlimport.publish.signcheck import CHANGE_KINDS, Change, SignCheck, check_tree
from secure_urlimport.publish.signing import PathProblem, scan_tree, sign_tree

K1 = PrivateKey.from_seed(bytes([0x21]) * 32)
K2 = PrivateKey.from_seed(bytes([0x22]) * 32)
SIGNED_AT = datetime(2031, 5, 17, 12, 0, 0, tzinfo=UTC)
CHECK_AT = SIGNED_AT + timedelta(hours=1)


def failing_report() -> Report:
    report = Report("build/tree", version=7, files_checked=4)
    report.add("unsigned", "grok/new.py", "grok/new.py is not in the signed manifest")
    report.add("tampered", "fib.py", "build/tree/fib.py does not match")
    report.add("unsigned", "a.py", "a.py is not in the signed manifest")
    return report


# -- the model ---------------------------------------------------------------------------


def test_findings_keep_the_order_they_were_found_in() -> None:
    findings = Findings(PROBLEM_KINDS)
    findings.add("unsigned", "z.py", "z")
    findings.add("missing", "a.py", "a")
    assert [f.path for f in findings] == ["z.py", "a.py"]
    assert findings.items == [Finding("unsigned", "z.py", "z"), Finding("missing", "a.py", "a")]
    assert len(findings) == 2 and findings


def test_findings_refuse_a_kind_that_is_not_documented() -> None:
    findings = Findings(CHANGE_KINDS)
    with pytest.raises(ValueError, match="'tampered' is not a documented kind"):
        findings.add("tampered", "a.py", "a gate kind, not a sign --check kind")
    assert not findings and len(findings) == 0


def test_a_finding_is_frozen_and_the_gate_and_sign_check_share_it() -> None:
    finding = Finding("added", "a.py", "new")
    with pytest.raises(AttributeError):
        finding.kind = "removed"  # type: ignore[misc]
    assert Problem is Finding and Change is Finding


def test_summary_counts_findings_by_kind_sorted_by_kind() -> None:
    findings = failing_report().findings
    assert findings.counts() == "1 tampered, 2 unsigned"
    assert findings.summary("problem") == "3 problems (1 tampered, 2 unsigned)"


def test_summary_of_no_findings_has_no_counts() -> None:
    findings = Findings(PROBLEM_KINDS)
    assert findings.counts() == ""
    assert findings.summary("problem") == "0 problems"


def test_plural_is_singular_for_exactly_one() -> None:
    assert plural(1, "file") == "1 file"
    assert [plural(n, "file") for n in (0, 2)] == ["0 files", "2 files"]


def test_path_problems_render_as_path_colon_why_only_when_asked() -> None:
    problem = PathProblem("pkg/link.py", "symlink (publish real files only)")
    assert (problem.path, problem.why) == ("pkg/link.py", "symlink (publish real files only)")
    assert problem.line() == "pkg/link.py: symlink (publish real files only)"


def test_scan_keeps_path_and_reason_apart_even_when_the_name_has_a_colon(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", {"ok.py": "x = 1\n"})
    (root / "a: b.py").symlink_to(root / "ok.py")
    scan = scan_tree(root)
    assert scan.files == ["ok.py"]
    assert scan.problems == [PathProblem("a: b.py", "symlink (publish real files only)")]


def test_scan_of_a_clean_tree_has_no_problems(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", {"ok.py": "x = 1\n", "pkg/__init__.py": ""})
    assert scan_tree(root).problems == []


# -- text --------------------------------------------------------------------------------


def test_text_of_a_clean_report_is_only_the_summary_line() -> None:
    report = Report("build/tree", version=7, files_checked=4)
    assert report.ok
    assert text_lines(report) == [
        "secure-urlimport verify: OK: 4 files checked, 0 problems; tree build/tree, version 7"
    ]


def test_text_of_a_failing_report_lists_findings_in_order_then_the_summary() -> None:
    report = failing_report()
    assert not report.ok
    assert text_lines(report) == [
        "unsigned: grok/new.py: grok/new.py is not in the signed manifest",
        "tampered: fib.py: build/tree/fib.py does not match",
        "unsigned: a.py: a.py is not in the signed manifest",
        "secure-urlimport verify: FAILED: 4 files checked, 3 problems (1 tampered, 2 unsigned); "
        "tree build/tree, version 7",
    ]


def test_text_of_a_finding_with_control_characters_stays_on_one_line() -> None:
    line = finding_line(Finding("unpublishable", "bad\nname", "control\x1b character"))
    assert line == "unpublishable: bad\\nname: control\\x1b character"


def test_sign_check_text_up_to_date_is_only_the_summary_line() -> None:
    check = SignCheck(
        Path("build/tree"), files=4, version=7, expires=SIGNED_AT, signatures_checked=True
    )
    assert check.up_to_date
    assert text_lines(check) == [
        "secure-urlimport sign --check: UP TO DATE: tree build/tree, version 7, 4 files, "
        "expires 2031-05-17T12:00:00Z; signatures checked"
    ]


def test_sign_check_text_with_changes_lists_them_then_the_summary() -> None:
    check = SignCheck(Path("build/tree"), files=4, version=7)
    check.add("removed", "spam.py", "gone")
    check.add("added", "new.py", "new")
    assert not check.up_to_date and check.changes == list(check.findings)
    assert text_lines(check) == [
        "removed: spam.py: gone",
        "added: new.py: new",
        "secure-urlimport sign --check: WOULD CHANGE: 2 changes (1 added, 1 removed); "
        "tree build/tree, version 7; to update it: secure-urlimport sign build/tree --key KEY",
    ]


def test_summary_without_a_trusted_manifest_has_no_version() -> None:
    report = Report("build/tree")
    report.add("invalid-manifest", MANIFEST_NAME, "garbage")
    assert summary_line(report) == (
        "secure-urlimport verify: FAILED: 0 files checked, "
        "1 problem (1 invalid-manifest); tree build/tree"
    )


# -- github ------------------------------------------------------------------------------


def test_github_lines_of_a_clean_report_are_only_the_summary(tmp_path: Path) -> None:
    report = Report("build/tree", version=7, files_checked=4)
    assert github_lines(report, root=tmp_path) == [summary_line(report)]


def test_github_lines_annotate_each_finding_on_its_file_then_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    lines = github_lines(failing_report(), root=tmp_path / "build" / "tree")
    assert lines[:2] == [
        "::error file=build/tree/grok/new.py,title=secure-urlimport unsigned::"
        "grok/new.py is not in the signed manifest",
        "::error file=build/tree/fib.py,title=secure-urlimport tampered::"
        "build/tree/fib.py does not match",
    ]
    assert len(lines) == 4 and lines[-1] == summary_line(failing_report())


def test_github_lines_of_an_https_tree_name_the_url_instead_of_a_file() -> None:
    report = Report("https://example.org/tree")
    report.add("missing", "spam.py", "HTTP 404")
    lines = github_lines(report, file_url=lambda rel: f"https://example.org/tree/{rel}")
    assert lines[0] == (
        "::error title=secure-urlimport missing::https://example.org/tree/spam.py: HTTP 404"
    )


# -- json --------------------------------------------------------------------------------


def test_json_of_a_clean_report_has_no_problems() -> None:
    doc = Report("build/tree", version=7, files_checked=4).to_json()
    assert doc == {
        "schema": 1,
        "target": "build/tree",
        "ok": True,
        "version": 7,
        "files_checked": 4,
        "problems": [],
    }


def test_json_of_a_failing_report_lists_problems_in_order() -> None:
    doc = json.loads(json.dumps(failing_report().to_json()))
    assert doc["ok"] is False
    assert [list(p) for p in doc["problems"]] == [["kind", "path", "message"]] * 3
    assert [(p["kind"], p["path"]) for p in doc["problems"]] == [
        ("unsigned", "grok/new.py"),
        ("tampered", "fib.py"),
        ("unsigned", "a.py"),
    ]


# -- sign --check's signature checks, through the verification core -----------------------


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "tree", {"mod.py": "x = 1\n", "other.py": "y = 2\n"})
    sign_tree(root, [K1, K2], now=SIGNED_AT)
    return root


def test_sign_check_accepts_valid_signatures_of_every_given_key(signed: Path) -> None:
    check = check_tree(signed, [], [K1.public, K2.public], now=CHECK_AT)
    assert check.up_to_date, check.changes
    assert check.signatures_checked


def test_sign_check_names_each_key_whose_manifest_signature_fails(signed: Path) -> None:
    path = signed / MANIFEST_NAME
    manifest = split_manifest_file(path.read_bytes())
    sigs = [(kid, sig if kid == K1.keyid else bytes(64)) for kid, sig in manifest.signatures]
    path.write_bytes(encode_manifest(manifest.body, sigs))
    check = check_tree(signed, [], [K1.public, K2.public], now=CHECK_AT)
    assert [(c.kind, c.path) for c in check.changes] == [("bad-signature", MANIFEST_NAME)]
    assert check.changes[0].message.startswith(f"the signature by key {K2.keyid} does not verify")


def test_sign_check_names_each_key_without_a_valid_file_signature(signed: Path) -> None:
    path = signed / MANIFEST_NAME
    manifest = split_manifest_file(path.read_bytes())
    body = json.loads(manifest.body)
    del body["files"]["mod.py"]["signatures"][K2.keyid]
    sign_body = json.dumps(body).encode()
    sigs = [(k.keyid, k.sign(manifest_message(k.keyid, sign_body))) for k in (K1, K2)]
    path.write_bytes(encode_manifest(sign_body, sigs))
    check = check_tree(signed, [], [K1.public, K2.public], now=CHECK_AT)
    assert [(c.kind, c.path, c.message) for c in check.changes] == [
        (
            "bad-signature",
            "mod.py",
            f"no valid signature by key {K2.keyid} for version 1; signing would sign it again",
        )
    ]
