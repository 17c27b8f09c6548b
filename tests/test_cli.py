"""The command line, through real subprocesses: keygen, sign, verify, serve, demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TESTCODE, rebuild_bundle, write_tree

from secure_urlimport import install
from secure_urlimport._format.keys import PublicKey
from secure_urlimport._format.paths import BUNDLE_NAME

PASSPHRASE = "correct horse battery staple"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SECURE_URLIMPORT_PASSPHRASE")
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run(
    *args: str | Path,
    passphrase: str | None = PASSPHRASE,
    cwd: Path | None = None,
    script: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    extra = {"SECURE_URLIMPORT_PASSPHRASE": passphrase} if passphrase is not None else {}
    command = (
        [sys.executable, str(script)] if script else [sys.executable, "-m", "secure_urlimport"]
    )
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(**extra),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def keypair(tmp_path: Path) -> Path:
    """An encrypted key made by the CLI; returns the prefix."""
    prefix = tmp_path / "keys" / "publisher"
    prefix.parent.mkdir()
    result = run("keygen", prefix)
    assert result.returncode == 0, result.stderr
    return prefix


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(TESTCODE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


# -- keygen --------------------------------------------------------------------


def test_keygen_writes_private_key_0600_and_one_line_pub(keypair: Path):
    key, pub = keypair.with_suffix(".key"), keypair.with_suffix(".pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = pub.read_text()
    assert text.count("\n") == 1
    parsed = PublicKey.from_line(text)
    assert parsed.keyid in text
    assert PASSPHRASE not in key.read_text()


def test_keygen_refuses_to_overwrite_an_existing_key(keypair: Path):
    before = keypair.with_suffix(".key").read_bytes()
    result = run("keygen", keypair)
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert keypair.with_suffix(".key").read_bytes() == before


def test_keygen_without_passphrase_or_terminal_fails_clearly(tmp_path: Path):
    result = run("keygen", tmp_path / "k", passphrase=None)
    assert result.returncode == 1
    assert "SECURE_URLIMPORT_PASSPHRASE" in result.stderr
    assert not (tmp_path / "k.key").exists()


def test_keygen_unencrypted_needs_no_passphrase(tmp_path: Path):
    result = run("keygen", tmp_path / "k", "--unencrypted", passphrase=None)
    assert result.returncode == 0, result.stderr
    assert "unencrypted" in result.stdout


# -- sign ----------------------------------------------------------------------


def test_sign_and_sign_tree_script_are_the_same_command(keypair: Path, tree: Path):
    first = run("sign", tree, "--key", keypair.with_suffix(".key"))
    assert first.returncode == 0, first.stderr
    assert "signed 4 file(s)" in first.stdout and "version 1" in first.stdout
    script = REPO / "scripts" / "sign_tree.py"
    second = run(tree, "--key", keypair.with_suffix(".key"), script=script)
    assert second.returncode == 0, second.stderr
    assert "signed 4 file(s)" in second.stdout and "version 2" in second.stdout
    third = run(
        "sign", tree, "--key", keypair.with_suffix(".key"), "--version", "10", "--expires", "12h"
    )
    assert third.returncode == 0 and "version 10" in third.stdout


def test_sign_with_wrong_passphrase_fails_in_one_line_and_leaves_tree_untouched(
    keypair: Path, tree: Path
):
    assert run("sign", tree, "--key", keypair.with_suffix(".key")).returncode == 0
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    result = run("sign", tree, "--key", keypair.with_suffix(".key"), passphrase="Xq7-guess")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "wrong passphrase" in result.stderr
    assert "Xq7-guess" not in result.stderr + result.stdout
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before


def test_sign_refuses_unpublishable_tree_listing_every_problem(keypair: Path, tree: Path):
    (tree / "link.py").symlink_to(tree / "fib.py")
    write_tree(tree, {"caf\u00e9/mod.py": ""})
    result = run("sign", tree, "--key", keypair.with_suffix(".key"))
    assert result.returncode == 1
    assert "link.py" in result.stderr and "caf\u00e9/mod.py" in result.stderr
    assert not (tree / "secure-urlimport.manifest").exists()


def test_sign_with_bad_duration_is_a_usage_error(keypair: Path, tree: Path):
    result = run("sign", tree, "--key", keypair.with_suffix(".key"), "--expires", "soon")
    assert result.returncode == 2
    assert "90d" in result.stderr


# -- verify: the CI gate -------------------------------------------------------


@pytest.fixture
def signed(keypair: Path, tree: Path) -> Path:
    assert run("sign", tree, "--key", keypair.with_suffix(".key")).returncode == 0
    return tree


def test_verify_clean_tree_exits_0_with_summary(signed: Path, keypair: Path):
    result = run("verify", signed, "--pubkey", keypair.with_suffix(".pub"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("secure-urlimport verify: OK: 4 files checked, 0 problems;")
    )


def test_verify_lists_every_problem_and_exits_1(signed: Path, keypair: Path):
    (signed / "fib.py").write_text("print('evil')\n")
    (signed / "spam.py").unlink()
    write_tree(signed, {"grok/unsigned.py": "x = 1\n"})
    result = run("verify", signed, "--pubkey", keypair.with_suffix(".pub"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("tampered: fib.py") for line in lines)
    assert any(line.startswith("missing: spam.py") for line in lines)
    assert any(line.startswith("unsigned: grok/unsigned.py") for line in lines)
    assert lines[-1].startswith(
        "secure-urlimport verify: FAILED: 3 files checked, 3 problems "
        "(1 missing, 1 tampered, 1 unsigned);"
    )


def test_verify_json_format_is_machine_readable(signed: Path, keypair: Path):
    (signed / "fib.py").write_text("print('evil')\n")
    result = run("verify", signed, "--pubkey", keypair.with_suffix(".pub"), "--format", "json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["ok"] is False and doc["version"] == 1
    assert [(p["kind"], p["path"]) for p in doc["problems"]] == [("tampered", "fib.py")]


def test_verify_with_another_key_reports_untrusted_manifest(signed: Path, tmp_path: Path):
    other = tmp_path / "other"
    assert run("keygen", other, "--unencrypted").returncode == 0
    result = run("verify", signed, "--pubkey", other.with_suffix(".pub"))
    assert result.returncode == 1
    assert "invalid-manifest" in result.stdout
    # Without a trusted manifest every file counts as unsigned.
    assert result.stdout.count("unsigned: ") == 4


def test_verify_usage_errors_exit_2(signed: Path, keypair: Path, tmp_path: Path):
    assert run("verify", signed).returncode == 2  # no --pubkey
    missing = run("verify", tmp_path / "nope", "--pubkey", keypair.with_suffix(".pub"))
    assert missing.returncode == 2 and "neither a directory" in missing.stderr
    bad_pub = tmp_path / "bad.pub"
    bad_pub.write_text("not a key\n")
    assert run("verify", signed, "--pubkey", bad_pub).returncode == 2
    assert (
        run("verify", "http://127.0.0.1:1/", "--pubkey", keypair.with_suffix(".pub")).returncode
        == 2
    )


def test_verify_https_url_against_real_server(signed: Path, keypair: Path, serve, tls):
    server = serve(signed)
    ok = run("verify", server.url, "--pubkey", keypair.with_suffix(".pub"), "--cafile", tls.cafile)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (signed / "grok" / "blah.py").write_text("print('evil')\n")
    bad = run(
        "verify",
        server.url,
        "--pubkey",
        keypair.with_suffix(".pub"),
        "--cafile",
        tls.cafile,
        "--verbose",
    )
    assert bad.returncode == 1
    assert "tampered: grok/blah.py" in bad.stdout
    assert "verified manifest" in bad.stderr  # the --verbose debug trail


def test_verify_https_url_with_wrong_ca_fails(signed: Path, keypair: Path, serve, other_ca_file):
    server = serve(signed)
    result = run(
        "verify", server.url, "--pubkey", keypair.with_suffix(".pub"), "--cafile", other_ca_file
    )
    assert result.returncode == 1
    assert "invalid-manifest" in result.stdout and "cafile" in result.stdout


# -- serve and demo ------------------------------------------------------------


def test_serve_prints_ca_and_install_line_that_work(signed: Path, keypair: Path):
    pub = keypair.with_suffix(".pub")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secure_urlimport",
            "serve",
            str(signed),
            "--port",
            "0",
            "--pubkey",
            str(pub),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        url = lines[0].split(" at ")[1].strip()
        cafile = lines[1].split(": ", 1)[1].strip()
        assert url.startswith("https://127.0.0.1:")
        assert (
            f"secure_urlimport.install({url!r}, pubkey={str(pub)!r}, cafile={cafile!r})" in lines[3]
        )
        install(url, pubkey=pub, cafile=cafile)
        import fib

        assert fib.fib(10) == 89
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0
    assert not Path(cafile).exists()  # the temporary CA is cleaned up


def test_demo_runs_the_recipe_and_refuses_the_tampered_module():
    result = run("demo", passphrase=None)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in (
        "I'm fib",
        "89",
        "I'm spam",
        "Hello Guido",
        "I'm grok.__init__",
        "I'm grok.blah",
        "/grok/blah.py'",
        "TamperedFileError",
    ):
        assert expected in out
    assert out.count("I'm fib") == 2  # once on import, once in the closing remark
    assert out.index("I'm fib") < out.index("I'm spam") < out.index("I'm grok.blah")


# -- run: python -m for a remote module ------------------------------------------


@pytest.fixture
def app_tree(tmp_path: Path, keypair: Path) -> Path:
    root = write_tree(
        tmp_path / "app",
        {
            "hello.py": (
                "import sys\n"
                "def main():\n"
                "    print('hello from', __name__, sys.argv)\n"
                "    return 3 if '--fail' in sys.argv else 0\n"
                "if __name__ == '__main__':\n"
                "    sys.exit(main())\n"
            ),
            "tool/__init__.py": "print('tool package')\n",
            "tool/__main__.py": "print('tool main', __name__)\n",
            "crash.py": (
                "def go():\n    raise ValueError('remote failure')  # the remote line\ngo()\n"
            ),
        },
    )
    assert run("sign", root, "--key", keypair.with_suffix(".key")).returncode == 0
    return root


def _run_remote(server, tls, keypair: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(
        "run", "--pubkey", keypair.with_suffix(".pub"), "--cafile", tls.cafile, server.url, *args
    )


def test_run_executes_module_as_main_with_its_arguments(app_tree, keypair, serve, tls):
    server = serve(app_tree)
    result = _run_remote(server, tls, keypair, "hello", "a", "--b")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello from __main__ ['{server.url}/hello.py', 'a', '--b']\n"
    assert _run_remote(server, tls, keypair, "hello", "--fail").returncode == 3


def test_run_executes_a_package_main(app_tree, keypair, serve, tls):
    server = serve(app_tree)
    result = _run_remote(server, tls, keypair, "tool")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tool package\ntool main __main__\n"


def test_run_traceback_shows_remote_source(app_tree, keypair, serve, tls):
    server = serve(app_tree)
    result = _run_remote(server, tls, keypair, "crash")
    assert result.returncode == 1
    assert f'File "{server.url}/crash.py", line 2, in go' in result.stderr
    assert "raise ValueError('remote failure')  # the remote line" in result.stderr


def test_run_refuses_a_tampered_module(app_tree, keypair, serve, tls):
    (app_tree / "hello.py").write_text("print('evil')\n")
    rebuild_bundle(app_tree)
    server = serve(app_tree)
    result = _run_remote(server, tls, keypair, "hello")
    assert result.returncode == 1
    assert "evil" not in result.stdout
    assert "TamperedFileError" not in result.stderr  # one clean line, no traceback
    assert "cannot import 'hello'" in result.stderr and "re-sign" in result.stderr


def test_run_refuses_a_module_that_is_not_in_the_tree(app_tree, keypair, serve, tls, tmp_path):
    # A same-named local module in the working directory must not run instead.
    (tmp_path / "toool.py").write_text("print('LOCAL UNSIGNED RAN')\n")
    server = serve(app_tree)
    result = run(
        "run",
        "--pubkey",
        keypair.with_suffix(".pub"),
        "--cafile",
        tls.cafile,
        server.url,
        "toool",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "LOCAL UNSIGNED RAN" not in result.stdout
    assert "not a module of the signed tree" in result.stderr


def test_sign_names_the_tree_and_verify_checks_a_pinned_name(keypair: Path, tree: Path):
    assert (
        run("sign", tree, "--key", keypair.with_suffix(".key"), "--name", "stable").returncode == 0
    )
    pub = keypair.with_suffix(".pub")
    assert run("verify", tree, "--pubkey", pub, "--name", "stable").returncode == 0
    wrong = run("verify", tree, "--pubkey", pub, "--name", "dev")
    assert wrong.returncode == 1
    assert "invalid-manifest" in wrong.stdout and "'stable', not 'dev'" in wrong.stdout


LIBRARY_USE = """
import importlib, logging, sys
import secure_urlimport
secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])
importlib.import_module("fib")
logger = logging.getLogger("secure_urlimport")
print(len(logger.handlers), len(logging.getLogger().handlers), logger.level)
"""


def test_library_installs_no_logging_handlers_and_stays_quiet(testcode, publisher, serve, tls):
    server = serve(testcode)
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY_USE, server.url, str(publisher.pub), tls.cafile],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 0 0"  # no handlers, level left to the app
    assert result.stderr == ""  # nothing logged at WARNING on a clean import


def test_verbose_twin_without_it_the_debug_trail_is_silent(signed: Path, keypair: Path, serve, tls):
    server = serve(signed)
    quiet = run(
        "verify", server.url, "--pubkey", keypair.with_suffix(".pub"), "--cafile", tls.cafile
    )
    assert quiet.returncode == 0
    assert "verified manifest" not in quiet.stderr


# -- the bundle in the gate ------------------------------------------------------------


def _spoil_bundle(root: Path) -> None:
    bundle = root / BUNDLE_NAME
    data = bytearray(bundle.read_bytes())
    data[-2] ^= 0x01  # the last module's bytes, same size
    bundle.write_bytes(bytes(data))


def test_verify_reports_a_stale_bundle_in_a_directory(signed: Path, keypair: Path):
    _spoil_bundle(signed)
    result = run("verify", signed, "--pubkey", keypair.with_suffix(".pub"))
    assert result.returncode == 1
    assert f"stale-bundle: {BUNDLE_NAME}:" in result.stdout
    assert "publish the bundle together with the manifest" in result.stdout


def test_verify_accepts_a_fresh_bundle_and_a_tree_without_one(signed: Path, keypair: Path):
    assert run("verify", signed, "--pubkey", keypair.with_suffix(".pub")).returncode == 0
    (signed / BUNDLE_NAME).unlink()
    result = run("verify", signed, "--pubkey", keypair.with_suffix(".pub"))
    assert result.returncode == 0, result.stdout
    assert "stale-bundle" not in result.stdout


def test_verify_reports_a_stale_bundle_on_a_server(signed: Path, keypair: Path, serve, tls):
    server = serve(signed)
    ok = run("verify", server.url, "--pubkey", keypair.with_suffix(".pub"), "--cafile", tls.cafile)
    assert ok.returncode == 0, ok.stdout
    _spoil_bundle(signed)
    bad = run(
        "verify",
        server.url,
        "--pubkey",
        keypair.with_suffix(".pub"),
        "--cafile",
        tls.cafile,
        "--format",
        "json",
    )
    assert bad.returncode == 1
    assert [p["kind"] for p in json.loads(bad.stdout)["problems"]] == ["stale-bundle"]
