"""``secure-urlimport root init/update/show`` and ``sign`` under a root, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, TLSFiles, write_tree

from secure_urlimport._format.keys import PublicKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport._format.root import root_file_name
from secure_urlimport.cli.devserver import TreeServer

PASSPHRASE = "root passphrase"


def run(*args: str | Path, passphrase: str | None = PASSPHRASE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SECURE_URLIMPORT_PASSPHRASE"}
    env["PYTHONPATH"] = str(REPO)
    if passphrase is not None:
        env["SECURE_URLIMPORT_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "secure_urlimport", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def keyid(prefix: Path) -> str:
    return PublicKey.from_line(prefix.with_suffix(".pub").read_text()).keyid


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encrypted key pairs root, root2, ci, ci2 (made once: scrypt is slow on purpose)."""
    directory = tmp_path_factory.mktemp("keys")
    for name in ("root", "root2", "ci", "ci2"):
        result = run("keygen", directory / name)
        assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree", {"mod.py": "X = 1\n"})


@pytest.fixture
def rooted(tree: Path, keys: Path) -> Path:
    result = run("root", "init", tree, "--root-key", keys / "root.key", "--signer", keys / "ci.pub")
    assert result.returncode == 0, result.stderr
    return tree


def test_root_init_writes_root_1_and_says_what_it_holds(rooted, keys):
    assert (rooted / root_file_name(1)).is_file()
    shown = run("root", "show", rooted)
    assert shown.returncode == 0, shown.stderr
    assert f"root keys: {keyid(keys / 'root')} (1 of 1 must sign)" in shown.stdout
    assert f"signers: {keyid(keys / 'ci')} (1 of 1 must sign)" in shown.stdout
    assert "not checked against a pinned root key (give --root R.pub)" in shown.stdout


def test_root_init_refuses_a_second_chain(rooted, keys):
    again = run(
        "root", "init", rooted, "--root-key", keys / "root.key", "--signer", keys / "ci.pub"
    )
    assert again.returncode == 1
    assert "already holds a root (version 1)" in again.stderr


def test_root_init_refuses_a_private_key_file_as_signer(tree, keys):
    result = run("root", "init", tree, "--root-key", keys / "root.key", "--signer", keys / "ci.key")
    assert result.returncode == 1
    assert f"--signer {keys / 'ci.key'} is a private key file; give its public key" in result.stderr
    assert not (tree / root_file_name(1)).exists()


def test_root_init_refuses_a_pub_as_root_key(tree, keys):
    result = run("root", "init", tree, "--root-key", keys / "root.pub", "--signer", keys / "ci.pub")
    assert result.returncode == 1
    assert f"--root-key {keys / 'root.pub'} is a public key file (.pub)" in result.stderr


def test_root_init_refuses_a_root_threshold_above_the_root_keys_before_any_passphrase(tree, keys):
    result = run(
        "root",
        "init",
        tree,
        *("--root-key", keys / "root.key", "--signer", keys / "ci.pub", "--root-threshold", "2"),
        passphrase=None,
    )
    assert result.returncode == 1
    assert "--root-threshold 2 cannot be met by the 1 --root-key given" in result.stderr


