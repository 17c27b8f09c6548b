"""Private key files: an Ed25519 seed sealed with scrypt + AES-256-GCM.

The file is a small JSON document::

    {"type": "secure-urlimport/private-key", "format": 1, "keyid": "...",
     "kdf": "scrypt", "n": 65536, "r": 8, "p": 1,
     "salt": "<b64>", "nonce": "<b64>", "ciphertext": "<b64>"}

``ciphertext`` is AES-256-GCM of the 32-byte seed under
``scrypt(passphrase, salt, n, r, p)``.  Every header field (type, format,
keyid, kdf parameters, salt) is bound into the GCM associated data, so a file
whose parameters were swapped or weakened does not decrypt; on top of that,
``n`` or ``r`` below the minimums (:data:`SCRYPT_MIN_N`, :data:`SCRYPT_MIN_R`)
is refused before any work is done.
Unencrypted files (``keygen --unencrypted``) have ``"kdf": "none"`` and a
``"seed"`` field instead.

KDF cost: one scrypt derivation with the parameters below, timed with
``time.perf_counter()`` on the development machine (2 vCPUs, Python 3.11.7,
cryptography 48, OpenSSL 3.0), took 0.16-0.24 s (median of ten: 0.17 s)
and 64 MiB.  The requirement is at least 0.1 s, which is why cryptography's
PKCS8 ``BestAvailableEncryption`` (a much cheaper KDF) is not used.

Neither passphrases nor key bytes ever appear in messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .._format.keys import RAW_KEY_BYTES, PrivateKey, PublicKey
from ..errors import KeyFileError, WrongPassphraseError

__all__ = [
    "PASSPHRASE_ENV",
    "is_private_key_file",
    "load_private_key",
    "passphrase_from_env_or_prompt",
    "read_key_id",
    "save_private_key",
    "write_public_key",
]

#: Read by :func:`passphrase_from_env_or_prompt` before it prompts.
PASSPHRASE_ENV = "SECURE_URLIMPORT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)

FILE_TYPE = "secure-urlimport/private-key"
FILE_FORMAT = 1

# The scrypt parameters, in one place.  n = 2**16, r = 8 uses 64 MiB and about
# 0.2 s here; files with a smaller n or r are refused.  The upper bounds stop a
# crafted file from asking for gigabytes of memory or minutes of CPU.
SCRYPT_N = 2**16
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MIN_N = 2**16
SCRYPT_MIN_R = 8  # a smaller r also makes the KDF cheaper
SCRYPT_MAX_N = 2**20
SCRYPT_MAX_R = 32
SCRYPT_MAX_P = 4
SCRYPT_MAX_MEMORY = 256 * 1024 * 1024  # scrypt needs 128 * n * r bytes
SALT_BYTES = 16
NONCE_BYTES = 12  # the size AES-GCM is designed for
AES_KEY_BYTES = 32  # AES-256
GCM_TAG_BYTES = 16

#: A key file is a few hundred bytes; anything much larger is not one.
MAX_FILE_BYTES = 64 * 1024

_EXPECT = "expected a private key file written by 'secure-urlimport keygen'"

#: What :func:`load_private_key` accepts as the passphrase.
PassphraseArg: TypeAlias = "bytes | Callable[[], bytes] | None"


# -- writing -----------------------------------------------------------------


def save_private_key(key: PrivateKey, path: Path, passphrase: bytes | None) -> None:
    """Write *key* to a new file *path* (mode 0600), sealed with *passphrase*.

    ``None`` writes the seed unencrypted.  An existing file is never replaced:
    overwriting a key by accident loses it for good.
    """
    path = Path(path)
    if passphrase is None:
        doc: dict[str, Any] = {**_header(key.keyid, "none"), "seed": _b64(key.seed())}
    else:
        doc = _sealed_document(key, passphrase, path)
    text = json.dumps(doc, indent=2) + "\n"
    _write_new_private_file(path, text.encode("ascii"))


def _header(keyid: str, kdf: str) -> dict[str, Any]:
    return {"type": FILE_TYPE, "format": FILE_FORMAT, "keyid": keyid, "kdf": kdf}


def _sealed_document(key: PrivateKey, passphrase: bytes, path: Path) -> dict[str, Any]:
    if not passphrase:
        raise KeyFileError(
            f"refusing to encrypt key file {str(path)!r} with an empty passphrase; "
            "choose one, or write it unencrypted on purpose (keygen --unencrypted)"
        )
    header = {
        **_header(key.keyid, "scrypt"),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": _b64(os.urandom(SALT_BYTES)),
    }
    aes_key = _derive(passphrase, header)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(aes_key).encrypt(nonce, key.seed(), _associated_data(header))
    return {**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}


def _write_new_private_file(path: Path, data: bytes) -> None:
    # 0o600 from the first byte, so the seed is never readable by others, not
    # even briefly; never over an existing key.
    _write_new_file(
        path,
        data,
        mode=0o600,
        what="key file",
        exists="; refusing to overwrite it (move it away first if you really mean to "
        "replace the key)",
    )


def write_public_key(key: PublicKey, path: Path) -> None:
    """Write the ``.pub`` line for *key* to a new file *path* (mode 0644: it is public).

    Like the key file, never through a symlink and never over an existing
    file: a planted ``PREFIX.pub`` link would otherwise make keygen write
    wherever it points, and the consumer would pin whatever sits there.
    """
    _write_new_file(
        Path(path),
        key.to_line().encode("ascii"),
        mode=0o644,
        what="public key file",
        exists=" (or is a symlink); refusing to write through or over it: remove it, "
        "or choose another PREFIX",
        opening="write",
    )


def _write_new_file(
    path: Path, data: bytes, *, mode: int, what: str, exists: str, opening: str = "create"
) -> None:
    """Create *path* with exactly *mode* whatever the umask, write *data* durably.

    O_EXCL | O_NOFOLLOW: never over an existing file, never through a symlink
    (a dangling one planted at the name included).  A half-written file is
    removed: it is worse than none.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{what} {str(path)!r} already exists{exists}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot {opening} {what} {str(path)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)  # a umask can only clear bits; be exact
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {what} {str(path)!r}: {exc.strerror}") from None


