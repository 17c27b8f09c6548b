"""Signing keys that never leave a PKCS#11 token (SoftHSM2, a YubiHSM, a cloud HSM).

``--key 'pkcs11:token=release;object=ci'`` signs with the Ed25519 private key
labelled ``ci`` in the token labelled ``release`` (CKM_EDDSA), through the
optional ``python-pkcs11`` (``pip install 'secure_urlimport[pkcs11]'``), which
is imported only here and only when a token key is used.  Every failure is a
:class:`~..errors.KeyFileError` that says what to do; python-pkcs11's own
exceptions never escape.  The token's session stays open for the signer's
life (a tree is one signature per file) and is closed by :meth:`TokenSigner.close`,
a ``with`` block, or at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .._format.keys import RAW_KEY_BYTES, PublicKey
from ..errors import ConfigurationError, KeyFileError
from .pkcs11uri import MODULE_ENV, Pkcs11URI, token_pin

if TYPE_CHECKING:
    import pkcs11
    from pkcs11._pkcs11 import lib as Library

__all__ = ["TokenSigner", "generate_in_token", "load_token_signer"]

INSTALL_HINT = "pip install 'secure_urlimport[pkcs11]'"
#: Where the PKCS#11 module is looked for without ``module-path`` or the variable.
WELL_KNOWN_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
#: DER of the Ed25519 curve: an OID (RFC 8410) or the printable name PKCS#11 3.0 also allows.
_ED25519_PARAMS = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")
_ED25519_OID = "1.3.101.112"
_SELF_TEST = b"secure-urlimport/pkcs11-self-test/v1\x00"


def _require_library() -> None:
    try:
        import pkcs11  # noqa: F401 - only whether it imports
    except ImportError:
        raise KeyFileError(
            f"a pkcs11: key needs the python-pkcs11 package: {INSTALL_HINT}"
        ) from None


def _module_path(uri: Pkcs11URI) -> str:
    """``module-path``, else ``$SECURE_URLIMPORT_PKCS11_MODULE``, else a well-known SoftHSM2."""
    chosen = uri.module_path or os.environ.get(MODULE_ENV)
    if chosen:
        if not os.path.isfile(chosen):
            where = "module-path" if uri.module_path else MODULE_ENV
            raise KeyFileError(f"the PKCS#11 module {chosen!r} ({where}) does not exist")
        return chosen
    found = next((path for path in WELL_KNOWN_MODULES if os.path.isfile(path)), None)
    if found is None:
        raise KeyFileError(
            "no PKCS#11 module found: give the token's library as ?module-path=/path/to/lib.so "
            f"in the URI or in {MODULE_ENV} (SoftHSM2 was looked for in "
            f"{', '.join(WELL_KNOWN_MODULES)})"
        )
    return found


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    """python-pkcs11's exceptions (and the token's errors) as a KeyFileError saying what failed."""
    import pkcs11.exceptions as errors

    try:
        yield
    except (errors.PinIncorrect, errors.PinInvalid, errors.PinLenRange):
        raise KeyFileError(
            f"{doing}: the token refused the PIN (wrong PIN); give the user PIN with "
            "?pin-source=FILE or $SECURE_URLIMPORT_PKCS11_PIN"
        ) from None
    except errors.PinLocked:
        raise KeyFileError(
            f"{doing}: the token's user PIN is locked after too many wrong PINs; "
            "its security officer must unlock or reset it"
        ) from None
    except errors.PKCS11Error as exc:
        detail = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        raise KeyFileError(f"{doing} ({detail})") from None


def _label(token: pkcs11.Token) -> str:
    return str(token.label).strip()


def _describe(slot: pkcs11.Slot, token: pkcs11.Token) -> str:
    serial = token.serial.decode("ascii", "replace").strip()
    return f"{_label(token)!r} (serial {serial or '-'}, slot {slot.slot_id})"


def _find_token(lib: Library, uri: Pkcs11URI) -> pkcs11.Token:
    """The one initialised token the URI's token attributes match; else list those there are."""
    import pkcs11 as p11

    with _translated("cannot list the PKCS#11 token slots"):
        present: list[tuple[pkcs11.Slot, pkcs11.Token]] = [
            (slot, token)
            for slot in lib.get_slots(token_present=True)
            if p11.TokenFlag.TOKEN_INITIALIZED in (token := slot.get_token()).flags
        ]
    wanted = {
        "token": uri.token,
        "serial": uri.serial,
        "manufacturer": uri.manufacturer,
        "model": uri.model,
    }

    def matches(slot: pkcs11.Slot, token: pkcs11.Token) -> bool:
        have = {
            "token": _label(token),
            "serial": token.serial.decode("ascii", "replace").strip(),
            "manufacturer": token.manufacturer_id.strip(),
            "model": token.model.strip(),
        }
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            return False
        return all(value is None or have[name] == value for name, value in wanted.items())

    chosen = [(slot, token) for slot, token in present if matches(slot, token)]
    listing = ", ".join(_describe(slot, token) for slot, token in present) or "none"
    asked = ";".join(f"{name}={value}" for name, value in wanted.items() if value is not None)
    if uri.slot_id is not None:
        asked += f";slot-id={uri.slot_id}"
    if not chosen:
        raise KeyFileError(
            f"no PKCS#11 token matches {asked.strip(';')!r}; the tokens there are: {listing}"
        )
    if len(chosen) > 1:
        raise KeyFileError(
            f"{len(chosen)} PKCS#11 tokens match {asked.strip(';')!r}: "
            f"{', '.join(_describe(s, t) for s, t in chosen)}; add serial= to choose one"
        )
    return chosen[0][1]


