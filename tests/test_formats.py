"""The verification core and the signed formats, attacked with hostile bytes (no network).

Each test stages one attack (python-tuf style) and asserts the exact exception
class.  Hostile manifest *bodies* are signed properly with a test key, so the
refusal comes from parsing, not from a signature check.

Nothing here depends on tests/conftest.py: keys are fixed seeds, trees are built
in memory or under ``tmp_path``, and the clock is passed in explicitly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_urlimport import install
from secure_urlimport._format.keys import (
    KEYID_TAG,
    PrivateKey,
    PublicKey,
    TrustedKeys,
    load_public_keys,
)
from secure_urlimport._format.manifest import (
    MAGIC,
    MAX_FILES,
    FileEntry,
    Manifest,
    encode_body,
    encode_manifest,
    file_message,
    format_time,
    manifest_message,
    split_manifest_file,
)
from secure_urlimport._format.paths import MANIFEST_NAME, is_module_name, path_problem
from secure_urlimport._store.state import StateStore
from secure_urlimport._trust.verify import TrustedState, verify_file, verify_manifest
from secure_urlimport.errors import (
    BadSignatureError,
    ConfigurationError,
    ExpiredManifestError,
    KeyFileError,
    ManifestFormatError,
    RollbackError,
    SecureImportError,
    TamperedFileError,
    UntrustedKeyError,
)
from secure_urlimport.publish.signing import sign_tree

# --------------------------------------------------------------------------- helpers

K1 = PrivateKey.from_seed(bytes([1]) * 32)
K2 = PrivateKey.from_seed(bytes([2]) * 32)
K3 = PrivateKey.from_seed(bytes([3]) * 32)
STRANGER = PrivateKey.from_seed(bytes([0xEE]) * 32)

#: The signing time of every manifest built here, and a moment inside its validity.
SIGNED_AT = datetime(2031, 5, 17, 12, 0, 0, tzinfo=UTC)
LIFETIME = timedelta(days=90)
CHECK_AT = SIGNED_AT + timedelta(hours=1)
URL = "https://example.invalid/tree/secure-urlimport.manifest"

#: Ed25519 group order.
L = 2**252 + 27742317777372353535851937790883648493

FILES: dict[str, bytes] = {
    "mod.py": b"VALUE = 1\n",
    "pkg/__init__.py": b"",
    "pkg/sub.py": b"def f():\n    return 42\n",
    "pkg/data/table.json": b'{"a": 1}\n',
}


def pinned(*keys: PrivateKey, threshold: int = 1) -> TrustedKeys:
    return TrustedKeys.from_arg([k.public for k in keys], threshold)


def sign_body(body: bytes, *keys: PrivateKey) -> bytes:
    """A manifest file carrying *body* with a valid signature by each key."""
    return encode_manifest(body, [(k.keyid, k.sign(manifest_message(k.keyid, body))) for k in keys])


def file_entry(path: str, data: bytes, keys: Iterable[PrivateKey], version: int) -> FileEntry:
    sha = hashlib.sha256(data).hexdigest()
    sigs = {k.keyid: k.sign(file_message(k.keyid, version, path, sha, len(data))) for k in keys}
    return FileEntry(path, len(data), sha, sigs)


def build_body(
    files: dict[str, bytes] | None = None,
    keys: Iterable[PrivateKey] = (K1,),
    *,
    version: int = 1,
    signed_at: datetime = SIGNED_AT,
    lifetime: timedelta = LIFETIME,
) -> bytes:
    """The body sign_tree would write for *files* (in memory, no tree)."""
    keys = list(keys)
    files = FILES if files is None else files
    entries = {p: file_entry(p, d, keys, version) for p, d in files.items()}
    manifest = Manifest(
        version, signed_at, signed_at + lifetime, tuple(k.keyid for k in keys), entries
    )
    return encode_body(manifest)


def build_manifest(
    files: dict[str, bytes] | None = None, keys: Iterable[PrivateKey] = (K1,), **kwargs: Any
) -> bytes:
    keys = list(keys)
    return sign_body(build_body(files, keys, **kwargs), *keys)


def verify(
    data: bytes,
    trusted: TrustedKeys | None = None,
    *,
    now: datetime = CHECK_AT,
    previous: TrustedState | None = None,
) -> Manifest:
    return verify_manifest(data, trusted or pinned(K1), now=now, previous=previous, url=URL)


def body_object(**kwargs: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(build_body(**kwargs))
    return obj


def signed_json(obj: object) -> bytes:
    return sign_body(json.dumps(obj).encode("utf-8"), K1)


def split_body(data: bytes) -> bytes:
    return split_manifest_file(data).body


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


VALID = build_manifest()
VALID_MANIFEST = verify(VALID)


# --------------------------------------------------------------------------- round trip


def test_signed_tree_round_trips_and_every_file_verifies(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", FILES)
    result = sign_tree(root, [K1], now=SIGNED_AT)
    manifest = verify((root / MANIFEST_NAME).read_bytes())
    assert result.version == manifest.version == 1
    assert manifest.expires == SIGNED_AT + LIFETIME == result.expires
    assert manifest.keyids == (K1.keyid,)
    assert set(manifest.files) == set(FILES)
    for rel, entry in manifest.files.items():
        verify_file(entry, (root / rel).read_bytes(), manifest, pinned(K1), url=rel)
    assert set(manifest.directories) == {"", "pkg", "pkg/data"}
    assert manifest.children("") == ["mod.py", "pkg"]
    assert manifest.children("pkg") == ["__init__.py", "data", "sub.py"]


def test_sign_tree_output_is_reproducible_and_matches_the_documented_format(
    tmp_path: Path,
) -> None:
    # Ed25519 is deterministic: the same tree, key, version and time give the
    # same bytes, and they equal an independent in-memory build of the format.
    root = write_tree(tmp_path / "tree", FILES)
    sign_tree(root, [K1], now=SIGNED_AT, name="")
    assert (root / MANIFEST_NAME).read_bytes() == VALID


def test_key_id_is_stable_for_a_known_key() -> None:
    # RFC 8032 test vector 1: the key id is part of every signed message, so
    # changing its derivation would invalidate every published tree.
    key = PrivateKey.from_seed(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert key.public.raw == raw
    assert key.keyid == "be401aa7419a1296"
    assert key.keyid == hashlib.sha256(KEYID_TAG + raw).hexdigest()[:16]
    assert PublicKey.from_raw(raw).keyid == key.keyid


def test_signed_messages_and_manifest_are_byte_for_byte_the_documented_format() -> None:
    # Known answers (SECURITY.md, "Formats"): the tags, the length prefixes,
    # the magic line, the body layout and the key-id derivation are shared
    # with every published tree; a change to any of them must show here.
    assert file_message(K1.keyid, 7, "pkg/mod.py", "ab" * 32, 5) == (
        b"\x00\x00\x00\x18secure-urlimport/file/v1"
        b"\x00\x00\x00\x10e3806b4906978550"
        b"\x00\x00\x00\x017"
        b"\x00\x00\x00\x0apkg/mod.py"
        b"\x00\x00\x00\x20" + b"\xab" * 32 + b"\x00\x00\x00\x015"
    )
    assert manifest_message(K1.keyid, b"{}") == (
        b"\x00\x00\x00\x1csecure-urlimport/manifest/v1"
        b"\x00\x00\x00\x10e3806b4906978550"
        b"\x00\x00\x00\x02{}"
    )
    assert VALID.startswith(b"secure-urlimport-manifest v1\nsignature e3806b4906978550 ")
    assert hashlib.sha256(VALID).hexdigest() == (
        "7a5d6be5e1cacc1413e89f0a028036dcc58545ee9dd41f9ab8fef90a43db4875"
    )


def test_pub_line_round_trips() -> None:
    line = K1.public.to_line()
    assert line.startswith(f"ed25519 {K1.keyid} ") and line.endswith("\n")
    assert PublicKey.from_line(line) == K1.public
    assert PublicKey.from_line("  " + line.strip() + "  \n\n") == K1.public
    assert PublicKey.from_line(line) != K2.public


def test_pub_line_whose_base64_carries_a_stray_character_is_rejected() -> None:
    # A lenient decoder drops the '*' and loads the key: refuse the damaged line.
    prefix, keyid, encoded = K1.public.to_line().split()
    with pytest.raises(KeyFileError, match="not valid base64"):
        PublicKey.from_line(f"{prefix} {keyid} {encoded[:10]}*{encoded[10:]}")


def test_pub_line_with_a_non_ascii_key_is_a_key_file_error_even_through_install() -> None:
    _, keyid, b64 = K1.public.to_line().split()
    line = f"ed25519 {keyid} {b64[:-2]}é=\n"
    with pytest.raises(KeyFileError, match="not valid base64"):
        PublicKey.from_line(line)
    with pytest.raises(KeyFileError, match="not valid base64"):
        install("https://127.0.0.1:9/tree", pubkey=line)  # refused before any request


def test_pub_line_with_damaged_key_id_is_rejected() -> None:
    _, keyid, b64 = K1.public.to_line().split()
    damaged = ("0" if keyid[0] != "0" else "1") + keyid[1:]
    with pytest.raises(KeyFileError, match="damaged"):
        PublicKey.from_line(f"ed25519 {damaged} {b64}\n")


def test_pub_line_carrying_another_key_under_a_pinned_key_id_is_rejected() -> None:
    _, keyid, _ = K1.public.to_line().split()
    _, _, other = K2.public.to_line().split()
    with pytest.raises(KeyFileError):
        PublicKey.from_line(f"ed25519 {keyid} {other}\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ed25519",
        "ssh-ed25519 AAAA",
        f"rsa {K1.keyid} {base64.b64encode(K1.public.raw).decode()}",
        f"ed25519 {K1.keyid} !!!notbase64!!!",
        f"ed25519 {K1.keyid} {base64.b64encode(K1.public.raw).decode()} extra",
    ],
    ids=["empty", "prefix-only", "ssh-prefix", "rsa-prefix", "bad-base64", "extra-field"],
)
def test_malformed_pub_line_is_rejected(text: str) -> None:
    with pytest.raises(KeyFileError):
        PublicKey.from_line(text)


def test_pub_line_with_wrong_key_length_is_rejected() -> None:
    b64 = base64.b64encode(bytes(31)).decode()
    with pytest.raises(ConfigurationError):
        PublicKey.from_line(f"ed25519 0000000000000000 {b64}")


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_raw_key_of_wrong_length_is_rejected(length: int) -> None:
    with pytest.raises(ConfigurationError):
        PublicKey.from_raw(b"\xff" * length)


def test_non_ascii_bytes_of_wrong_length_are_rejected_as_pubkey() -> None:
    with pytest.raises(ConfigurationError):
        load_public_keys(b"\xff" * 31)


def test_load_public_keys_accepts_every_documented_form(tmp_path: Path) -> None:
    pub = tmp_path / "k1.pub"
    pub.write_text(K1.public.to_line(), encoding="ascii")
    crypto_key = Ed25519PrivateKey.from_private_bytes(K1.seed()).public_key()
    forms: list[Any] = [  # bytearray too, which PubKeyArg does not name
        pub,
        str(pub),
        K1.public.to_line(),
        K1.public.to_line().encode("ascii"),
        K1.public.raw,
        bytearray(K1.public.raw),
        crypto_key,
        K1.public,
    ]
    for form in forms:
        assert load_public_keys(form) == [K1.public], form


def test_load_public_keys_collapses_duplicates(tmp_path: Path) -> None:
    pub = tmp_path / "k1.pub"
    pub.write_text(K1.public.to_line(), encoding="ascii")
    keys = load_public_keys([pub, K1.public.raw, K2.public, K1.public.to_line(), K2.public.raw])
    assert keys == [K1.public, K2.public]
    assert load_public_keys((K1.public, K1.public)) == [K1.public]


def test_load_public_keys_refuses_an_empty_list() -> None:
    with pytest.raises(ConfigurationError):
        load_public_keys([])


def test_load_public_keys_refuses_an_unsupported_type() -> None:
    with pytest.raises(ConfigurationError):
        load_public_keys(42)  # type: ignore[arg-type]  # the wrong type is the test


def test_missing_pub_file_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_public_keys(tmp_path / "absent.pub")


@pytest.mark.parametrize(("count", "threshold"), [(1, 0), (1, 2), (2, 3), (3, -1)])
def test_threshold_that_cannot_be_met_is_a_configuration_error(count: int, threshold: int) -> None:
    with pytest.raises(ConfigurationError):
        TrustedKeys.from_arg([K1.public, K2.public, K3.public][:count], threshold)


def test_duplicate_pinned_keys_do_not_inflate_the_threshold() -> None:
    # Pinning the same key twice must not make threshold=2 reachable with one key.
    with pytest.raises(ConfigurationError):
        TrustedKeys.from_arg([K1.public, K1.public.raw], 2)


def test_trusted_keys_have_no_default_threshold_a_new_caller_could_forget() -> None:
    # A default (say 0, accepting a manifest no pinned key signed) is what the
    # next caller would inherit without thinking: every caller must choose.
    with pytest.raises(TypeError):
        TrustedKeys({K1.keyid: K1.public})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TrustedKeys.from_arg(K1.public)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "threshold", [0, -1, 3, True, 1.0], ids=["zero", "negative", "above-count", "bool", "float"]
)
def test_trusted_keys_built_directly_refuse_a_threshold_that_is_not_a_count_of_signers(
    threshold: object,
) -> None:
    with pytest.raises(ConfigurationError):
        TrustedKeys({K1.keyid: K1.public, K2.keyid: K2.public}, threshold)  # type: ignore[arg-type]


def test_private_key_repr_never_shows_key_material() -> None:
    assert K1.seed().hex() not in repr(K1)
    assert base64.b64encode(K1.seed()).decode() not in repr(K1)
    assert K1.keyid in repr(K1)


# --------------------------------------------------------------------------- manifest signatures


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_in_manifest_body_is_rejected(where: str) -> None:
    body_start = len(VALID) - len(split_body(VALID))
    index = {"first": body_start, "middle": (body_start + len(VALID)) // 2, "last": -1}[where]
    tampered = bytearray(VALID)
    tampered[index] ^= 0x01
    with pytest.raises(BadSignatureError):
        verify(bytes(tampered))


def test_raised_version_in_manifest_body_is_rejected() -> None:
    tampered = VALID.replace(b'"version": 1', b'"version": 9')
    assert tampered != VALID
    with pytest.raises(BadSignatureError):
        verify(tampered)


def test_appended_bytes_after_manifest_body_are_rejected() -> None:
    with pytest.raises(BadSignatureError):
        verify(VALID + b"\n")


def test_manifest_body_truncated_is_rejected() -> None:
    with pytest.raises(BadSignatureError):
        verify(VALID[:-10])


def test_manifest_signed_by_unpinned_key_is_rejected() -> None:
    forged = build_manifest(keys=[STRANGER])
    with pytest.raises(UntrustedKeyError) as info:
        verify(forged)
    assert STRANGER.keyid in str(info.value)
    assert K1.keyid in str(info.value)


def test_signature_by_another_pinned_key_relabelled_as_k1_is_rejected() -> None:
    # k2 signed, and the attacker labels the line with k1's id: the key id is in
    # the signed message, so the signature cannot be moved between keys.
    body = split_body(VALID)
    sig = K2.sign(manifest_message(K2.keyid, body))
    with pytest.raises(BadSignatureError):
        verify(encode_manifest(body, [(K1.keyid, sig)]), pinned(K1, K2))


def test_manifest_signature_cannot_be_used_as_a_file_signature() -> None:
    # Domain separation: the manifest message and the file message differ.
    body = split_body(VALID)
    assert manifest_message(K1.keyid, body) != file_message(K1.keyid, 1, "x", "0" * 64, 0)
    assert manifest_message(K1.keyid, b"").startswith(b"\x00\x00\x00\x1csecure-urlimport/manifest")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(MAGIC[:-1], id="magic-without-newline"),
        pytest.param(MAGIC, id="magic-only"),
        pytest.param(VALID[: len(MAGIC) + 20], id="cut-in-signature-line"),
        pytest.param(VALID[: VALID.index(b"\n\n")], id="cut-before-blank-line"),
        pytest.param(VALID[: VALID.index(b"\n\n") + 1], id="cut-in-blank-line"),
    ],
)
def test_truncated_manifest_is_rejected(data: bytes) -> None:
    with pytest.raises(ManifestFormatError):
        verify(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00" * 100, id="zeros"),
        pytest.param(b"<html>404 Not Found</html>", id="html"),
        pytest.param(b'{"version": 1}', id="bare-json"),
        pytest.param(VALID.replace(b"manifest v1", b"manifest v2", 1), id="format-v2"),
        pytest.param(VALID.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(b"\xef\xbb\xbf" + VALID, id="utf8-bom"),
        pytest.param(b" " + VALID, id="leading-space"),
    ],
)
def test_garbage_manifest_is_rejected(data: bytes) -> None:
    with pytest.raises(ManifestFormatError):
        verify(data)


def test_manifest_without_signature_line_is_rejected() -> None:
    with pytest.raises(ManifestFormatError):
        verify(MAGIC + b"\n" + split_body(VALID))


def test_manifest_without_blank_line_is_rejected() -> None:
    data = VALID.replace(b"\n\n", b"\n", 1)
    assert b"\n\n" not in data
    with pytest.raises(ManifestFormatError):
        verify(data)


def test_empty_signature_line_is_rejected() -> None:
    body = split_body(VALID)
    line = VALID[len(MAGIC) : VALID.index(b"\n\n")]
    with pytest.raises(ManifestFormatError):
        verify(MAGIC + b"\n" + line + b"\n\n" + body)


_FORMAT = ManifestFormatError


def _lenient_base64(text: bytes) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        return False
    return True


# Python 3.11/3.12 decode 'QUJD=' (surplus padding after a full quantum); 3.13
# refuses it.  Either way the line is refused, as a bad signature or bad format.
_SURPLUS_PADDING = BadSignatureError if _lenient_base64(b"QUJD=") else ManifestFormatError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"signature KEYID !!!!", _FORMAT, id="bad-base64"),
        pytest.param(b"signature KEYID QUJD\xff", _FORMAT, id="non-ascii-base64"),
        pytest.param(b"signature K\xe9YID QUJD", _FORMAT, id="non-ascii-keyid"),
        pytest.param(b"signature KEYID", _FORMAT, id="missing-field"),
        pytest.param(b"signature KEYID QUJD extra", _FORMAT, id="extra-field"),
        pytest.param(b"signature  KEYID QUJD", _FORMAT, id="double-space"),
        pytest.param(b"signed KEYID QUJD", _FORMAT, id="wrong-word"),
        pytest.param(b"signature\tKEYID\tQUJD", _FORMAT, id="tabs"),
        pytest.param(b"signature KEYID QU JD", _FORMAT, id="space-in-base64"),
        pytest.param(b"signature KEYID QUJD=====", _SURPLUS_PADDING, id="padding-run"),
        pytest.param(b"signature KEYID =QUJD", _FORMAT, id="leading-padding"),
        # Well-formed lines whose signature is simply wrong (3 bytes, not 64):
        pytest.param(b"signature KEYID QUJD", BadSignatureError, id="short-signature"),
        pytest.param(b"signature KEYID QUJD=", _SURPLUS_PADDING, id="surplus-padding"),
        pytest.param(b"signature KEYID ", BadSignatureError, id="empty-signature"),
    ],
)
def test_signature_line_with_bad_syntax_is_rejected(line: bytes, expected: type[Exception]) -> None:
    body = split_body(VALID)
    data = MAGIC + line.replace(b"KEYID", K1.keyid.encode()) + b"\n\n" + body
    with pytest.raises(expected):
        verify(data)


def test_more_than_64_signature_lines_are_rejected() -> None:
    body = split_body(VALID)
    good = (K1.keyid, K1.sign(manifest_message(K1.keyid, body)))
    noise = [(STRANGER.keyid, bytes(64))] * 63
    assert verify(encode_manifest(body, [*noise, good])) == VALID_MANIFEST
    with pytest.raises(ManifestFormatError):
        verify(encode_manifest(body, [*noise, (STRANGER.keyid, bytes(64)), good]))


def test_same_key_signing_twice_counts_once_toward_threshold() -> None:
    body = split_body(build_manifest(keys=[K1, K2]))
    sig = K1.sign(manifest_message(K1.keyid, body))
    with pytest.raises(UntrustedKeyError):
        verify(
            encode_manifest(body, [(K1.keyid, sig), (K1.keyid, sig)]),
            pinned(K1, K2, threshold=2),
        )


def test_two_of_three_pinned_keys_meet_threshold_two() -> None:
    data = build_manifest(keys=[K1, K2])
    manifest = verify(data, pinned(K1, K2, K3, threshold=2))
    assert manifest.keyids == (K1.keyid, K2.keyid)
    for path, entry in manifest.files.items():
        verify_file(entry, FILES[path], manifest, pinned(K1, K2, K3, threshold=2), url=path)


def test_one_of_three_pinned_keys_does_not_meet_threshold_two() -> None:
    with pytest.raises(UntrustedKeyError) as info:
        verify(build_manifest(keys=[K1]), pinned(K1, K2, K3, threshold=2))
    assert "2 of the pinned key(s)" in str(info.value)


def test_pinned_plus_stranger_signature_does_not_meet_threshold_two() -> None:
    with pytest.raises(UntrustedKeyError) as info:
        verify(build_manifest(keys=[K1, STRANGER]), pinned(K1, K2, threshold=2))
    assert STRANGER.keyid in str(info.value)


def test_second_pinned_signature_over_other_bytes_is_rejected() -> None:
    body = split_body(VALID)
    other = split_body(build_manifest(version=2))
    sigs = [
        (K1.keyid, K1.sign(manifest_message(K1.keyid, body))),
        (K2.keyid, K2.sign(manifest_message(K2.keyid, other))),
    ]
    with pytest.raises(BadSignatureError) as info:
        verify(encode_manifest(body, sigs), pinned(K1, K2, threshold=2))
    assert K2.keyid in str(info.value)


def test_one_bad_pinned_signature_does_not_spoil_a_met_threshold() -> None:
    # threshold 1: k1 valid, k2 garbage -> still k1's valid signature counts.
    body = split_body(VALID)
    sigs = [(K2.keyid, bytes(64)), (K1.keyid, K1.sign(manifest_message(K1.keyid, body)))]
    assert verify(encode_manifest(body, sigs), pinned(K1, K2)) == VALID_MANIFEST


def _signatures(body: bytes, *keys: PrivateKey) -> list[tuple[str, bytes]]:
    return [(k.keyid, k.sign(manifest_message(k.keyid, body))) for k in keys]


@pytest.mark.parametrize(
    ("order", "threshold"),
    [
        ((K1, K2), 1),
        ((K2, K1), 1),
        ((K1, K1, K2), 1),
        ((STRANGER, K1, K1, K3, K2), 1),
        ((K1, K2, K3), 2),
        ((K3, K3, K1, K2), 2),
    ],
    ids=["a-b", "b-a", "a-a-b", "stranger-a-a-c-b", "a-b-c-of-two", "c-c-a-b-of-two"],
)
def test_every_valid_pinned_signer_is_recorded_not_only_enough_for_the_threshold(
    order: tuple[PrivateKey, ...], threshold: int
) -> None:
    # Rollback records are kept per signer: a signer missing here never has
    # its record raised, and once the others are unpinned an older release
    # it signed would pass (tests/attacks: ..._after_the_first_key_is_dropped).
    body = build_body(keys=[K1, K2, K3])
    manifest = verify(
        encode_manifest(body, _signatures(body, *order)), pinned(K1, K2, K3, threshold=threshold)
    )
    assert manifest.signers == {k.keyid for k in order} - {STRANGER.keyid}


def test_a_bad_signature_is_not_recorded_as_a_signer() -> None:
    body = split_body(VALID)
    sigs = [*_signatures(body, K1), (K2.keyid, bytes(64)), (K3.keyid, K3.sign(b"other"))]
    assert verify(encode_manifest(body, sigs), pinned(K1, K2, K3)).signers == {K1.keyid}


#: Key ids a server might send: each must be refused as a format error before
#: it is looked up or reaches a message (16 lower-case hex digits only).
MALFORMED_KEYIDS = {
    "upper-case": "0123456789ABCDEF",
    "mixed-case": K1.keyid[:-1].upper() + "F",
    "not-hex": "0123456789abcdeg",
    "sixteen-letters": "zzzzzzzzzzzzzzzz",
    "sixteen-punctuation": "-_.:;<>()[]{}!?*",
    "fifteen-digits": "0123456789abcde",
    "seventeen-digits": "0123456789abcdef0",
    "one-digit": "0",
    "sixty-four-digits": "0" * 64,
    "empty": "",
    "fullwidth-digits": "\uff10" * 16,
    "arabic-indic-digits": "\u0660" * 16,
    "trailing-newline": K1.keyid + "\n",
}
_LINE_SAFE_KEYIDS = {k: v for k, v in MALFORMED_KEYIDS.items() if v.isascii() and "\n" not in v}


@pytest.mark.parametrize("keyid", list(_LINE_SAFE_KEYIDS.values()), ids=list(_LINE_SAFE_KEYIDS))
def test_malformed_key_id_on_a_signature_line_is_a_format_error(keyid: str) -> None:
    body = split_body(VALID)
    data = encode_manifest(body, [(keyid, bytes(64)), *_signatures(body, K1)])
    with pytest.raises(ManifestFormatError, match="not 16 hex digits"):
        verify(data)


@pytest.mark.parametrize("keyid", list(MALFORMED_KEYIDS.values()), ids=list(MALFORMED_KEYIDS))
def test_malformed_key_id_in_the_signed_body_is_a_format_error(keyid: str) -> None:
    listed = body_object()
    listed["keyids"] = [K1.keyid, keyid]
    with pytest.raises(ManifestFormatError, match="not 16 hex digits"):
        verify(signed_json(listed))
    signing = body_object()
    signing["files"]["mod.py"]["signatures"][keyid] = _SIG
    with pytest.raises(ManifestFormatError, match="not 16 hex digits"):
        verify(signed_json(signing))


def test_well_formed_key_ids_of_unpinned_keys_parse() -> None:
    # The twin of the tests above: the refusal is about the form, not about
    # whether the key is pinned.
    listed = body_object()
    listed["keyids"] = [K1.keyid, "0123456789abcdef"]
    listed["files"]["mod.py"]["signatures"]["fedcba9876543210"] = _SIG
    assert verify(signed_json(listed)).keyids == (K1.keyid, "0123456789abcdef")


def _files_body(count: int) -> bytes:
    # Entries are placeholders: the cap must refuse before they are parsed.
    obj = body_object()
    obj["files"] = {f"f{i}": 0 for i in range(count)}
    return signed_json(obj)


#: The cap, written out: a test that read MAX_FILES
#: would follow a raised cap instead of noticing it.
FILE_COUNT_CAP = 1_000_000


def test_manifest_listing_more_than_the_file_count_cap_is_refused_before_its_entries() -> None:
    # One more entry than the cap is refused by the cap; the cap itself gets
    # past it (and fails on the placeholder entry).
    assert MAX_FILES == FILE_COUNT_CAP
    with pytest.raises(ManifestFormatError, match="at most a million entries"):
        verify(_files_body(FILE_COUNT_CAP + 1))
    with pytest.raises(ManifestFormatError, match="entry for 'f0' is malformed"):
        verify(_files_body(FILE_COUNT_CAP))


def test_signature_base64_padding_bits_do_not_change_what_is_trusted() -> None:
    # Python's base64 decoder ignores the unused low bits of the last data
    # character, so the signature *line* is malleable.  That is harmless only
    # because trust (and the rollback digest) is over the body bytes: the
    # manifest accepted must be exactly the one signed.
    head, _, _ = VALID.partition(b"\n\n")
    assert head.endswith(b"==")
    last = head[-3:-2]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1 : (alphabet.index(last) ^ 1) + 1]
    mutated = VALID[: len(head) - 3] + twin + VALID[len(head) - 2 :]
    assert mutated != VALID
    manifest = verify(mutated)
    assert manifest == VALID_MANIFEST
    assert manifest.digest == VALID_MANIFEST.digest


# --------------------------------------------------------------------------- hostile bodies


def _with(**changes: Any) -> dict[str, Any]:
    obj = body_object()
    for key, value in changes.items():
        if value is _DELETE:
            del obj[key]
        else:
            obj[key] = value
    return obj


_DELETE = object()
_SHA = hashlib.sha256(b"x").hexdigest()
_SIG = base64.b64encode(bytes(64)).decode()


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"sha256": _SHA, "signatures": {K1.keyid: _SIG}, "size": 1}
    for key, value in changes.items():
        if value is _DELETE:
            del entry[key]
        else:
            entry[key] = value
    return entry


def _files(*paths: str) -> dict[str, Any]:
    return _with(files={p: _entry() for p in paths})


HOSTILE_BODIES: dict[str, object] = {
    # top level
    "extra-key": _with(extra=1),
    "missing-created": _with(created=_DELETE),
    "missing-files": _with(files=_DELETE),
    "wrong-type": _with(type="secure-urlimport/other"),
    "format-2": _with(format=2),
    "format-string": _with(format="1"),
    "version-string": _with(version="1"),
    "version-negative": _with(version=-1),
    "version-too-big": _with(version=2**63),
    "version-bool": _with(version=True),
    "version-null": _with(version=None),
    "files-list": _with(files=[]),
    "files-string": _with(files="mod.py"),
    "keyids-string": _with(keyids=K1.keyid),
    "keyids-ints": _with(keyids=[1]),
    "created-int": _with(created=1234),
    "created-no-z": _with(created="2031-05-17T12:00:00"),
    "expires-space": _with(expires="2031-05-17 12:00:00Z"),
    "expires-offset": _with(expires="2031-05-17T12:00:00+00:00"),
    "expires-impossible-date": _with(expires="2031-02-30T12:00:00Z"),
    "body-is-list": [],
    "body-is-string": "manifest",
    "body-is-null": None,
    # file entries
    "entry-not-object": _with(files={"a.py": [1]}),
    "entry-missing-size": _with(files={"a.py": _entry(size=_DELETE)}),
    "entry-extra-key": _with(files={"a.py": _entry(mode=420)}),
    "size-negative": _with(files={"a.py": _entry(size=-1)}),
    "size-string": _with(files={"a.py": _entry(size="1")}),
    "size-bool": _with(files={"a.py": _entry(size=True)}),
    "sha-uppercase": _with(files={"a.py": _entry(sha256=_SHA.upper())}),
    "sha-short": _with(files={"a.py": _entry(sha256=_SHA[:-1])}),
    "sha-non-hex": _with(files={"a.py": _entry(sha256="g" * 64)}),
    "sha-one-letter-x": _with(files={"a.py": _entry(sha256=_SHA[:-1] + "X")}),
    "sha-int": _with(files={"a.py": _entry(sha256=0)}),
    "signatures-empty": _with(files={"a.py": _entry(signatures={})}),
    "signatures-list": _with(files={"a.py": _entry(signatures=[_SIG])}),
    "signature-bad-base64": _with(files={"a.py": _entry(signatures={K1.keyid: "!!"})}),
    "signature-list": _with(files={"a.py": _entry(signatures={K1.keyid: [_SIG]})}),
    # paths
    "path-dotdot": _files("../x.py"),
    "path-dotdot-inside": _files("pkg/../../x.py"),
    "path-absolute": _files("/abs.py"),
    "path-backslash": _files("a\\b.py"),
    "path-nul": _files("a\x00.py"),
    "path-newline": _files("a\n.txt"),
    "path-rtl-override": _files("a\u202etxt.py"),
    "path-surrogate": _files("a\ud800.txt"),
    "path-non-nfc": _files("cafe\u0301.txt"),
    "path-hidden": _files(".x"),
    "path-hidden-dir": _files("pkg/.git/config"),
    "path-dot": _files("./mod.py"),
    "path-empty-component": _files("pkg//mod.py"),
    "path-trailing-slash": _files("pkg/"),
    "path-empty": _files(""),
    "path-fullwidth-module": _files("\uff4dod.py"),
    "path-cyrillic-module": _files("m\u043ed.py"),
    "path-non-ascii-package": _files("caf\u00e9/mod.py"),
    "path-manifest": _files(MANIFEST_NAME),
    "path-too-long": _files("a/" * 600 + "x.txt"),
    # case folding
    "casefold-py": _files("A.py", "a.py"),
    "casefold-dir": _files("Pkg/x.txt", "pkg/x.txt"),
    "casefold-sharp-s": _files("stra\u00dfe.txt", "strasse.txt"),
}


@pytest.mark.parametrize("obj", list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_signed_body_with_hostile_content_is_rejected(obj: object) -> None:
    with pytest.raises(ManifestFormatError):
        verify(signed_json(obj))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(b'"version": 1', b'"version": 1, "version": 2', id="duplicate-version"),
        pytest.param(b'"format": 1', b'"format": 1, "format": 1', id="duplicate-same-value"),
        pytest.param(b'"size": 10', b'"size": 10, "size": 10', id="duplicate-in-entry"),
        pytest.param(b'"version": 1', b'"version": 1.0', id="float"),
        pytest.param(b'"version": 1', b'"version": 1e0', id="exponent"),
        pytest.param(b'"version": 1', b'"version": NaN', id="nan"),
        pytest.param(b'"version": 1', b'"version": Infinity', id="infinity"),
        pytest.param(b'"version": 1', b'"version": -Infinity', id="minus-infinity"),
        pytest.param(b'"size": 10', b'"size": 1.0e1', id="float-size"),
        pytest.param(b'"type"', b'"\\ud800type"', id="escaped-surrogate-key"),
        pytest.param(b'"version": 1', b'"version": 01', id="leading-zero"),
        pytest.param(b"}\n", b"} trailing\n", id="trailing-garbage"),
        pytest.param(b"{", b"\xff{", id="invalid-utf8"),
        pytest.param(b'"mod.py"', b'"mod.py", "mod.py"', id="broken-json"),
    ],
)
def test_signed_body_with_malformed_json_is_rejected(old: bytes, new: bytes) -> None:
    body = split_body(VALID)
    assert old in body
    with pytest.raises(ManifestFormatError):
        verify(sign_body(body.replace(old, new, 1), K1))


def test_duplicated_file_path_in_signed_body_is_rejected() -> None:
    body = split_body(VALID)
    line = next(ln for ln in body.split(b"\n") if ln.startswith(b'"mod.py"'))
    hostile = body.replace(line, line + b"\n" + line, 1)
    with pytest.raises(ManifestFormatError, match="repeats"):
        verify(sign_body(hostile, K1))


def test_deeply_nested_signed_body_is_rejected_without_crashing() -> None:
    with pytest.raises(ManifestFormatError):
        verify(sign_body(b"[" * 100_000 + b"]" * 100_000, K1))


def test_body_is_only_parsed_after_its_signature_verifies() -> None:
    # Garbage JSON signed by a stranger is refused for the signature, not the
    # format: the parser never sees unauthenticated bytes.
    with pytest.raises(UntrustedKeyError):
        verify(sign_body(b"{not json", STRANGER))
    with pytest.raises(BadSignatureError):
        verify(encode_manifest(b"{not json", [(K1.keyid, bytes(64))]))


def test_unusual_but_valid_layout_is_accepted() -> None:
    # The client does not depend on the signer's layout: compact JSON with
    # other key order parses to the same manifest.
    obj = body_object()
    compact = json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":"))
    manifest = verify(sign_body(compact.encode(), K1))
    assert manifest == VALID_MANIFEST
    assert manifest.digest != VALID_MANIFEST.digest


def test_signed_body_with_boolean_format_is_rejected() -> None:
    with pytest.raises(ManifestFormatError):
        verify(signed_json(_with(format=True)))


@pytest.mark.parametrize("value", [None, 1234], ids=["null", "int"])
def test_signed_body_with_non_string_file_signature_is_rejected(value: object) -> None:
    obj = _with(files={"a.py": _entry(signatures={K1.keyid: value})})
    with pytest.raises(ManifestFormatError):
        verify(signed_json(obj))


def test_signed_body_with_huge_integer_is_rejected() -> None:
    body = split_body(VALID).replace(b'"version": 1', b'"version": ' + b"9" * 5000, 1)
    with pytest.raises(ManifestFormatError):
        verify(sign_body(body, K1))


# --------------------------------------------------------------------------- expiry


def test_manifest_at_its_expiry_instant_is_rejected() -> None:
    expires = SIGNED_AT + LIFETIME
    with pytest.raises(ExpiredManifestError) as info:
        verify(VALID, now=expires)
    message = str(info.value)
    assert format_time(expires) in message
    assert "re-sign" in message


def test_manifest_long_after_expiry_is_rejected() -> None:
    with pytest.raises(ExpiredManifestError):
        verify(VALID, now=SIGNED_AT + LIFETIME + timedelta(days=3650))


def test_manifest_one_second_before_expiry_is_accepted() -> None:
    manifest = verify(VALID, now=SIGNED_AT + LIFETIME - timedelta(seconds=1))
    assert manifest == VALID_MANIFEST


def test_expiry_is_compared_in_utc_whatever_the_callers_timezone() -> None:
    local_expiry = (SIGNED_AT + LIFETIME).astimezone(timezone(timedelta(hours=-7)))
    assert local_expiry.hour != (SIGNED_AT + LIFETIME).hour
    with pytest.raises(ExpiredManifestError):
        verify(VALID, now=local_expiry)


def test_expired_manifest_with_bad_signature_reports_the_signature() -> None:
    # Order of checks: an attacker cannot learn anything from expiry messages
    # about bytes that do not verify.
    tampered = VALID.replace(b'"version": 1', b'"version": 9')
    with pytest.raises(BadSignatureError):
        verify(tampered, now=SIGNED_AT + LIFETIME * 2)


# --------------------------------------------------------------------------- rollback

V2 = build_manifest(version=2)
V2_MANIFEST = verify(V2)


def test_replayed_older_manifest_is_rejected() -> None:
    seen = TrustedState(V2_MANIFEST.version, V2_MANIFEST.digest)
    with pytest.raises(RollbackError) as info:
        verify(VALID, previous=seen)
    assert "older" in str(info.value)


def test_rewritten_manifest_under_a_seen_version_is_rejected() -> None:
    other = build_manifest({**FILES, "mod.py": b"VALUE = 2\n"}, version=2)
    seen = TrustedState(V2_MANIFEST.version, V2_MANIFEST.digest)
    with pytest.raises(RollbackError):
        verify(other, previous=seen)


def test_same_version_with_same_digest_is_accepted() -> None:
    seen = TrustedState(V2_MANIFEST.version, V2_MANIFEST.digest)
    assert verify(V2, previous=seen) == V2_MANIFEST


def test_higher_version_is_accepted() -> None:
    seen = TrustedState(VALID_MANIFEST.version, VALID_MANIFEST.digest)
    assert verify(V2, previous=seen).version == 2


def test_rollback_digest_is_over_the_body_not_the_header() -> None:
    # The same body signed again (by another pinned key as well) is the same release.
    seen = TrustedState(VALID_MANIFEST.version, VALID_MANIFEST.digest)
    resigned = sign_body(split_body(VALID), K2, K1)
    assert verify(resigned, pinned(K1, K2), previous=seen) == VALID_MANIFEST
    assert VALID_MANIFEST.digest == hashlib.sha256(split_body(VALID)).hexdigest()


# --------------------------------------------------------------------------- files


def _entry_for(path: str, manifest: Manifest = VALID_MANIFEST) -> FileEntry:
    return manifest.files[path]


def test_unmodified_file_verifies() -> None:
    verify_file(_entry_for("pkg/sub.py"), FILES["pkg/sub.py"], VALID_MANIFEST, pinned(K1), url=URL)


def test_file_with_one_flipped_byte_is_rejected() -> None:
    data = bytearray(FILES["pkg/sub.py"])
    data[5] ^= 0x20
    with pytest.raises(TamperedFileError):
        verify_file(_entry_for("pkg/sub.py"), bytes(data), VALID_MANIFEST, pinned(K1), url=URL)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(FILES["mod.py"] + b"\n", id="extra-newline"),
        pytest.param(FILES["mod.py"] + b"import os; os.system('x')\n", id="appended-code"),
        pytest.param(FILES["mod.py"][:-1], id="truncated"),
        pytest.param(b"", id="empty"),
    ],
)
def test_file_with_changed_length_is_rejected(data: bytes) -> None:
    with pytest.raises(TamperedFileError):
        verify_file(_entry_for("mod.py"), data, VALID_MANIFEST, pinned(K1), url=URL)


def test_empty_file_tampered_to_non_empty_is_rejected() -> None:
    with pytest.raises(TamperedFileError):
        verify_file(_entry_for("pkg/__init__.py"), b"x", VALID_MANIFEST, pinned(K1), url=URL)


def test_validly_signed_file_served_under_another_path_is_rejected() -> None:
    # Substitution: the attacker moves mod.py's entry (hash, size, signature)
    # to pkg/sub.py and serves mod.py's bytes there.  Even with the manifest
    # re-signed (defence in depth) the per-file signature binds the path.
    source = _entry_for("mod.py")
    moved = FileEntry("pkg/sub.py", source.size, source.sha256, source.signatures)
    with pytest.raises(BadSignatureError):
        verify_file(moved, FILES["mod.py"], VALID_MANIFEST, pinned(K1), url=URL)

    obj = body_object()
    obj["files"]["pkg/sub.py"], obj["files"]["mod.py"] = (
        obj["files"]["mod.py"],
        obj["files"]["pkg/sub.py"],
    )
    swapped = verify(signed_json(obj))
    with pytest.raises(BadSignatureError):
        verify_file(swapped.files["pkg/sub.py"], FILES["mod.py"], swapped, pinned(K1), url=URL)
    with pytest.raises(BadSignatureError):
        verify_file(swapped.files["mod.py"], FILES["pkg/sub.py"], swapped, pinned(K1), url=URL)


def test_file_signature_from_an_older_release_is_rejected() -> None:
    # Mix-and-match: manifest v2 (validly signed) keeps v1's file signature for
    # mod.py, whose content differs between releases.
    v1_entry = file_entry("mod.py", b"OLD = 1\n", [K1], version=1)
    obj = body_object(files={**FILES, "mod.py": b"OLD = 1\n"}, version=2)
    obj["files"]["mod.py"]["signatures"] = {
        K1.keyid: base64.b64encode(v1_entry.signatures[K1.keyid]).decode()
    }
    manifest = verify(signed_json(obj))
    assert manifest.version == 2
    with pytest.raises(BadSignatureError):
        verify_file(manifest.files["mod.py"], b"OLD = 1\n", manifest, pinned(K1), url=URL)


def test_file_signed_only_by_an_unpinned_key_is_rejected() -> None:
    obj = body_object()
    entry = file_entry("mod.py", FILES["mod.py"], [STRANGER], version=1)
    obj["files"]["mod.py"]["signatures"] = {
        STRANGER.keyid: base64.b64encode(entry.signatures[STRANGER.keyid]).decode()
    }
    manifest = verify(signed_json(obj))
    with pytest.raises(UntrustedKeyError) as info:
        verify_file(manifest.files["mod.py"], FILES["mod.py"], manifest, pinned(K1), url=URL)
    assert STRANGER.keyid in str(info.value)


def test_file_signed_by_one_key_fails_threshold_two() -> None:
    manifest = verify(build_manifest(keys=[K1, K2]), pinned(K1, K2, threshold=2))
    entry = manifest.files["mod.py"]
    k1_only = {K1.keyid: entry.signatures[K1.keyid]}
    only_k1 = FileEntry(entry.path, entry.size, entry.sha256, k1_only)
    with pytest.raises(UntrustedKeyError):
        verify_file(only_k1, FILES["mod.py"], manifest, pinned(K1, K2, threshold=2), url=URL)


# --------------------------------------------------------------------------- paths


def _plain_id(path: object) -> str | None:
    # Test ids without backslashes, spaces or control characters: mutmut passes ids
    # on a command line, and one pytest cannot find is counted as a kill.
    if not isinstance(path, str):
        return None  # pytest's own id
    return (
        "".join(
            ch if ch.isascii() and ch.isprintable() and ch not in " \\" else "~" for ch in path
        )[:40]
        or "empty"
    )


GOOD_PATHS = [
    "a.py",
    "pkg/__init__.py",
    "pkg/sub/mod.py",
    "_private.py",
    "data/file.txt",
    "my-data/x.json",
    "my-data/script.py.txt",
    "donn\u00e9es.txt",
    "README",
    "sub/secure-urlimport.manifest",
    "a.b/c.txt",
    "x" * 1000,
    # .py files no import statement can name: signed as data (numpy's
    # _pyinstaller/hook-numpy.py), never imported.
    "my-pkg/mod.py",
    "1abc.py",
    "pkg-1/x/mod.py",
    "a b.py",
    "tools/hook-foo.py",
    "pkg/2to3.py",
    "donn\u00e9es-x/caf\u00e9.py",
]

BAD_PATHS = [
    "",
    "/abs.py",
    "../x.py",
    "pkg/../x.py",
    "./x.py",
    "pkg/./x.py",
    "pkg//x.py",
    "pkg/",
    ".",
    "..",
    ".hidden",
    "pkg/.hidden/x.txt",
    "a\\b.py",
    "a\x00.py",
    "a\nb.txt",
    "a\x7f.txt",
    "a\u200b.txt",
    "a\u202e.txt",
    "a\u2028.txt",
    "a\u2029.txt",
    "a\ud800.txt",
    "cafe\u0301.txt",
    "\uff4dod.py",
    "m\u043ed.py",
    "caf\u00e9/mod.py",
    ".py",
    MANIFEST_NAME,
    "x" * 1025,
]


@pytest.mark.parametrize("path", GOOD_PATHS, ids=_plain_id)
def test_publishable_path_is_accepted(path: str) -> None:
    assert path_problem(path) is None


@pytest.mark.parametrize(
    "path", BAD_PATHS, ids=[f"{i}-{_plain_id(p)}" for i, p in enumerate(BAD_PATHS)]
)
def test_unpublishable_path_is_refused(path: str) -> None:
    problem = path_problem(path)
    assert isinstance(problem, str) and problem


#: One path per rule that no other rule refuses (not .py, so the module-name
#: rule cannot catch it), with the exact reason: weakening a rule must show.
PATHS_ONLY_ONE_RULE_REFUSES = {
    "backslash-traversal": ("x\\..\\..\\evil.txt", "backslash in path"),
    "backslash": ("a\\b.txt", "backslash in path"),
    "backslash-only": ("\\", "backslash in path"),
    "nul-Cc": ("a\x00b.txt", "control or format character in path"),
    "newline-Cc": ("a\nb.txt", "control or format character in path"),
    "delete-Cc": ("a\x7f.txt", "control or format character in path"),
    "c1-Cc": ("a\x85.txt", "control or format character in path"),
    "zero-width-space-Cf": ("a\u200b.txt", "control or format character in path"),
    "rtl-override-Cf": ("a\u202etxt.exe", "control or format character in path"),
    "surrogate-Cs": ("a\ud800.txt", "control or format character in path"),
    "line-separator-Zl": ("a\u2028.txt", "control or format character in path"),
    "paragraph-separator-Zp": ("a\u2029.txt", "control or format character in path"),
    "not-nfc": ("cafe\u0301.txt", "path is not NFC-normalised"),
    "absolute": ("/etc/passwd", "absolute path"),
    "empty": ("", "empty path"),
    "too-long": ("x" * 1025, "path longer than 1024 characters"),
    "dotdot": ("a/../b.txt", "path component '..' not allowed"),
    "dot": ("a/./b.txt", "path component '.' not allowed"),
    "empty-component": ("a//b.txt", "path component '' not allowed"),
    "hidden": ("a/.git/config", "hidden component '.git' not allowed"),
    "manifest": (MANIFEST_NAME, "the manifest's own name"),
    "bundle": ("secure-urlimport.bundle", "the bundle's own name"),
    "py-non-ascii-module": (
        "\uff4dod.py",
        "a .py file whose module name is not ASCII (never importable here)",
    ),
}


@pytest.mark.parametrize(
    ("path", "reason"),
    list(PATHS_ONLY_ONE_RULE_REFUSES.values()),
    ids=list(PATHS_ONLY_ONE_RULE_REFUSES),
)
def test_each_path_rule_refuses_on_its_own(path: str, reason: str) -> None:
    assert path_problem(path) == reason
    with pytest.raises(ManifestFormatError) as info:
        verify(signed_json(_files(path)))
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "path",
    ["a.txt", "x" * 1024, "a/b-c_d.e.txt", "-x", "_", "9", "\u00e9t\u00e9.txt", "\u2030.txt"],
    ids=[
        "plain",
        "at-the-length-cap",
        "punctuation",
        "dash-first",
        "underscore",
        "digit",
        "nfc-accents",
        "per-mille-sign",
    ],
)
def test_paths_next_to_a_rule_are_accepted(path: str) -> None:
    # The twins of the table above: the rules refuse what they name, no more.
    assert path_problem(path) is None


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("mod", True),
        ("pkg.sub.mod", True),
        ("_x", True),
        ("__init__", True),
        ("", False),
        ("pkg..mod", False),
        (".mod", False),
        ("mod.", False),
        ("my-pkg", False),
        ("1mod", False),
        ("\uff4dod", False),
        ("m\u043ed", False),
        ("mod/sub", False),
        ("mod sub", False),
    ],
    ids=_plain_id,
)
def test_is_module_name_table(name: str, ok: bool) -> None:
    assert is_module_name(name) is ok


# --------------------------------------------------------------------------- StateStore

STATE_URL = "https://example.invalid/tree/"


def _state_files(directory: Path) -> list[Path]:
    return sorted((directory / "state").glob("*.json"))


def test_state_store_saves_and_loads(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load(STATE_URL) == {}
    store.record(STATE_URL, [K1.keyid], TrustedState(3, "d3"))
    assert StateStore(tmp_path).load(STATE_URL) == {K1.keyid: TrustedState(3, "d3")}
    assert not list((tmp_path / "state").glob(".state-*"))


def test_state_store_keeps_the_higher_version(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record(STATE_URL, [K1.keyid], TrustedState(5, "d5"))
    store.record(STATE_URL, [K1.keyid], TrustedState(2, "d2"))
    assert store.load(STATE_URL)[K1.keyid] == TrustedState(5, "d5")
    store.record(STATE_URL, [K1.keyid], TrustedState(6, "d6"))
    assert store.load(STATE_URL)[K1.keyid] == TrustedState(6, "d6")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="broken-json"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b"[1, 2]", id="list"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"keys": {"k": {"digest": "d"}}}', id="missing-version"),
        pytest.param(b'{"keys": {"k": {"version": "x", "digest": "d"}}}', id="version-not-int"),
        pytest.param(b'{"keys": {"k": {"version": 1}}}', id="missing-digest"),
        pytest.param(b'{"keys": [1]}', id="keys-not-object"),
    ],
)
def test_unreadable_state_file_is_treated_as_missing(tmp_path: Path, content: bytes) -> None:
    store = StateStore(tmp_path)
    store.record(STATE_URL, [K1.keyid], TrustedState(4, "d4"))
    [path] = _state_files(tmp_path)
    path.write_bytes(content)
    assert store.load(STATE_URL) == {}
    store.record(STATE_URL, [K1.keyid], TrustedState(1, "d1"))
    assert store.load(STATE_URL) == {K1.keyid: TrustedState(1, "d1")}


def test_state_path_that_is_a_directory_is_treated_as_missing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record(STATE_URL, [K1.keyid], TrustedState(4, "d4"))
    [path] = _state_files(tmp_path)
    path.unlink()
    path.mkdir()
    assert store.load(STATE_URL) == {}
    store.record(STATE_URL, [K1.keyid], TrustedState(5, "d5"))  # logged, not raised


def test_failed_state_write_leaves_no_temp_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record(STATE_URL, [K1.keyid], TrustedState(4, "d4"))
    [path] = _state_files(tmp_path)
    path.unlink()
    path.mkdir()  # os.replace onto a directory fails
    store.record(STATE_URL, [K1.keyid], TrustedState(5, "d5"))
    assert [p.name for p in (tmp_path / "state").iterdir()] == [path.name]


def test_rollback_records_are_per_key_and_per_url(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record(STATE_URL, [K1.keyid], TrustedState(2**63 - 1, "leaked-key"))
    store.record(STATE_URL, [K2.keyid], TrustedState(3, "d3"))
    assert store.load(STATE_URL) == {
        K1.keyid: TrustedState(2**63 - 1, "leaked-key"),
        K2.keyid: TrustedState(3, "d3"),
    }
    assert store.load(STATE_URL + "other/") == {}


# --------------------------------------------------------------------------- properties

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.data())
def test_any_single_byte_mutation_is_refused_or_changes_nothing_trusted(
    data: st.DataObject,
) -> None:
    position = data.draw(st.integers(0, len(VALID) - 1), label="position")
    value = data.draw(st.integers(0, 255), label="value")
    mutated = bytearray(VALID)
    mutated[position] = value
    try:
        manifest = verify(bytes(mutated))
    except SecureImportError:
        return
    # Accepted: the trusted content must be exactly what was signed.  (Only
    # unchanged bytes, or the ignored padding bits of a base64 signature, get here.)
    assert manifest == VALID_MANIFEST
    assert manifest.digest == VALID_MANIFEST.digest
    assert split_body(bytes(mutated)) == split_body(VALID)


@PROPERTY_SETTINGS
@given(st.binary(max_size=512) | st.binary(max_size=256).map(lambda b: MAGIC + b))
def test_arbitrary_bytes_raise_only_secure_import_errors(data: bytes) -> None:
    with pytest.raises(SecureImportError):
        verify(data, pinned(K1, K2))


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_body_after_a_valid_signature_raises_only_format_errors(body: bytes) -> None:
    with contextlib.suppress(ManifestFormatError):
        verify(sign_body(body, K1))


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=12)
    | st.sampled_from(["2031-05-17T12:00:00Z", _SHA, _SIG, "mod.py", "secure-urlimport/manifest"])
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=4,
)


_BASE_OBJECT = body_object()


@PROPERTY_SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["created", "expires", "files", "format", "keyids", "type", "version"]),
        _JSON,
    ),
    st.dictionaries(
        st.text(max_size=10) | st.sampled_from(["mod.py", "pkg/x.py", "A.py", "a.py"]),
        st.fixed_dictionaries({"sha256": _JSON, "signatures": _JSON, "size": _JSON}) | _JSON,
        max_size=3,
    ),
)
def test_signed_json_of_any_shape_parses_or_raises_a_format_error(
    changes: dict[str, Any], files: dict[str, Any]
) -> None:
    obj = {**_BASE_OBJECT, **changes}
    if files:
        obj["files"] = files
    try:
        manifest = verify(signed_json(obj))
    except ManifestFormatError:
        return
    except ExpiredManifestError:
        return
    for path in manifest.files:
        assert path_problem(path) is None


@PROPERTY_SETTINGS
@given(st.text(max_size=64) | st.text(alphabet="./\\_-aA.py\u0301\x00\u00df", max_size=20))
def test_path_problem_never_raises(path: str) -> None:
    problem = path_problem(path)
    if problem is None:
        assert not path.startswith("/") and ".." not in path.split("/")
        assert all(part and not part.startswith(".") for part in path.split("/"))
        module = path[: -len(".py")].replace("/", ".")
        if path.endswith(".py") and all(part.isidentifier() for part in module.split(".")):
            assert is_module_name(module)  # what import could name is ASCII
    else:
        assert isinstance(problem, str) and problem


def _decode_fields(message: bytes) -> list[bytes]:
    fields = []
    while message:
        size = int.from_bytes(message[:4], "big")
        fields.append(message[4 : 4 + size])
        assert len(fields[-1]) == size
        message = message[4 + size :]
    return fields


_KEYIDS = st.text(alphabet=st.characters(max_codepoint=127), max_size=20)
_PATHS = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
_FILE_TUPLES = st.tuples(
    _KEYIDS,
    st.integers(0, 2**63 - 1),
    _PATHS,
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    st.integers(0, 2**40),
)


@PROPERTY_SETTINGS
@given(_FILE_TUPLES, _FILE_TUPLES)
def test_file_message_is_injective(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    # Decoding recovers every field, so equal messages imply equal inputs.
    for sample in (a, b):
        keyid, version, path, sha, size = sample
        tag, *rest = _decode_fields(file_message(keyid, version, path, sha, size))
        assert tag == b"secure-urlimport/file/v1"
        assert rest == [
            keyid.encode("ascii"),
            str(version).encode(),
            path.encode("utf-8"),
            bytes.fromhex(sha),
            str(size).encode(),
        ]
    assert (file_message(*a) == file_message(*b)) == (a == b)


@PROPERTY_SETTINGS
@given(st.text(alphabet="ab/.1", min_size=2, max_size=12), st.data())
def test_file_message_resists_shifting_bytes_between_fields(text: str, data: st.DataObject) -> None:
    # The concatenation attack: moving characters from the key id into the
    # path (or digits from the version into the size) must change the message.
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(0, len(text)).filter(lambda n: n != i))
    sha = "00" * 32
    assert file_message(text[:i], 1, text[i:], sha, 12) != file_message(
        text[:j], 1, text[j:], sha, 12
    )
    assert file_message("k", 11, "p", sha, 2) != file_message("k", 1, "p", sha, 12)


@PROPERTY_SETTINGS
@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_load_as_a_key_or_raise_a_configuration_error(raw: bytes) -> None:
    try:
        key = PublicKey.from_raw(raw)
    except ConfigurationError:
        return
    message = manifest_message(key.keyid, b"{}")
    assert not key.verifies(K1.sign(message), message)


# --------------------------------------------------------------------------- Ed25519 edge cases

BODY = split_body(VALID)
GOOD_SIG = K1.sign(manifest_message(K1.keyid, BODY))


def _with_signature(sig: bytes) -> bytes:
    return encode_manifest(BODY, [(K1.keyid, sig)])


def test_valid_signature_verifies_as_a_baseline() -> None:
    assert K1.public.verifies(GOOD_SIG, manifest_message(K1.keyid, BODY))
    assert verify(_with_signature(GOOD_SIG)) == VALID_MANIFEST


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(b"", id="0-bytes"),
        pytest.param(GOOD_SIG[:63], id="63-bytes"),
        pytest.param(GOOD_SIG + b"\x00", id="65-bytes"),
        pytest.param(GOOD_SIG + GOOD_SIG, id="128-bytes"),
        pytest.param(bytes(64), id="all-zero"),
        pytest.param(b"\xff" * 64, id="all-ff"),
        pytest.param(GOOD_SIG[32:] + GOOD_SIG[:32], id="halves-swapped"),
    ],
)
def test_malformed_ed25519_signature_is_rejected(sig: bytes) -> None:
    assert not K1.public.verifies(sig, manifest_message(K1.keyid, BODY))
    with pytest.raises(BadSignatureError):
        verify(_with_signature(sig))


def test_non_canonical_s_is_rejected() -> None:
    # Malleability: S + L is the same scalar mod L; RFC 8032 requires S < L.
    s = int.from_bytes(GOOD_SIG[32:], "little")
    assert s < L
    for bigger in (s + L, s + 2 * L, s + 15 * L):
        if bigger >= 2**256:
            continue
        malleated = GOOD_SIG[:32] + bigger.to_bytes(32, "little")
        assert not K1.public.verifies(malleated, manifest_message(K1.keyid, BODY))
        with pytest.raises(BadSignatureError):
            verify(_with_signature(malleated))


def test_signature_over_the_message_without_domain_tag_is_rejected() -> None:
    # A key used elsewhere to sign the raw body cannot be replayed here.
    with pytest.raises(BadSignatureError):
        verify(_with_signature(K1.sign(BODY)))


_P = 2**255 - 19
IDENTITY = bytes([1]) + bytes(31)

#: Encodings of points of small order (1, 2, 4, 8), canonical and not.  With
#: such a "public key" a signature (R = identity, S = 0) verifies under the
#: cofactorless equation for every message whose hash is 0 mod the order.
SMALL_ORDER_KEYS = {
    "identity": IDENTITY,
    "identity-sign-bit": (1 + 2**255).to_bytes(32, "little"),
    "identity-non-canonical-y": (_P + 1).to_bytes(32, "little"),
    "order-2": (_P - 1).to_bytes(32, "little"),
    "order-4-all-zero": bytes(32),
    "order-4-sign-bit": (2**255).to_bytes(32, "little"),
    "order-4-non-canonical-y": _P.to_bytes(32, "little"),
    "order-8-a": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "order-8-b": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    "order-8-c": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order-8-d": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
}


def _forge_for(key: PublicKey) -> bytes:
    """A manifest 'signed' by small-order *key* without any private key.

    Tries release versions until the trivial signature (R = identity, S = 0)
    verifies for the body (probability 1/order each), as an attacker would.
    """
    forged = IDENTITY + bytes(32)
    body = b""
    for version in range(1, 400):
        body = build_body(keys=[STRANGER], version=version)
        if key.verifies(forged, manifest_message(key.keyid, body)):
            break
    return encode_manifest(body, [(key.keyid, forged)])


@pytest.mark.parametrize("raw", list(SMALL_ORDER_KEYS.values()), ids=list(SMALL_ORDER_KEYS))
def test_small_order_public_key_pins_or_raises_configuration_error(raw: bytes) -> None:
    # Whatever cryptography does with these bytes, pinning them may only
    # succeed or raise ConfigurationError: never a foreign exception.
    with contextlib.suppress(ConfigurationError):
        TrustedKeys.from_arg(raw, threshold=1)


@pytest.mark.parametrize("raw", list(SMALL_ORDER_KEYS.values()), ids=list(SMALL_ORDER_KEYS))
def test_small_order_pinned_key_does_not_accept_a_keyless_forgery(raw: bytes) -> None:
    try:
        trusted = TrustedKeys.from_arg(raw, threshold=1)
    except ConfigurationError:
        return  # refused at pin time: the safe outcome
    forged = _forge_for(trusted.keys[PublicKey.from_raw(raw).keyid])
    with pytest.raises(BadSignatureError):
        verify(forged, trusted)


def test_ordinary_pinned_key_does_not_accept_the_keyless_forgery() -> None:
    forged = encode_manifest(BODY, [(K1.keyid, IDENTITY + bytes(32))])
    with pytest.raises(BadSignatureError):
        verify(forged)


@pytest.mark.parametrize("name", [123, None, "x" * 201, "tab\there", ["list"]], ids=_plain_id)
def test_signed_body_with_malformed_tree_name_is_rejected(name: object) -> None:
    body = json.loads(build_body())
    body["name"] = name
    data = sign_body(json.dumps(body).encode(), K1)
    with pytest.raises(ManifestFormatError):
        verify_manifest(data, pinned(K1), now=SIGNED_AT, previous=None, url="u")


def test_manifest_without_tree_name_parses_with_an_empty_name() -> None:
    body = json.loads(build_body())
    body.pop("name")
    data = sign_body(json.dumps(body).encode(), K1)
    assert verify_manifest(data, pinned(K1), now=SIGNED_AT, previous=None, url="u").name == ""


def test_pinned_tree_name_must_match() -> None:
    from secure_urlimport.errors import WrongTreeError

    data = sign_body(build_body(), K1)
    verify_manifest(data, pinned(K1), now=SIGNED_AT, previous=None, url="u", name="")
    with pytest.raises(WrongTreeError):
        verify_manifest(data, pinned(K1), now=SIGNED_AT, previous=None, url="u", name="prod")