def is_private_key_file(data: bytes) -> bool:
    """True if *data* is a private key file of this format (encrypted or not).

    For the signer, which must never publish one.  Deliberately loose: any
    JSON object whose ``type`` says private key counts, whatever its other
    fields, version or the file's name.  Cheap: a file larger than any key
    file, or not starting with ``{``, is not parsed at all.
    """
    if len(data) > MAX_FILE_BYTES or not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return False
    try:
        doc = json.loads(data.decode("utf-8-sig"))  # a BOM an editor added changes nothing
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("type") == FILE_TYPE


# -- reading -----------------------------------------------------------------


def load_private_key(path: Path, passphrase: PassphraseArg) -> PrivateKey:
    """Read a key file written by :func:`save_private_key`.

    *passphrase* may be a callable; it is called only if the file is
    encrypted, so an unencrypted key never triggers a prompt.
    """
    path = Path(path)
    doc = _read_document(path)
    kdf = doc["kdf"]
    if kdf == "none":
        seed = _b64_field(doc, "seed", path)
    elif kdf == "scrypt":
        seed = _open_sealed(doc, _resolve_passphrase(passphrase, path), path)
    else:
        raise _bad_format(path, f"unknown kdf {kdf!r}")
    if len(seed) != RAW_KEY_BYTES:
        raise _bad_format(path, "the key is not a 32-byte Ed25519 seed")
    key = PrivateKey.from_seed(seed)
    if key.keyid != doc["keyid"]:
        raise KeyFileError(
            f"key file {str(path)!r} says key id {doc['keyid']} but holds key {key.keyid}; "
            "the file is damaged"
        )
    return key


def read_key_id(path: Path) -> str:
    """The key id a key file stores in clear; nothing is decrypted, no passphrase asked.

    Public information, enough for ``sign --check`` to tell which key signed.
    """
    path = Path(path)
    keyid: str = _read_document(path)["keyid"]
    if not re.fullmatch(r"[0-9a-f]{16}", keyid):
        raise _bad_format(path, "the key id is not 16 hex digits")
    return keyid