def _open(uri: Pkcs11URI, *, rw: bool = False) -> tuple[pkcs11.Token, pkcs11.Session]:
    """Load the module, find the token and log in with its user PIN."""
    _require_library()
    import pkcs11 as p11

    path = _module_path(uri)
    with _translated(f"cannot load {path!r} as a PKCS#11 module (the token vendor's .so)"):
        lib = p11.lib(path)
    token = _find_token(lib, uri)
    pin = token_pin(uri, _label(token))
    with _translated(f"cannot log in to token {_label(token)!r}"):
        return token, token.open(rw=rw, user_pin=pin)


def _keys(session: pkcs11.Session, kind: object, uri: Pkcs11URI) -> list[pkcs11.Object]:
    import pkcs11 as p11

    attrs: dict[p11.Attribute, object] = {p11.Attribute.CLASS: kind}
    if uri.object is not None:
        attrs[p11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[p11.Attribute.ID] = uri.id
    return list(session.get_objects(attrs))


def _raw_public(point: bytes) -> bytes:
    """CKA_EC_POINT: a DER OCTET STRING around the 32 bytes (PKCS#11 3.0), or the bytes bare."""
    if len(point) == RAW_KEY_BYTES + 2 and point[:2] == bytes((0x04, RAW_KEY_BYTES)):
        return point[2:]
    if len(point) == RAW_KEY_BYTES:
        return point
    raise KeyFileError(f"the token's public key is not an Ed25519 point ({len(point)} bytes)")


def _public_key(
    session: pkcs11.Session, private: pkcs11.Object, uri: Pkcs11URI, where: str
) -> PublicKey:
    """The public key object beside *private*: the same label and id."""
    import pkcs11 as p11

    twin = Pkcs11URI(object=private[p11.Attribute.LABEL] or None, id=private[p11.Attribute.ID])
    found = _keys(session, p11.ObjectClass.PUBLIC_KEY, twin)
    if len(found) != 1:
        raise KeyFileError(
            f"{where}: {len(found)} public key objects share the label and id of the private "
            f"key {uri.describe_key()}; keep exactly one (the signer's public key is read there)"
        )
    params = bytes(found[0][p11.Attribute.EC_PARAMS])
    if params not in _ED25519_PARAMS:
        raise KeyFileError(
            f"{where}: the key {uri.describe_key()} is an Edwards key but not Ed25519 "
            "(Ed448?); generate one with 'secure-urlimport keygen --pkcs11 URI PREFIX'"
        )
    try:
        return PublicKey.from_raw(_raw_public(bytes(found[0][p11.Attribute.EC_POINT])))
    except ConfigurationError as exc:
        raise KeyFileError(f"{where}: the token's public key is unusable: {exc}") from None


class TokenSigner:
    """An Ed25519 key in a token: a :class:`~.._format.keys.Signer` whose private key
    never leaves the token.  Its ``repr`` names the key, never the PIN."""

    def __init__(self, session: pkcs11.Session, key: pkcs11.SignMixin, public: PublicKey) -> None:
        self._session: pkcs11.Session | None = session
        self._key = key
        self._lock = threading.Lock()  # a PKCS#11 session runs one operation at a time
        self.public = public

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        import pkcs11 as p11

        with self._lock:
            if self._session is None:
                raise KeyFileError(f"the token key {self.keyid} was closed; load it again")
            with _translated(f"the token key {self.keyid} cannot sign"):
                return bytes(self._key.sign(message, mechanism=p11.Mechanism.EDDSA))

    def close(self) -> None:
        """Log out and close the token session (again is a no-op)."""
        with self._lock:
            session, self._session = self._session, None
        atexit.unregister(self.close)
        if session is not None:
            with contextlib.suppress(Exception):  # at exit: the module may be gone already
                session.close()

    def __enter__(self) -> TokenSigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._session is None else "open"
        return f"<TokenSigner ed25519 {self.keyid} ({state})>"


def load_token_signer(spec: str) -> TokenSigner:
    """The signer for the ``pkcs11:`` URI *spec*, checked by signing a test message with it."""
    uri = Pkcs11URI.parse(spec)
    token, session = _open(uri)
    where = f"token {_label(token)!r}"
    try:
        signer = _signer(session, uri, where)
    except BaseException:
        with contextlib.suppress(Exception):
            session.close()
        raise
    atexit.register(signer.close)
    return signer


def _signer(session: pkcs11.Session, uri: Pkcs11URI, where: str) -> TokenSigner:
    import pkcs11 as p11

    with _translated(f"cannot read the keys of {where}"):
        found = _keys(session, p11.ObjectClass.PRIVATE_KEY, uri)
        if not found:
            labels = sorted(
                f"{key[p11.Attribute.LABEL]!r} (id {bytes(key[p11.Attribute.ID]).hex() or '-'})"
                for key in session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.PRIVATE_KEY})
            )
            raise KeyFileError(
                f"{where} has no private key {uri.describe_key()}; its private keys are: "
                f"{', '.join(labels) or 'none'} (make one with 'secure-urlimport keygen "
                "--pkcs11 URI PREFIX')"
            )
        if len(found) > 1:
            raise KeyFileError(
                f"{where} has {len(found)} private keys {uri.describe_key()}; "
                "add id= (or a unique object=) to the URI to choose one"
            )
        private = found[0]
        if private[p11.Attribute.KEY_TYPE] != p11.KeyType.EC_EDWARDS:
            raise KeyFileError(
                f"{where}: the key {uri.describe_key()} is not an Ed25519 key "
                f"({p11.KeyType(private[p11.Attribute.KEY_TYPE]).name}); secure_urlimport "
                "signs with Ed25519 only"
            )
        public = _public_key(session, private, uri, where)
        assert isinstance(private, p11.SignMixin)
        signer = TokenSigner(session, private, public)
    test = _SELF_TEST + os.urandom(16)
    if not public.verifies(signer.sign(test), test):
        raise KeyFileError(
            f"{where}: the key {uri.describe_key()} makes signatures its public key object "
            "does not verify; the two objects do not belong together"
        )
    return signer