def test_root_init_without_a_passphrase_asks_for_one(tree, keys):
    result = run(
        "root", "init", tree, "--root-key", keys / "root.key", "--signer", keys / "ci.pub",
        passphrase=None,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no passphrase for key file" in result.stderr


def test_root_update_rotates_the_ci_key(rooted, keys):
    result = run(
        "root",
        "update",
        rooted,
        *("--root-key", keys / "root.key", "--add-signer", keys / "ci2.pub"),
        *("--remove-signer", keys / "ci.pub", "--expires", "30d"),
    )
    assert result.returncode == 0, result.stderr
    assert f"root version 2 of tree 'tree'; root keys {keyid(keys / 'root')}" in result.stdout
    shown = json.loads(run("root", "show", rooted, "--format", "json").stdout)
    assert shown["newest"] == 2
    assert shown["versions"][1]["signers"] == {"keyids": [keyid(keys / "ci2")], "threshold": 1}
    assert shown["versions"][1]["keys"][keyid(keys / "root")] == ["root"]


def test_root_update_removes_a_signer_by_key_id(rooted, keys):
    result = run(
        "root",
        "update",
        rooted,
        *("--root-key", keys / "root.key", "--add-signer", keys / "ci2.pub"),
        *("--remove-signer", keyid(keys / "ci")),
    )
    assert result.returncode == 0, result.stderr
    assert f"signers {keyid(keys / 'ci2')} (1 must sign)" in result.stdout


def test_root_update_refuses_removing_a_signer_that_is_not_there(rooted, keys):
    result = run(
        "root", "update", rooted, "--root-key", keys / "root.key",
        "--remove-signer", keys / "ci2.pub",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot remove signer {keyid(keys / 'ci2')}: root version 1 does not list it" in (
        result.stderr
    )


def test_root_update_without_the_old_root_key_is_refused_before_any_passphrase(rooted, keys):
    result = run(
        "root",
        "update",
        rooted,
        *("--root-key", keys / "root2.key", "--add-root-key", keys / "root2.pub"),
        *("--remove-root-key", keys / "root.pub"),
        passphrase=None,
    )
    assert result.returncode == 1
    assert (
        f"root version 1 must approve the next root: 1 of the root keys {keyid(keys / 'root')} "
        f"must sign; 0 given, missing: {keyid(keys / 'root')}"
    ) in result.stderr
    assert not (rooted / root_file_name(2)).exists()


def test_root_key_rotation_with_old_and_new_keys_is_accepted(rooted, keys):
    result = run(
        "root",
        "update",
        rooted,
        *("--root-key", keys / "root.key", "--root-key", keys / "root2.key"),
        *("--add-root-key", keys / "root2.pub", "--remove-root-key", keys / "root.pub"),
    )
    assert result.returncode == 0, result.stderr
    shown = run("root", "show", rooted, "--root", keys / "root.pub")
    assert "VERIFIED: the chain verifies against the pinned root key(s)" in shown.stdout
    assert f"root keys: {keyid(keys / 'root2')} (1 of 1 must sign)" in shown.stdout


def test_root_show_with_a_root_key_that_is_not_pinned_by_the_chain_fails(rooted, keys):
    shown = run("root", "show", rooted, "--root", keys / "ci.pub")
    assert shown.returncode == 1
    assert "no root of the chain is signed by the pinned root key(s)" in shown.stderr


# -- sign under a root -------------------------------------------------------------


def test_sign_refuses_a_key_the_root_does_not_list_before_any_passphrase_prompt(rooted, keys):
    result = run("sign", rooted, "--key", keys / "ci2.key", passphrase=None)
    assert result.returncode == 1
    assert (
        f"root version 1 of {rooted} does not list key(s) {keyid(keys / 'ci2')} as signers "
        f"of tree 'tree'; it lists {keyid(keys / 'ci')}"
    ) in result.stderr
    assert "passphrase" not in result.stderr


def test_sign_with_a_key_the_root_lists_signs_and_skips_root_files(rooted, keys):
    result = run("sign", rooted, "--key", keys / "ci.key")
    assert result.returncode == 0, result.stderr
    assert "signed 1 file(s)" in result.stdout
    check = run("sign", rooted, "--check", "--key", keys / "ci.key")
    assert check.returncode == 0, check.stdout
    assert "UP TO DATE" in check.stdout
    assert root_file_name(1) not in check.stdout


def test_sign_refuses_a_broken_chain(rooted, keys, tmp_path):
    other = write_tree(tmp_path / "other", {"x.py": ""})
    assert run("root", "init", other, "--root-key", keys / "root2.key", "--name", "tree",
               "--signer", keys / "ci.pub").returncode == 0  # fmt: skip
    assert run("root", "update", other, "--root-key", keys / "root2.key").returncode == 0
    (rooted / root_file_name(2)).write_bytes((other / root_file_name(2)).read_bytes())
    result = run("sign", rooted, "--key", keys / "ci.key")
    assert result.returncode == 1
    assert "is broken at version 2" in result.stderr
    assert not (rooted / MANIFEST_NAME).exists()
    update = run("root", "update", rooted, "--root-key", keys / "root.key")
    assert update.returncode == 1
    assert "is broken at version 2" in update.stderr


# -- root show over HTTPS --------------------------------------------------------------


def test_root_show_for_a_url_shows_the_chain_unverified(
    rooted: Path, keys: Path, serve: Callable[..., TreeServer], tls: TLSFiles
) -> None:
    assert run("root", "update", rooted, "--root-key", keys / "root.key").returncode == 0
    server = serve(rooted)
    shown = run("root", "show", server.url, "--cafile", tls.cafile)
    assert shown.returncode == 0, shown.stderr
    assert "2 version(s), newest 2" in shown.stdout
    assert "UNVERIFIED: shown as the server sent it, signatures not checked" in shown.stdout
    data = json.loads(
        run("root", "show", server.url, "--cafile", tls.cafile, "--format", "json").stdout
    )
    assert data["verified"] is False
    assert [v["version"] for v in data["versions"]] == [1, 2]


def test_root_show_for_a_url_with_the_root_key_verifies_the_chain(
    rooted: Path, keys: Path, serve: Callable[..., TreeServer], tls: TLSFiles
) -> None:
    server = serve(rooted)
    shown = run("root", "show", server.url, "--cafile", tls.cafile, "--root", keys / "root.pub")
    assert shown.returncode == 0, shown.stderr
    assert "VERIFIED: the chain verifies against the pinned root key(s)" in shown.stdout


def test_root_show_for_a_url_with_another_root_key_fails(
    rooted: Path, keys: Path, serve: Callable[..., TreeServer], tls: TLSFiles
) -> None:
    server = serve(rooted)
    shown = run("root", "show", server.url, "--cafile", tls.cafile, "--root", keys / "root2.pub")
    assert shown.returncode == 1
    assert "no root of the chain is signed by the pinned root key(s)" in shown.stderr


def test_root_show_for_a_url_without_the_ca_fails_on_tls(
    rooted: Path, serve: Callable[..., TreeServer]
) -> None:
    shown = run("root", "show", serve(rooted).url)
    assert shown.returncode == 1
    assert "certificate" in shown.stderr.lower()


def test_root_init_refuses_a_threshold_of_zero(tree, keys):
    result = run(
        "root", "init", tree, "--root-key", keys / "root.key", "--signer", keys / "ci.pub",
        "--threshold", "0",
    )  # fmt: skip
    assert result.returncode == 1
    assert "--threshold 0 cannot be met" in result.stderr


def test_a_tree_role_lets_its_signer_sign_that_tree_until_it_is_removed(tree, keys):
    init = run(
        "root", "init", tree, "--root-key", keys / "root.key", "--signer", keys / "ci.pub",
        "--tree-signer", f"docs={keys / 'ci2.pub'}", "--tree-threshold", "docs=1",
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert "signers of tree 'docs': " + keyid(keys / "ci2") in run("root", "show", tree).stdout
    signed = run("sign", tree, "--key", keys / "ci2.key", "--name", "docs")
    assert signed.returncode == 0, signed.stderr
    update = run("root", "update", tree, "--root-key", keys / "root.key", "--remove-tree", "docs")
    assert update.returncode == 0, update.stderr
    refused = run("sign", tree, "--key", keys / "ci2.key", "--name", "docs")
    assert refused.returncode == 1
    assert "does not govern a tree named 'docs'" in refused.stderr


def test_a_tree_threshold_that_is_not_name_equals_number_is_a_usage_error(rooted, keys):
    result = run(
        "root", "update", rooted, "--root-key", keys / "root.key", "--tree-threshold", "docs"
    )
    assert result.returncode == 2
    assert "--tree-threshold 'docs' is not NAME=VALUE" in result.stderr


def test_sign_under_an_expired_root_warns_that_consumers_will_refuse(tree, keys):
    from datetime import UTC, datetime, timedelta

    from secure_urlimport.publish.keyfile import load_private_key
    from secure_urlimport.publish.roots import init_root

    root_key = load_private_key(keys / "root.key", PASSPHRASE.encode())
    ci_pub = PublicKey.from_line((keys / "ci.pub").read_text())
    past = datetime.now(UTC) - timedelta(days=2)
    init_root(tree, [root_key], [ci_pub], now=past, expires_in=timedelta(days=1))
    result = run("sign", tree, "--key", keys / "ci.key")
    assert result.returncode == 0, result.stderr
    assert "warning: root version 1 of" in result.stderr
    assert "consumers refuse every release until the root key holders publish" in result.stderr
    assert "(EXPIRED)" in run("root", "show", tree).stdout


def test_sign_under_a_valid_root_gives_no_warning(rooted, keys):
    result = run("sign", rooted, "--key", keys / "ci.key")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "(EXPIRED)" not in run("root", "show", rooted).stdout