def _read_document(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _bad_format(path, "file too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _bad_format(path, "not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != FILE_TYPE:
        raise _bad_format(path, "not a secure-urlimport private key")
    if doc.get("format") != FILE_FORMAT or isinstance(doc.get("format"), bool):
        raise _bad_format(path, f"unsupported format {doc.get('format')!r}")
    for name in ("keyid", "kdf"):
        if not isinstance(doc.get(name), str):
            raise _bad_format(path, f"missing or invalid {name!r}")
    return doc


def _resolve_passphrase(passphrase: PassphraseArg, path: Path) -> bytes:
    value = passphrase() if callable(passphrase) else passphrase
    if value is None:
        raise KeyFileError(f"key file {str(path)!r} is encrypted: a passphrase is needed")
    if not isinstance(value, bytes | bytearray):
        raise KeyFileError(f"the passphrase for {str(path)!r} must be bytes")
    return bytes(value)


def _open_sealed(doc: Mapping[str, Any], passphrase: bytes, path: Path) -> bytes:
    header = _checked_scrypt_header(doc, path)
    nonce = _b64_field(doc, "nonce", path)
    ciphertext = _b64_field(doc, "ciphertext", path)
    if len(nonce) != NONCE_BYTES or len(ciphertext) != RAW_KEY_BYTES + GCM_TAG_BYTES:
        raise _bad_format(path, "nonce or ciphertext has the wrong length")
    try:
        aes_key = _derive(passphrase, header)
    except (ValueError, MemoryError):  # parameters OpenSSL's scrypt will not run
        raise _bad_format(path, "unusable scrypt parameters") from None
    try:
        return AESGCM(aes_key).decrypt(nonce, ciphertext, _associated_data(header))
    except InvalidTag:
        # GCM cannot tell a wrong passphrase from an edited file; say both.
        raise WrongPassphraseError(
            f"wrong passphrase for key file {str(path)!r} (or the file has been altered)"
        ) from None


def _checked_scrypt_header(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The header fields that feed the KDF and the associated data, checked."""
    limits = {
        "n": (SCRYPT_MIN_N, SCRYPT_MAX_N),
        "r": (SCRYPT_MIN_R, SCRYPT_MAX_R),
        "p": (1, SCRYPT_MAX_P),
    }
    header = _header(doc["keyid"], "scrypt")
    for name, (low, high) in limits.items():
        value = doc.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad_format(path, f"missing or invalid scrypt parameter {name!r}")
        if not low <= value <= high:
            raise KeyFileError(
                f"key file {str(path)!r}: scrypt parameter {name}={value} is outside "
                f"{low}..{high}; refusing a weakened or abusive key file"
            )
        header[name] = value
    if header["n"] & (header["n"] - 1):
        raise _bad_format(path, "scrypt parameter n is not a power of two")
    if 128 * header["n"] * header["r"] > SCRYPT_MAX_MEMORY:
        raise KeyFileError(f"key file {str(path)!r}: scrypt parameters need too much memory")
    if len(_b64_field(doc, "salt", path)) != SALT_BYTES:
        raise _bad_format(path, "the salt has the wrong length")
    header["salt"] = doc["salt"]
    return header


# -- shared helpers ----------------------------------------------------------


def _derive(passphrase: bytes, header: Mapping[str, Any]) -> bytes:
    salt = base64.b64decode(header["salt"])
    kdf = Scrypt(salt=salt, length=AES_KEY_BYTES, n=header["n"], r=header["r"], p=header["p"])
    return kdf.derive(passphrase)


def _associated_data(header: Mapping[str, Any]) -> bytes:
    """Canonical bytes of every header field, authenticated by GCM."""
    fields = {k: header[k] for k in ("type", "format", "keyid", "kdf", "n", "r", "p", "salt")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_field(doc: Mapping[str, Any], name: str, path: Path) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise _bad_format(path, f"missing {name!r}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_format(path, f"{name!r} is not valid base64") from None


def _bad_format(path: Path, why: str) -> KeyFileError:
    return KeyFileError(f"{str(path)!r} is not a usable key file ({why}); {_EXPECT}")


# -- passphrases -------------------------------------------------------------


def passphrase_from_env_or_prompt(path: Path, *, confirm: bool = False) -> bytes:
    """The passphrase for key file *path*: ``$SECURE_URLIMPORT_PASSPHRASE``,
    else asked on the terminal (twice when *confirm*, for a new key)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        # surrogateescape gives back the exact bytes of a non-UTF-8 variable.
        return value.encode("utf-8", "surrogateescape")
    if sys.stdin is None or not sys.stdin.isatty():
        raise KeyFileError(
            f"no passphrase for key file {str(path)!r}: set {PASSPHRASE_ENV} or run from a terminal"
        )
    first = _ask(f"Passphrase for {path}: ")
    if confirm and _ask("Repeat passphrase: ") != first:
        raise KeyFileError(f"the passphrases for {str(path)!r} do not match")
    return first.encode("utf-8", "surrogateescape")


def _ask(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise KeyFileError("no passphrase given (end of input)") from None