def generate_in_token(spec: str, keep: Callable[[PublicKey], None]) -> PublicKey:
    """Make an Ed25519 key pair in the token named by *spec* (private key sensitive and
    never extractable), hand its public key to *keep* (keygen writes the .pub) and
    return it.  A label already in the token is refused; if *keep* raises, the new
    pair is removed again, so a failed keygen leaves the token as it was."""
    uri = Pkcs11URI.parse(spec)
    if uri.object is None:
        raise KeyFileError("keygen --pkcs11 needs object=LABEL in the URI: the new key's label")
    token, session = _open(uri, rw=True)
    import pkcs11 as p11
    from pkcs11.util.ec import encode_named_curve_parameters

    where = f"token {_label(token)!r}"
    with session, _translated(f"cannot generate a key in {where}"):
        for taken, named in (
            (Pkcs11URI(object=uri.object), f"labelled {uri.object!r}; choose another object="),
            (Pkcs11URI(id=uri.id), "with that id; choose another id= or leave it out"),
        ):
            if (taken.object or taken.id) and any(
                _keys(session, kind, taken)
                for kind in (p11.ObjectClass.PRIVATE_KEY, p11.ObjectClass.PUBLIC_KEY)
            ):
                raise KeyFileError(f"{where} already holds a key {named}")
        pair = session.generate_keypair(
            p11.KeyType.EC_EDWARDS,
            store=True,
            label=uri.object,
            id=uri.id if uri.id is not None else os.urandom(8),
            public_template={p11.Attribute.EC_PARAMS: encode_named_curve_parameters(_ED25519_OID)},
            private_template={
                p11.Attribute.SENSITIVE: True,
                p11.Attribute.EXTRACTABLE: False,
                p11.Attribute.PRIVATE: True,
            },
        )
        try:
            public = _public_key(session, pair[1], uri, where)
            keep(public)
        except BaseException:
            for key in pair:
                key.destroy()
            raise
        return public
