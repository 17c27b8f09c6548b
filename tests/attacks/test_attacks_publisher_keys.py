"""The publisher's private key: never published with the tree, never written through a link.

``sign .`` run from a checkout that also holds the key file would publish the
key (it is a regular file with a publishable name) -- under any name, encrypted
or not.  ``keygen PREFIX`` with a dangling symlink planted at ``PREFIX.pub``
would write the public key wherever the link points.  Every CLI run has a
timeout (``publisher_tools.TIMEOUT``).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import write_tree
from publisher_tools import assert_clean_failure, cli, keygen

from secure_urlimport import cli as cli_module
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.errors import KeyFileError, SigningError
from secure_urlimport.publish import keyfile
from secure_urlimport.publish.keyfile import is_private_key_file, save_private_key, write_public_key
from secure_urlimport.publish.signing import sign_tree

K1 = PrivateKey.from_seed(bytes([0x41]) * 32)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "SIGNED = 1\n"})


# -- item 6: a tree holding a private key file is never signed ----------------------------


def test_sign_dot_refuses_the_tree_that_holds_its_own_key_file(tree: Path) -> None:
    key, _ = keygen(tree / "publisher")  # the key made inside the checkout
    result = cli("sign", ".", "--key", key.name, cwd=tree)
    assert_clean_failure(result, "private key file", "publisher.key")
    assert not (tree / MANIFEST_NAME).exists()  # nothing published


@pytest.mark.parametrize("script", [False, True], ids=["cli", "sign_tree.py"])
def test_key_file_renamed_and_encrypted_deep_in_the_tree_is_still_refused(
    tree: Path, tmp_path: Path, script: bool
) -> None:
    key, _ = keygen(tmp_path / "outside" / "publisher")
    (tree / "pkg" / "data").mkdir()
    save_private_key(PrivateKey.generate(), tree / "pkg" / "data" / "notes.txt", b"pass phrase")
    (tree / "backup.json").write_bytes(key.read_bytes())
    result = cli("sign", tree, "--key", key, script=script)
    out = assert_clean_failure(result, "2 private key file(s)")
    assert "pkg/data/notes.txt" in out and "backup.json" in out
    assert not (tree / MANIFEST_NAME).exists()


def test_sign_check_and_verify_report_a_key_file_in_the_tree(tree: Path, tmp_path: Path) -> None:
    key, pub = keygen(tmp_path / "outside" / "publisher")
    assert cli("sign", tree, "--key", key).returncode == 0
    (tree / "pkg" / "mod.py").write_bytes(key.read_bytes())  # a signed file replaced by a key
    (tree / "stray.key").write_bytes(key.read_bytes())  # and an extra one
    check = assert_clean_failure(cli("sign", "--check", tree, "--key", key), "private-key")
    assert "private-key: pkg/mod.py" in check and "private-key: stray.key" in check
    gate = cli("verify", tree, "--pubkey", pub, "--format", "json")
    assert_clean_failure(gate)
    kinds = {(p["kind"], p["path"]) for p in json.loads(gate.stdout)["problems"]}
    assert {("private-key", "pkg/mod.py"), ("private-key", "stray.key")} <= kinds


def test_key_file_with_a_bom_and_leading_blank_lines_is_still_a_key(tree: Path) -> None:
    save_private_key(K1, tree / "k.key", None)
    (tree / "k.key").write_bytes(b"\xef\xbb\xbf\n\n  " + (tree / "k.key").read_bytes())
    with pytest.raises(SigningError) as info:
        sign_tree(tree, [K1])
    assert info.value.problems == ["k.key: a private key file; move it out of the tree"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"type": "secure-urlimport/manifest"}\n', id="other-json-type"),
        pytest.param(b'["secure-urlimport/private-key"]\n', id="json-list"),
        pytest.param(
            b'{"type": "secure-urlimport/private-key"' + b" " * 70_000 + b"}",
            id="larger-than-any-key-file",
        ),
        pytest.param(b'{"a": ' * 9_000, id="deeply-nested"),
        pytest.param(b"\xff{", id="not-utf8"),
        pytest.param(b'X = {"type": "secure-urlimport/private-key"}\n', id="python-mentioning-it"),
    ],
)
def test_data_files_that_only_resemble_a_key_file_are_signed(tree: Path, content: bytes) -> None:
    (tree / "data.json").write_bytes(content)
    assert not is_private_key_file(content)
    assert sign_tree(tree, [K1]).files == 3


# -- item 7: keygen never writes through a planted link ------------------------------------


@pytest.mark.parametrize("planted", [".pub", ".key"])
def test_keygen_refuses_a_dangling_symlink_planted_at_either_name(
    tmp_path: Path, planted: str
) -> None:
    prefix = tmp_path / "publisher"
    target = tmp_path / "attacker-chosen"
    prefix.with_suffix(planted).symlink_to(target)
    out = assert_clean_failure(cli("keygen", prefix, "--unencrypted"), "symlink")
    assert str(prefix.with_suffix(planted)) in out
    assert not target.exists()  # nothing written where the link points
    other = ".key" if planted == ".pub" else ".pub"
    assert not os.path.lexists(prefix.with_suffix(other))


def test_public_key_is_never_written_through_a_link_planted_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "publisher"
    target = tmp_path / "attacker-chosen"
    real_save = keyfile.save_private_key

    def save_then_plant(key: PrivateKey, path: Path, passphrase: bytes | None) -> None:
        real_save(key, path, passphrase)
        prefix.with_suffix(".pub").symlink_to(target)  # the race: planted meanwhile

    monkeypatch.setattr(keyfile, "save_private_key", save_then_plant)
    assert cli_module.main(["keygen", str(prefix), "--unencrypted"]) == 1
    assert "symlink" in capsys.readouterr().err
    assert not target.exists()
    # The new key was never used: removed, so keygen works once the name is free.
    assert not prefix.with_suffix(".key").exists()


def test_write_public_key_never_replaces_or_follows_an_existing_name(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    link = tmp_path / "k.pub"
    link.symlink_to(precious)
    with pytest.raises(KeyFileError, match="symlink"):
        write_public_key(K1.public, link)
    assert precious.read_text() == "keep me\n"
    with pytest.raises(KeyFileError, match="already exists"):
        write_public_key(K1.public, precious)


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_keygen_modes_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    prefix = tmp_path / "publisher"

    def set_umask() -> None:
        os.umask(umask)

    result = cli("keygen", prefix, "--unencrypted", preexec_fn=set_umask)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(prefix.with_suffix(".key").stat().st_mode) == 0o600
    assert stat.S_IMODE(prefix.with_suffix(".pub").stat().st_mode) == 0o644
