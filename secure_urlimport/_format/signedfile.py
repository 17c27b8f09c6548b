"""The envelope shared by every signed document: signature lines, then the body.

A manifest and a root document are both::

    <magic line>\\n
    signature <keyid> <base64 Ed25519 signature>\\n    (one line per signature)
    \\n
    <body: UTF-8 JSON object, signed exactly as these bytes>

This module splits and joins that envelope and parses the JSON pieces both
bodies use (times, bounded integers, key ids), strictly: duplicate keys,
floats and NaN are refused, so one body has one meaning.  *what* names the
document in every message ("manifest", "root").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import ManifestFormatError

__all__ = [
    "MAX_SIGNATURE_LINES",
    "MAX_VERSION",
    "TIME_FORMAT",
    "SignedFile",
    "bounded_int",
    "check_keyid",
    "encode_signed_file",
    "format_time",
    "length_prefixed",
    "load_json",
    "parse_time",
    "split_signed_file",
]

MAX_SIGNATURE_LINES = 64
MAX_VERSION = 2**63 - 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_KEYID = re.compile(r"[0-9a-f]{16}")
# What format_time writes, ASCII digits only.  Parsed by hand: strptime
# imports _strptime, calendar and locale, a few milliseconds of every warm
# start.
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def length_prefixed(*parts: bytes) -> bytes:
    """Each part as a 4-byte big-endian length and its bytes: no two different
    field lists give the same message."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise ManifestFormatError(f"{what} is not a time string")
    match = _TIME.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ManifestFormatError(f"{what} {text!r} is not YYYY-MM-DDTHH:MM:SSZ") from None


def bounded_int(value: object, what: str, upper: int = MAX_VERSION, lower: int = 0) -> int:
    if type(value) is not int or not lower <= value <= upper:
        raise ManifestFormatError(f"{what} is not an integer in [{lower}, {upper}]")
    return value


def check_keyid(keyid: str, what: str = "manifest") -> str:
    # Checked before use: key ids from the server end up in error messages.
    if not isinstance(keyid, str) or not _KEYID.fullmatch(keyid):
        raise ManifestFormatError(f"{what} names a key id that is not 16 hex digits")
    return keyid


@dataclass(frozen=True)
class SignedFile:
    """A signed document split into its signatures and its (unparsed) body."""

    signatures: Sequence[tuple[str, bytes]]
    body: bytes


def split_signed_file(data: bytes, *, magic: bytes, what: str) -> SignedFile:
    """Split the file into signature lines and body, parsing nothing else.

    The body is parsed only after its signatures verify.
    """
    if not data.startswith(magic):
        raise ManifestFormatError(f"not a secure-urlimport v1 {what} (wrong first line)")
    header, sep, body = data[len(magic) :].partition(b"\n\n")
    if not sep:
        raise ManifestFormatError(f"{what} is truncated: no blank line after the signatures")
    signatures: list[tuple[str, bytes]] = []
    for line in header.split(b"\n"):
        if len(signatures) >= MAX_SIGNATURE_LINES:
            raise ManifestFormatError(f"{what} has more than {MAX_SIGNATURE_LINES} signatures")
        signatures.append(_parse_signature_line(line, what))
    if not signatures:
        raise ManifestFormatError(f"{what} carries no signature")
    return SignedFile(signatures, body)


def _parse_signature_line(line: bytes, what: str) -> tuple[str, bytes]:
    fields = line.split(b" ")
    if len(fields) != 3 or fields[0] != b"signature":
        raise ManifestFormatError(f"{what} signature line is malformed")
    try:
        keyid = fields[1].decode("ascii")
        sig = base64.b64decode(fields[2], validate=True)
    except (UnicodeDecodeError, binascii.Error):
        raise ManifestFormatError(f"{what} signature line is not ASCII base64") from None
    return check_keyid(keyid, what), sig


def encode_signed_file(magic: bytes, body: bytes, signatures: Sequence[tuple[str, bytes]]) -> bytes:
    lines = [
        b"signature " + keyid.encode("ascii") + b" " + base64.b64encode(sig)
        for keyid, sig in signatures
    ]
    return magic + b"\n".join(lines) + b"\n\n" + body


def _reject_duplicates(what: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)  # in C: a manifest has one object per file
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise ManifestFormatError(f"{what} body repeats the key {key!r}")
                seen.add(key)
        return result

    return hook


def load_json(body: bytes, what: str) -> dict[str, Any]:
    """The body as a JSON object: no repeated key, no float, no NaN."""

    def reject_float(text: str) -> float:
        raise ManifestFormatError(f"{what} body has a non-integer number {text!r}")

    try:
        obj = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_reject_duplicates(what),
            parse_float=reject_float,
            parse_constant=reject_float,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, bad UTF-8
        raise ManifestFormatError(f"{what} body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ManifestFormatError(f"{what} body is not a JSON object")
    return obj
