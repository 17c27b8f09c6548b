"""RFC 7512 ``pkcs11:`` URIs naming a signing key in a token, and where its PIN comes from.

Only parsing and the PIN's sources live here (no token is opened): the URI
``pkcs11:token=release;object=ci?pin-source=/run/secrets/pin`` names the
token by its label and the key by its label.  Values are percent-decoded;
an attribute this module does not know is refused, never ignored, so a
typo cannot select a different key than the one meant.  The PIN is never
part of a message or a ``repr``.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

from ..errors import KeyFileError

__all__ = ["MODULE_ENV", "PIN_ENV", "SCHEME", "Pkcs11URI", "is_pkcs11_uri", "token_pin"]

SCHEME = "pkcs11:"
#: The PKCS#11 module (a ``.so``) when the URI has no ``module-path``.
MODULE_ENV = "SECURE_URLIMPORT_PKCS11_MODULE"
#: The token's user PIN when the URI has no ``pin-value`` or ``pin-source``.
PIN_ENV = "SECURE_URLIMPORT_PKCS11_PIN"

_PATH_ATTRIBUTES = ("token", "object", "id", "slot-id", "serial", "manufacturer", "model", "type")
_QUERY_ATTRIBUTES = ("pin-value", "pin-source", "module-path")
_TYPES = ("private", "public")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_PIN_FILE_BYTES = 4096


def is_pkcs11_uri(spec: object) -> bool:
    """True for a ``--key`` argument that names a token key (the scheme is case-insensitive)."""
    return isinstance(spec, str) and spec[: len(SCHEME)].lower() == SCHEME


@dataclass(frozen=True)
class Pkcs11URI:
    """The parts of a ``pkcs11:`` URI this library uses; ``None`` where absent."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    slot_id: int | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    module_path: str | None = None
    pin_source: str | None = None
    pin_value: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> Pkcs11URI:
        if not is_pkcs11_uri(text):
            raise KeyFileError(f"not a pkcs11: URI (RFC 7512): it must start with {SCHEME!r}")
        rest = text[len(SCHEME) :]
        path, _, query = rest.partition("?")
        values: dict[str, str | bytes] = {}
        _parse_part(path, ";", _PATH_ATTRIBUTES, values, "path")
        _parse_part(query, "&", _QUERY_ATTRIBUTES, values, "query")
        if "pin-value" in values and "pin-source" in values:
            raise KeyFileError("a pkcs11: URI takes pin-value or pin-source, not both")
        kind = values.pop("type", None)
        if kind is not None and kind not in _TYPES:
            raise KeyFileError(f"pkcs11: URI type={kind!r}: a signing key is type=private")
        if "token" not in values and "serial" not in values and "slot-id" not in values:
            raise KeyFileError(
                "the pkcs11: URI names no token: add token=LABEL (or serial=, slot-id=), "
                "e.g. 'pkcs11:token=release;object=signing-key'"
            )
        if "object" not in values and "id" not in values:
            raise KeyFileError(
                "the pkcs11: URI names no key: add object=LABEL (or id=%01...), "
                "e.g. 'pkcs11:token=release;object=signing-key'"
            )
        slot = values.get("slot-id")
        if slot is not None and not (isinstance(slot, str) and slot.isdigit()):
            raise KeyFileError(f"pkcs11: URI slot-id={slot!r} is not a decimal number")
        return cls(
            token=_text(values.get("token")),
            object=_text(values.get("object")),
            id=_raw(values.get("id")),
            slot_id=None if slot is None else int(slot),
            serial=_text(values.get("serial")),
            manufacturer=_text(values.get("manufacturer")),
            model=_text(values.get("model")),
            module_path=_text(values.get("module-path")),
            pin_source=_text(values.get("pin-source")),
            pin_value=_text(values.get("pin-value")),
        )

    def describe_key(self) -> str:
        """The key as a message names it: its label and/or id (never the PIN)."""
        parts = [f"object={self.object!r}"] if self.object is not None else []
        if self.id is not None:
            parts.append(f"id={self.id.hex()}")
        return " ".join(parts)


def _parse_part(
    part: str, separator: str, known: tuple[str, ...], out: dict[str, str | bytes], where: str
) -> None:
    if not part:
        return
    for item in part.split(separator):
        name, equals, raw = item.partition("=")
        if not equals or not name:
            raise KeyFileError(
                f"pkcs11: URI {where} attribute {name or item!r} has no value: write NAME=VALUE"
            )
        if name not in known:
            hint = " (a query attribute: put it after '?')" if name in _QUERY_ATTRIBUTES else ""
            hint = hint or (
                " (a path attribute: put it before '?')" if name in _PATH_ATTRIBUTES else ""
            )
            raise KeyFileError(
                f"pkcs11: URI attribute {name!r} is not supported here{hint}; "
                f"the {where} attributes understood are: {', '.join(known)}"
            )
        if name in out:
            raise KeyFileError(f"pkcs11: URI attribute {name!r} is given twice")
        if _BAD_ESCAPE.search(raw):
            raise KeyFileError(
                f"pkcs11: URI attribute {name!r}: '%' must start an escape of two hex digits"
            )
        decoded = unquote_to_bytes(raw)
        if not decoded:
            raise KeyFileError(f"pkcs11: URI attribute {name!r} is empty")
        if name == "id":
            out[name] = decoded
            continue
        try:
            out[name] = decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"pkcs11: URI attribute {name!r} is not UTF-8 text") from None


def _text(value: str | bytes | None) -> str | None:
    assert value is None or isinstance(value, str)
    return value


def _raw(value: str | bytes | None) -> bytes | None:
    assert value is None or isinstance(value, bytes)
    return value


def token_pin(uri: Pkcs11URI, token_label: str) -> str:
    """The user PIN: the URI's ``pin-value`` or ``pin-source``, else
    ``$SECURE_URLIMPORT_PKCS11_PIN``, else asked on the terminal."""
    if uri.pin_value is not None:
        return uri.pin_value
    if uri.pin_source is not None:
        return _read_pin_file(uri.pin_source)
    value = os.environ.get(PIN_ENV)
    if value is not None:
        return value
    if sys.stdin is None or not sys.stdin.isatty():
        raise KeyFileError(
            f"token {token_label!r} needs its user PIN: set {PIN_ENV}, add "
            "?pin-source=FILE to the pkcs11: URI, or run from a terminal"
        )
    try:
        return getpass.getpass(f"User PIN for token {token_label!r}: ")
    except EOFError:
        raise KeyFileError("no PIN given (end of input)") from None


def _read_pin_file(source: str) -> str:
    """``pin-source``: a file path, or a ``file:`` URI of one; its first line is the PIN."""
    if source.startswith("file://"):
        host, _, rest = source[len("file://") :].partition("/")
        if host not in ("", "localhost"):
            raise KeyFileError(f"pin-source {source!r}: only local file: URIs are read")
        source = "/" + rest
    elif source.startswith("file:"):
        source = source[len("file:") :]
    path = Path(source)
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_PIN_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(
            f"cannot read the PIN file {str(path)!r} (pin-source): {exc.strerror or exc}"
        ) from None
    if len(data) > _MAX_PIN_FILE_BYTES:
        raise KeyFileError(f"the PIN file {str(path)!r} (pin-source) is too large to hold a PIN")
    lines = data.splitlines()
    if not lines or not lines[0]:
        raise KeyFileError(f"the PIN file {str(path)!r} (pin-source) is empty")
    return lines[0].decode("utf-8", "surrogateescape")
