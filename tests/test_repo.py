"""The project's own promises about itself: README commands, CI, keys, public API."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import secure_urlimport

REPO = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:5] if line.startswith("    ")]


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = _readme_commands()
    assert demo.endswith("secure-urlimport demo")
    assert "pytest" in tests


def test_ci_runs_the_readme_commands_verbatim():
    demo, tests = _readme_commands()
    ci = (REPO / ".ci" / "run").read_text()
    for name, command in (("DEMO_COMMAND", demo), ("TEST_COMMAND", tests)):
        match = re.search(rf'^{name}="(.*)"$', ci, re.MULTILINE)
        assert match, f".ci/run must define {name}"
        assert match.group(1) == command
        assert f'bash -c "${name}"' in ci


def _project_files() -> list[str]:
    """Tracked files in a checkout; every file (but venvs) in CI's copy without .git."""
    git = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False)
    if git.returncode == 0 and (REPO / ".git").exists():
        return git.stdout.split()
    return [
        p.relative_to(REPO).as_posix()
        for p in REPO.rglob("*")
        if p.is_file() and not p.relative_to(REPO).parts[0].startswith(".venv")
    ]


def test_no_private_key_is_tracked():
    files = _project_files()
    assert "README.md" in files
    assert not [name for name in files if name.endswith(".key")]
    assert "*.key" in (REPO / ".gitignore").read_text().split()


def test_runtime_dependencies_are_only_cryptography_and_requests():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ \[]", dep)[0].lower() for dep in project["dependencies"]}
    assert names == {"cryptography", "requests"}


def test_public_api_is_declared_and_importable():
    for name in secure_urlimport.__all__:
        assert hasattr(secure_urlimport, name), name
    for name in (
        "install",
        "uninstall",
        "trust",
        "install_path_hook",
        "remove_path_hook",
        "SecureImportError",
        "Config",
        "Importer",
    ):
        assert name in secure_urlimport.__all__


def test_every_error_is_a_secure_import_error_and_an_import_error():
    errors = [getattr(secure_urlimport, n) for n in secure_urlimport.__all__ if n.endswith("Error")]
    assert len(errors) >= 15
    for error in errors:
        assert issubclass(error, secure_urlimport.SecureImportError)
        assert issubclass(error, ImportError)


def test_every_test_named_in_security_md_exists():
    text = (REPO / "SECURITY.md").read_text()
    named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", text)) - {"test_importlib", "test_zipimport"}
    defined = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE))
    assert len(named) > 40
    assert sorted(named - defined) == []
