"""Pinning only the root key, for real: the gate (``verify --root``), ``run --root``
and ``install(url, root=...)`` in fresh interpreters, over real HTTPS.

Each tree here is signed by an online "CI" key and carries root files
(``secure-urlimport.root.N``) signed by an offline root key; the consumer
is given only the root key's ``.pub``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO, write_tree

from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport._format.root import (
    Role,
    Root,
    encode_root,
    encode_root_body,
    root_file_name,
    root_message,
)
from secure_urlimport.publish.signing import sign_tree


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["PYTHONPATH"] = str(REPO)
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache)
    return env


def cli(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_urlimport", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(cache),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def root_file(
    version: int,
    root_key: PrivateKey,
    signer: PrivateKey,
    *,
    sign_with: list[PrivateKey] | None = None,
    expires_in: timedelta = timedelta(days=365),
) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    root = Root(
        name="tree",
        version=version,
        created=min(now, now + expires_in - timedelta(days=1)),
        expires=now + expires_in,
        keys={root_key.keyid: root_key.public, signer.keyid: signer.public},
        root=Role((root_key.keyid,), 1),
        signers=Role((signer.keyid,), 1),
    )
    body = encode_root_body(root)
    keys = sign_with or [root_key]
    return encode_root(body, [(k.keyid, k.sign(root_message(k.keyid, body))) for k in keys])


class Keys:
    def __init__(self, directory: Path) -> None:
        self.root, self.ci_old, self.ci, self.stranger = (PrivateKey.generate() for _ in range(4))
        self.root_pub = directory / "root.pub"
        self.root_pub.write_text(self.root.public.to_line(), encoding="ascii")


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "consumer-cache"


def rotated_tree(directory: Path, keys: Keys) -> Path:
    """Root 1 lists ci_old, root 2 lists ci (a rotation); the release is signed by ci."""
    write_tree(directory, {"mod.py": "print('signed by the rotated key')\n", "pkg/__init__.py": ""})
    sign_tree(directory, [keys.ci], name="tree")
    # Written after signing: roots are metadata, whether or not `sign` skips them.
    (directory / root_file_name(1)).write_bytes(root_file(1, keys.root, keys.ci_old))
    (directory / root_file_name(2)).write_bytes(root_file(2, keys.root, keys.ci))
    return directory


def sign_as_thief(tree: Path, key: PrivateKey, *, version: int) -> None:
    """Sign *tree* with *key* as a thief does: as if there were no root (`sign`
    refuses a key the tree's root does not list), the roots left in place."""
    roots = {path: path.read_bytes() for path in tree.glob("secure-urlimport.root.*")}
    for path in roots:
        path.unlink()
    sign_tree(tree, [key], name="tree", version=version)
    for path, data in roots.items():
        path.write_bytes(data)


# -- the gate on a directory ------------------------------------------------------------


def test_verify_root_on_a_directory_with_a_rotated_chain_is_ok(tmp_path, keys, cache):
    tree = rotated_tree(tmp_path / "tree", keys)
    result = cli("verify", tree, "--root", keys.root_pub, cache=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unsigned" not in result.stdout  # the root files are metadata
    assert "secure-urlimport verify: OK: 2 files checked" in result.stdout


@pytest.mark.parametrize("option", ["--root-threshold", "--threshold"])
def test_verify_with_a_threshold_of_zero_is_a_usage_error_not_a_threshold_of_one(
    tmp_path, keys, cache, option
):
    tree = rotated_tree(tmp_path / "tree", keys)
    pin = ["--root", keys.root_pub] if option == "--root-threshold" else ["--pubkey", keys.root_pub]
    result = cli("verify", tree, *pin, option, "0", cache=cache)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "threshold 0 cannot be met" in result.stderr


def test_verify_root_on_a_directory_signed_by_a_key_the_newest_root_dropped_fails(
    tmp_path, keys, cache
):
    tree = rotated_tree(tmp_path / "tree", keys)
    sign_as_thief(tree, keys.ci_old, version=2)
    result = cli("verify", tree, "--root", keys.root_pub, cache=cache)
    assert result.returncode == 1
    assert f"invalid-manifest: {MANIFEST_NAME}:" in result.stdout
    assert "root version 2 lists" in result.stdout
    assert "pinned key" not in result.stdout and "Pin the publisher" not in result.stdout


def test_verify_root_on_a_directory_reports_untrusted_root_for_a_root_a_stranger_signed(
    tmp_path, keys, cache
):
    tree = rotated_tree(tmp_path / "tree", keys)
    forged = root_file(2, keys.root, keys.ci, sign_with=[keys.stranger])
    (tree / root_file_name(2)).write_bytes(forged)
    result = cli("verify", tree, "--root", keys.root_pub, "--format", "json", cache=cache)
    assert result.returncode == 1
    assert f'"kind": "untrusted-root",\n      "path": "{root_file_name(2)}"' in result.stdout


def test_verify_root_on_a_directory_reports_expired_root(tmp_path, keys, cache):
    tree = rotated_tree(tmp_path / "tree", keys)
    expired = root_file(2, keys.root, keys.ci, expires_in=timedelta(days=-1))
    (tree / root_file_name(2)).write_bytes(expired)
    result = cli("verify", tree, "--root", keys.root_pub, cache=cache)
    assert result.returncode == 1
    assert f"expired-root: {root_file_name(2)}:" in result.stdout
    assert "root update" in result.stdout
    assert "2 files checked" in result.stdout  # the rest was still checked


def test_verify_root_on_a_directory_without_roots_says_how_to_make_one(tmp_path, keys, cache):
    tree = write_tree(tmp_path / "tree", {"mod.py": "X = 1\n"})
    sign_tree(tree, [keys.ci])
    result = cli("verify", tree, "--root", keys.root_pub, cache=cache)
    assert result.returncode == 1
    assert f"untrusted-root: {root_file_name(1)}:" in result.stdout
    assert "root init" in result.stdout


def test_verify_with_both_pubkey_and_root_is_a_usage_error(tmp_path, keys, cache):
    tree = rotated_tree(tmp_path / "tree", keys)
    result = cli("verify", tree, "--root", keys.root_pub, "--pubkey", keys.root_pub, cache=cache)
    assert result.returncode == 2
    assert "--pubkey" in result.stderr and "--root" in result.stderr


# -- over real HTTPS: the gate, run, and install in a fresh interpreter --------------------


def test_verify_root_on_a_url_with_a_rotated_chain_is_ok(tmp_path, keys, cache, serve, tls):
    server = serve(rotated_tree(tmp_path / "tree", keys))
    result = cli("verify", server.url, "--root", keys.root_pub, "--cafile", tls.cafile, cache=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 2 files checked" in result.stdout


def test_verify_root_on_a_url_reports_untrusted_and_expired_roots(
    tmp_path, keys, cache, serve, tls
):
    tree = rotated_tree(tmp_path / "tree", keys)
    server = serve(tree)
    forged = root_file(3, keys.stranger, keys.stranger, sign_with=[keys.stranger])
    (tree / root_file_name(3)).write_bytes(forged)
    result = cli("verify", server.url, "--root", keys.root_pub, "--cafile", tls.cafile, cache=cache)
    assert result.returncode == 1
    assert f"untrusted-root: {root_file_name(3)}:" in result.stdout
    (tree / root_file_name(3)).unlink()
    expired = root_file(2, keys.root, keys.ci, expires_in=timedelta(days=-1))
    (tree / root_file_name(2)).write_bytes(expired)
    result = cli("verify", server.url, "--root", keys.root_pub, "--cafile", tls.cafile, cache=cache)
    assert result.returncode == 1
    assert f"expired-root: {root_file_name(2)}:" in result.stdout


def test_run_root_runs_a_module_signed_by_the_key_the_newest_root_lists(
    tmp_path, keys, cache, serve, tls
):
    server = serve(rotated_tree(tmp_path / "tree", keys))
    result = cli(
        "run", "--root", keys.root_pub, "--cafile", tls.cafile, server.url, "mod", cache=cache
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "signed by the rotated key\n"


def test_run_root_refuses_a_module_signed_by_a_key_no_root_lists(tmp_path, keys, cache, serve, tls):
    tree = rotated_tree(tmp_path / "tree", keys)
    sign_as_thief(tree, keys.stranger, version=2)
    server = serve(tree)
    result = cli(
        "run", "--root", keys.root_pub, "--cafile", tls.cafile, server.url, "mod", cache=cache
    )
    assert result.returncode == 1
    assert "UntrustedKeyError" in result.stderr or "root version 2 lists" in result.stderr
    assert "signed by the rotated key" not in result.stdout


CONSUMER = """\
import secure_urlimport
secure_urlimport.install({url!r}, root={root!r}, cafile={cafile!r})
import mod
"""


def consume(url: str, root: Path, cafile: str, cache: Path) -> subprocess.CompletedProcess[str]:
    code = CONSUMER.format(url=url, root=str(root), cafile=cafile)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(cache),
        check=False,
    )


def test_install_root_in_a_fresh_interpreter_imports_from_a_tree_with_roots_1_and_2(
    tmp_path, keys, cache, serve, tls
):
    tree = rotated_tree(tmp_path / "tree", keys)
    server = serve(tree)
    result = consume(server.url, keys.root_pub, tls.cafile, cache)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "signed by the rotated key\n"
    # A second fresh interpreter starts from the stored root 2: root 1 is never asked again.
    (tree / root_file_name(1)).unlink()
    result = consume(server.url, keys.root_pub, tls.cafile, cache)
    assert result.returncode == 0, result.stderr


def test_install_root_in_a_fresh_interpreter_refuses_a_release_by_the_key_root_2_dropped(
    tmp_path, keys, cache, serve, tls, marker
):
    tree = rotated_tree(tmp_path / "tree", keys)
    (tree / "mod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
    sign_as_thief(tree, keys.ci_old, version=2)
    server = serve(tree)
    result = consume(server.url, keys.root_pub, tls.cafile, cache)
    assert result.returncode == 1
    assert "UntrustedKeyError" in result.stderr and "root version 2" in result.stderr
    assert not marker.exists()
