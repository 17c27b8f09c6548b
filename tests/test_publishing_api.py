"""Signing from Python with the public API only (secure_urlimport.generate_key & co.),
each success with its failure twin; the signed tree then imports over HTTPS."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import secure_urlimport as su
from secure_urlimport.errors import KeyFileError, SecureImportError, WrongPassphraseError


def test_the_signing_functions_are_public_and_loaded_only_when_used() -> None:
    assert {"generate_key", "save_key_pair", "load_private_key", "sign_tree"} <= set(su.__all__)
    code = (
        "import sys, secure_urlimport\n"
        "assert not [m for m in sys.modules if m.startswith('secure_urlimport.publish')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_lazy_names_are_exactly_the_publishing_modules_public_names() -> None:
    """The package's lazy list is kept by hand (reading publish/public.py's
    __all__ would import it at start-up): it must never drift from it."""
    from secure_urlimport import _PUBLISHING
    from secure_urlimport.publish import public

    assert set(public.__all__) == _PUBLISHING
    assert set(su.__all__) >= _PUBLISHING
    for name in _PUBLISHING:
        assert getattr(su, name) is getattr(public, name)


def test_a_key_pair_is_saved_private_and_loads_back_with_its_passphrase(tmp_path: Path) -> None:
    key = su.generate_key()
    key_path, pub_path = su.save_key_pair(key, tmp_path / "publisher", passphrase=b"pw")
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert su.load_private_key(key_path, b"pw").keyid == key.keyid
    assert key.keyid in pub_path.read_text()


def test_a_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    key_path, _ = su.save_key_pair(su.generate_key(), tmp_path / "k", passphrase=b"pw")
    with pytest.raises(WrongPassphraseError):
        su.load_private_key(key_path, b"not it")


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    su.save_key_pair(su.generate_key(), tmp_path / "k", passphrase=None)
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(KeyFileError):
        su.save_key_pair(su.generate_key(), tmp_path / "k", passphrase=None)
    assert (tmp_path / "k.key").read_bytes() == before


def test_sign_tree_signs_every_file_and_bumps_the_version(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "mod.py").write_text("VALUE = 1\n")
    key = su.generate_key()
    first = su.sign_tree(tree, key, expires_in=timedelta(days=7))
    second = su.sign_tree(tree, [key])
    assert (first.version, first.files) == (1, 1)
    assert second.version == 2
    assert second.manifest_path == tree / "secure-urlimport.manifest"


def test_sign_tree_of_a_missing_directory_is_a_secure_import_error(tmp_path: Path) -> None:
    with pytest.raises(SecureImportError, match="not a directory"):
        su.sign_tree(tmp_path / "missing", su.generate_key())


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        su.no_such_name  # noqa: B018
