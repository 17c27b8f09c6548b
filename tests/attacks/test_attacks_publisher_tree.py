"""A hostile contributor edits the publisher's checkout: the committed manifest and bundle.

The signer, ``sign --check`` and the local ``verify`` gate read two names the
walk skips, ``secure-urlimport.manifest`` and ``secure-urlimport.bundle``.  A
contributor controls both: an edited ``"version"`` must not steer the next
release's version (2**63 - 1 would lock every later release out), odd bytes
or a directory must end in a clear error, and a symlink to a FIFO or to
``/dev/zero`` must never be followed (it would hang or eat all memory).
Every CLI run has a timeout (``publisher_tools.TIMEOUT``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import write_tree
from publisher_tools import assert_clean_failure, cli, keygen, set_manifest_version

from secure_urlimport import install
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.manifest import MAX_VERSION, parse_manifest_body, split_manifest_file
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME
from secure_urlimport.errors import ConfigurationError, ManifestFormatError, SigningError
from secure_urlimport.publish.signing import sign_tree
from secure_urlimport.publish.versions import MAX_VERSION_JUMP

K1 = PrivateKey.from_seed(bytes([0x31]) * 32)
K2 = PrivateKey.from_seed(bytes([0x32]) * 32)
STRANGER = PrivateKey.from_seed(bytes([0x33]) * 32)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "SIGNED = 1\n"})


@pytest.fixture
def signed(tmp_path: Path, tree: Path) -> tuple[Path, Path, Path]:
    """A tree signed by the real CLI as version 1: (tree, key, pub)."""
    key, pub = keygen(tmp_path / "keys" / "publisher")
    assert cli("sign", tree, "--key", key).returncode == 0
    return tree, key, pub


def _version(root: Path) -> int:
    signed = split_manifest_file((root / MANIFEST_NAME).read_bytes())
    return parse_manifest_body(signed.body).version


# -- item 4: the version comes only from a manifest the signing keys signed ---------------


@pytest.mark.parametrize("script", [False, True], ids=["cli", "sign_tree.py"])
def test_contributor_who_edits_the_committed_version_cannot_make_sign_publish_the_last_version(
    signed: tuple[Path, Path, Path], script: bool
) -> None:
    root, key, _ = signed
    set_manifest_version(root / MANIFEST_NAME, MAX_VERSION - 1)
    edited = (root / MANIFEST_NAME).read_bytes()
    result = cli("sign", root, "--key", key, script=script)
    assert_clean_failure(result, MANIFEST_NAME, "not a manifest signed by", "--version N")
    assert (root / MANIFEST_NAME).read_bytes() == edited  # nothing published
    # The publisher names the version; the edited number is gone for good.
    assert cli("sign", root, "--key", key, "--version", "2", script=script).returncode == 0
    assert _version(root) == 2


def test_client_that_saw_v1_takes_the_next_release_after_the_contributor_edit(
    signed: tuple[Path, Path, Path], serve, tls
) -> None:
    root, key, pub = signed
    server = serve(root)
    install(server.url, pubkey=pub, cafile=tls.cafile).uninstall()  # the client saw v1
    set_manifest_version(root / MANIFEST_NAME, MAX_VERSION - 1)
    assert cli("sign", root, "--key", key).returncode == 1
    write_tree(root, {"pkg/mod.py": "SIGNED = 2\n"})
    assert cli("sign", root, "--key", key, "--version", "2").returncode == 0
    install(server.url, pubkey=pub, cafile=tls.cafile)
    import pkg.mod

    assert pkg.mod.SIGNED == 2
    assert _version(root) == 2  # not 2**63 - 1: later releases stay possible


def test_manifest_signed_by_another_key_gives_no_version(tree: Path) -> None:
    sign_tree(tree, [STRANGER], version=MAX_VERSION - 1, allow_version_jump=True)
    with pytest.raises(SigningError, match=rf"{K1.keyid}.*--version N"):
        sign_tree(tree, [K1])
    assert sign_tree(tree, [K1], version=5).version == 5  # the caller chose it


def test_manifest_signed_by_one_of_the_signing_keys_continues_its_version(tree: Path) -> None:
    sign_tree(tree, [K1], version=41)
    assert sign_tree(tree, [K1, K2]).version == 42  # adding a signer keeps counting
    assert sign_tree(tree, [K2]).version == 43


@pytest.mark.parametrize("previous", [None, 1])
def test_version_jump_beyond_two_to_the_32_needs_the_explicit_flag(
    tree: Path, previous: int | None
) -> None:
    base = 0
    if previous is not None:
        base = sign_tree(tree, [K1], version=previous).version
    with pytest.raises(SigningError, match="--allow-version-jump"):
        sign_tree(tree, [K1], version=base + MAX_VERSION_JUMP + 1)
    signed = sign_tree(tree, [K1], version=base + MAX_VERSION_JUMP + 1, allow_version_jump=True)
    assert signed.version == base + MAX_VERSION_JUMP + 1


def test_version_jump_of_exactly_two_to_the_32_needs_no_flag(tree: Path) -> None:
    sign_tree(tree, [K1])
    assert sign_tree(tree, [K1], version=1 + MAX_VERSION_JUMP).version == 1 + MAX_VERSION_JUMP


def test_allow_version_jump_on_the_command_line(signed: tuple[Path, Path, Path]) -> None:
    root, key, _ = signed
    huge = str(MAX_VERSION)
    assert_clean_failure(cli("sign", root, "--key", key, "--version", huge), "--allow-version-jump")
    assert _version(root) == 1
    result = cli("sign", root, "--key", key, "--version", huge, "--allow-version-jump")
    assert result.returncode == 0, result.stderr
    assert _version(root) == MAX_VERSION
    check = cli("sign", "--check", root, "--key", key, "--allow-version-jump")
    assert check.returncode == 2 and "no effect with --check" in check.stderr


def test_version_zero_with_the_jump_flag_is_still_a_configuration_error(tree: Path) -> None:
    with pytest.raises(ConfigurationError):
        sign_tree(tree, [K1], version=0, allow_version_jump=True)


def _non_ascii_file_signature(manifest: Path) -> None:
    data = manifest.read_bytes()
    edited = re.sub(
        rb'("signatures": \{"[0-9a-f]{16}": ")', lambda m: m.group(1) + "é".encode(), data, count=1
    )
    assert edited != data
    manifest.write_bytes(edited)


def test_non_ascii_file_signature_is_a_manifest_format_error() -> None:
    body = (
        b'{"created": "2030-01-01T00:00:00Z", "expires": "2030-02-01T00:00:00Z", '
        b'"format": 1, "keyids": [], "type": "secure-urlimport/manifest", "version": 1, '
        b'"files": {"a.txt": {"sha256": "' + b"0" * 64 + b'", "size": 0, '
        b'"signatures": {"0123456789abcdef": "\xc3\xa9AAA"}}}}'
    )
    with pytest.raises(ManifestFormatError, match="not base64"):
        parse_manifest_body(body)


@pytest.mark.parametrize("damage", ["non-ascii-signature", "directory"])
@pytest.mark.parametrize("command", ["sign", "sign --check", "verify"])
def test_committed_manifest_with_a_non_ascii_signature_or_as_a_directory_fails_cleanly(
    signed: tuple[Path, Path, Path], damage: str, command: str
) -> None:
    root, key, pub = signed
    manifest = root / MANIFEST_NAME
    if damage == "directory":
        manifest.unlink()
        manifest.mkdir()
    else:
        # sign --check parses the body without verifying it: this used to crash it.
        _non_ascii_file_signature(manifest)
    commands: dict[str, list[str | Path]] = {
        "sign": ["sign", root, "--key", key],
        "sign --check": ["sign", "--check", root, "--key", key],
        "verify": ["verify", root, "--pubkey", pub],
    }
    args = commands[command]
    out = assert_clean_failure(cli(*args))
    assert MANIFEST_NAME in out


def test_non_ascii_signature_in_a_validly_signed_manifest_is_refused_by_the_gate(
    tree: Path, tmp_path: Path
) -> None:
    from secure_urlimport._format.manifest import encode_manifest, manifest_message

    sign_tree(tree, [K1])
    signed_file = split_manifest_file((tree / MANIFEST_NAME).read_bytes())
    body = re.sub(
        rb'("signatures": \{"[0-9a-f]{16}": ")',
        lambda m: m.group(1) + "é".encode(),
        signed_file.body,
        count=1,
    )
    sig = K1.sign(manifest_message(K1.keyid, body))  # the publisher's key signed it
    (tree / MANIFEST_NAME).write_bytes(encode_manifest(body, [(K1.keyid, sig)]))
    pub = tmp_path / "k1.pub"
    pub.write_text(K1.public.to_line(), encoding="ascii")
    assert_clean_failure(cli("verify", tree, "--pubkey", pub), "invalid-manifest", "not base64")
    assert_clean_failure(cli("sign", "--check", tree, "--pubkey", pub), "not base64")


# -- item 5: a symlinked (or special) manifest or bundle is never followed ----------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs os.mkfifo")
    path = tmp_path / "planted-fifo"
    os.mkfifo(path)
    return path


def _plant(root: Path, name: str, target: Path) -> None:
    (root / name).unlink()
    (root / name).symlink_to(target)


COMMANDS = ["sign", "sign_tree.py", "sign --check", "verify"]


def _run(command: str, root: Path, key: Path, pub: Path):
    if command == "verify":
        return cli("verify", root, "--pubkey", pub)
    if command == "sign --check":
        return cli("sign", "--check", root, "--key", key)
    return cli("sign", root, "--key", key, script=command == "sign_tree.py")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("command", COMMANDS)
def test_manifest_committed_as_a_symlink_to_a_fifo_or_dev_zero_is_never_followed(
    signed: tuple[Path, Path, Path], fifo: Path, target: str, command: str
) -> None:
    root, key, pub = signed
    _plant(root, MANIFEST_NAME, fifo if target == "fifo" else Path(target))
    out = assert_clean_failure(_run(command, root, key, pub), "symlink")
    assert MANIFEST_NAME in out
    assert (root / MANIFEST_NAME).is_symlink()  # refused, not replaced behind the user's back


@pytest.mark.parametrize("command", COMMANDS)
def test_manifest_that_is_a_real_fifo_is_refused_without_waiting(
    signed: tuple[Path, Path, Path], command: str
) -> None:
    root, key, pub = signed
    (root / MANIFEST_NAME).unlink()
    os.mkfifo(root / MANIFEST_NAME)
    assert_clean_failure(_run(command, root, key, pub), "not a regular file")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_bundle_committed_as_a_symlink_is_reported_by_verify_and_replaced_by_sign(
    signed: tuple[Path, Path, Path], fifo: Path, target: str
) -> None:
    root, key, pub = signed
    real_target = fifo if target == "fifo" else Path(target)
    _plant(root, BUNDLE_NAME, real_target)
    assert_clean_failure(cli("verify", root, "--pubkey", pub), "stale-bundle", "symlink")
    assert cli("sign", "--check", root, "--key", key).returncode == 0  # sign rewrites it
    result = cli("sign", root, "--key", key)
    assert result.returncode == 0, result.stderr
    bundle = root / BUNDLE_NAME
    assert not bundle.is_symlink() and bundle.is_file()  # the link itself was replaced
    assert cli("verify", root, "--pubkey", pub).returncode == 0
    if target == "fifo":
        assert fifo.is_fifo()  # never written through


def test_manifest_symlink_is_replaced_when_the_publisher_names_the_version(
    signed: tuple[Path, Path, Path], fifo: Path
) -> None:
    root, key, pub = signed
    _plant(root, MANIFEST_NAME, fifo)
    assert cli("sign", root, "--key", key, "--version", "2").returncode == 0
    assert not (root / MANIFEST_NAME).is_symlink() and fifo.is_fifo()
    assert cli("verify", root, "--pubkey", pub).returncode == 0


def test_signed_file_swapped_for_a_dev_zero_symlink_after_signing_is_missing_for_verify(
    signed: tuple[Path, Path, Path],
) -> None:
    root, _, pub = signed
    (root / "pkg" / "mod.py").unlink()
    (root / "pkg" / "mod.py").symlink_to("/dev/zero")
    assert_clean_failure(cli("verify", root, "--pubkey", pub), "missing", "unpublishable")


def test_oversized_committed_manifest_is_refused_by_size_not_read_whole(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, key, pub = signed
    from secure_urlimport.publish.versions import MAX_MANIFEST_BYTES

    with open(root / MANIFEST_NAME, "r+b") as handle:  # sparse: no disk used
        handle.truncate(MAX_MANIFEST_BYTES + 10)
    assert_clean_failure(cli("sign", root, "--key", key), "larger than")
    assert_clean_failure(cli("verify", root, "--pubkey", pub), "larger than")
    assert_clean_failure(cli("sign", "--check", root, "--key", key), "larger than")
    shutil.rmtree(root)


@pytest.mark.parametrize("kind", ["symlink-to-fifo", "fifo", "symlink-to-dev-zero", "directory"])
def test_tree_reader_refuses_links_and_special_files_without_blocking(
    tmp_path: Path, fifo: Path, kind: str
) -> None:
    from secure_urlimport.publish.localfile import UnsafeFileError, read_tree_file

    path = tmp_path / "name"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(fifo if kind == "symlink-to-fifo" else Path("/dev/zero"))
    with pytest.raises(UnsafeFileError):
        read_tree_file(path, 10)


def test_tree_reader_stops_one_byte_past_the_cap(tmp_path: Path) -> None:
    from secure_urlimport.publish.localfile import read_tree_file

    (tmp_path / "big").write_bytes(b"x" * 1000)
    assert len(read_tree_file(tmp_path / "big", 10)) == 11
    assert read_tree_file(tmp_path / "big") == b"x" * 1000
