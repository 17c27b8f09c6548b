"""The root chain's pure rules (``_trust/root_chain.py``) and the root format (``_format/root.py``).

Table-driven like python-tuf's ``test_updater_key_rotations.py``: each row is
(the trusted root's keys and threshold, the next root's version, keys and
threshold, who signed it, the expected result).  No I/O: bytes in, a trusted
root or an error out.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from secure_urlimport._format.keys import PrivateKey, TrustedKeys
from secure_urlimport._format.root import (
    Role,
    Root,
    encode_root,
    encode_root_body,
    parse_root_body,
    root_message,
    split_root_file,
)
from secure_urlimport._trust.root_chain import TrustedRoot
from secure_urlimport.errors import (
    ConfigurationError,
    ExpiredRootError,
    ManifestFormatError,
    RollbackError,
    UntrustedRootError,
)

NOW = datetime(2026, 12, 2, tzinfo=UTC)
KEYS = {name: PrivateKey.generate() for name in "abcdes"}
URL = "https://example.test/tree/secure-urlimport.root.N"


def ids(names: str) -> tuple[str, ...]:
    return tuple(sorted(KEYS[n].keyid for n in names))


def root_value(
    version: int, root_keys: str, threshold: int, *, name: str = "tree", signers: str = "s"
) -> Root:
    used = set(root_keys) | set(signers)
    return Root(
        name=name,
        version=version,
        created=NOW - timedelta(days=1),
        expires=NOW + timedelta(days=365),
        keys={KEYS[n].keyid: KEYS[n].public for n in sorted(used)},
        root=Role(ids(root_keys), threshold),
        signers=Role(ids(signers), 1),
    )


def signed(root: Root, by: str) -> bytes:
    body = encode_root_body(root)
    return encode_root(
        body, [(KEYS[n].keyid, KEYS[n].sign(root_message(KEYS[n].keyid, body))) for n in by]
    )


def pin(names: str, threshold: int = 1) -> TrustedKeys:
    return TrustedKeys({KEYS[n].keyid: KEYS[n].public for n in names}, threshold)


@dataclass(frozen=True)
class Step:
    """Root N (keys, threshold) trusted; root N+1 offered (keys, threshold, signed by)."""

    old_keys: str
    old_threshold: int
    new_keys: str
    new_threshold: int
    signed_by: str
    expected: type[Exception] | None  # None: trusted


STEPS = {
    "same key signs the next root": Step("a", 1, "a", 1, "a", None),
    "rotation signed by the old and the new key": Step("a", 1, "b", 1, "ab", None),
    "rotation signed by the old key only": Step("a", 1, "b", 1, "a", UntrustedRootError),
    "rotation signed by the new key only": Step("a", 1, "b", 1, "b", UntrustedRootError),
    "two of two old keys sign": Step("ab", 2, "ab", 2, "ab", None),
    "one of two old keys signs, two needed": Step("ab", 2, "ab", 2, "a", UntrustedRootError),
    "two of three old keys sign": Step("abc", 2, "abc", 2, "bc", None),
    "one of three old keys signs, two needed": Step("abc", 2, "abc", 2, "c", UntrustedRootError),
    "a stranger signs": Step("a", 1, "a", 1, "d", UntrustedRootError),
    "threshold raised, met by old and new": Step("a", 1, "ab", 2, "ab", None),
    "threshold raised, new threshold not met": Step("a", 1, "ab", 2, "a", UntrustedRootError),
    "old keys revoked for new ones": Step("ab", 2, "cd", 2, "abcd", None),
    "revoked key alone signs after revocation": Step("b", 1, "b", 1, "a", UntrustedRootError),
    "threshold lowered by two old keys": Step("abc", 2, "abc", 1, "ab", None),
    "threshold lowered by one old key": Step("abc", 2, "abc", 1, "a", UntrustedRootError),
}


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_advance_trusts_the_next_root_only_when_old_and_new_root_keys_sign(step: Step):
    current = TrustedRoot.from_store(
        signed(root_value(1, step.old_keys, step.old_threshold), step.old_keys), url=URL
    )
    offered = signed(root_value(2, step.new_keys, step.new_threshold), step.signed_by)
    if step.expected is None:
        current.advance(offered, url=URL)
        assert current.root.version == 2 and current.data == offered
        assert current.root.root_keys.keyids == list(ids(step.new_keys))
    else:
        with pytest.raises(step.expected):
            current.advance(offered, url=URL)
        assert current.root.version == 1  # nothing changed


VERSIONS = {
    "the next version": (2, None),
    "the same version again": (1, RollbackError),
    "an older version": (0, RollbackError),
    "a skipped version": (3, UntrustedRootError),
    "far ahead": (2**63 - 1, UntrustedRootError),
}


@pytest.mark.parametrize(("body_version", "expected"), VERSIONS.values(), ids=VERSIONS.keys())
def test_advance_accepts_only_exactly_the_next_version(body_version, expected):
    current = TrustedRoot.from_store(signed(root_value(1, "a", 1), "a"), url=URL)
    if body_version == 0:
        older = TrustedRoot.from_store(signed(root_value(2, "a", 1), "a"), url=URL)
        offered, current = signed(root_value(1, "a", 1), "a"), older
        body_version = 1
    else:
        offered = signed(root_value(body_version, "a", 1), "a")
    if expected is None:
        current.advance(offered, url=URL)
        assert current.root.version == body_version
    else:
        with pytest.raises(expected, match="version"):
            current.advance(offered, url=URL)


def test_advance_refuses_a_root_of_another_tree_name():
    current = TrustedRoot.from_store(signed(root_value(1, "a", 1, name="a"), "a"), url=URL)
    with pytest.raises(UntrustedRootError, match="two different trees"):
        current.advance(signed(root_value(2, "a", 1, name="b"), "a"), url=URL)


def test_advance_keeps_the_tree_name_twin():
    current = TrustedRoot.from_store(signed(root_value(1, "a", 1, name="a"), "a"), url=URL)
    current.advance(signed(root_value(2, "a", 1, name="a"), "a"), url=URL)
    assert current.root.name == "a"


FROM_PIN = {
    "pinned key signs and is listed": ("a", 1, "a", 1, "a", "trusted"),
    "pinned key did not sign": ("a", 1, "b", 1, "b", None),
    "pinned key signs but is not a root key": ("a", 1, "b", 1, "ab", UntrustedRootError),
    "one of two pinned keys signs, two pinned": ("ab", 2, "ab", 1, "a", None),
    "two of two pinned keys sign": ("ab", 2, "ab", 2, "ab", "trusted"),
    "two pinned must sign, the root lets one sign the next": (
        "ab",
        2,
        "ab",
        1,
        "ab",
        UntrustedRootError,
    ),
    "pinned key signs, root's own threshold not met": ("a", 1, "ab", 2, "a", UntrustedRootError),
    "pinned key and the root's other key sign": ("a", 1, "ab", 2, "ab", "trusted"),
}


@pytest.mark.parametrize(
    ("pinned", "pin_threshold", "root_keys", "threshold", "signed_by", "expected"),
    FROM_PIN.values(),
    ids=FROM_PIN.keys(),
)
def test_from_pin_trusts_a_root_the_pinned_root_keys_signed_and_list(
    pinned, pin_threshold, root_keys, threshold, signed_by, expected
):
    data = signed(root_value(1, root_keys, threshold), signed_by)
    if isinstance(expected, type):
        with pytest.raises(expected):
            TrustedRoot.from_pin(data, pin(pinned, pin_threshold), url=URL)
        return
    trusted = TrustedRoot.from_pin(data, pin(pinned, pin_threshold), url=URL)
    if expected is None:
        assert trusted is None
    else:
        assert trusted is not None and trusted.root.version == 1


def test_from_store_trusts_a_root_still_carrying_its_own_root_signatures():
    data = signed(root_value(4, "ab", 2), "ab")
    assert TrustedRoot.from_store(data, url=URL).root.version == 4


def test_from_store_refuses_a_stored_root_whose_body_was_edited():
    data = signed(root_value(4, "ab", 2), "ab").replace(b'"version": 4', b'"version": 9')
    with pytest.raises(UntrustedRootError):
        TrustedRoot.from_store(data, url=URL)


def test_from_store_refuses_a_stored_root_signed_by_too_few_of_its_keys():
    with pytest.raises(UntrustedRootError, match="its own root keys"):
        TrustedRoot.from_store(signed(root_value(4, "ab", 2), "a"), url=URL)


def test_check_expiry_passes_before_the_root_expires():
    trusted = TrustedRoot.from_store(signed(root_value(1, "a", 1), "a"), url=URL)
    trusted.check_expiry(now=NOW, url=URL)


def test_check_expiry_refuses_at_and_after_the_expiry_with_what_to_do():
    trusted = TrustedRoot.from_store(signed(root_value(1, "a", 1), "a"), url=URL)
    with pytest.raises(ExpiredRootError, match="root update") as err:
        trusted.check_expiry(now=trusted.root.expires, url=URL)
    assert URL in str(err.value)


# -- the format: canonical bytes, and what the parser refuses ---------------------------


def body_of(root: Root) -> dict:
    return json.loads(encode_root_body(root))


def encoded(obj: dict) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()


def test_canonical_encoding_round_trips_byte_for_byte():
    root = root_value(3, "abc", 2, signers="sd")
    root = Root(
        **{
            **root.__dict__,
            "trees": {"other": Role(ids("e"), 1)},
            "keys": {**root.keys, KEYS["e"].keyid: KEYS["e"].public},
        }
    )
    body = encode_root_body(root)
    parsed = parse_root_body(body)
    assert encode_root_body(parsed) == body
    assert parsed == root
    sig = KEYS["a"].sign(root_message(KEYS["a"].keyid, body))
    assert split_root_file(encode_root(body, [(KEYS["a"].keyid, sig)])).body == body


def test_encoding_refuses_a_root_holding_a_key_no_role_names():
    root = root_value(1, "a", 1)
    extra = Root(**{**root.__dict__, "keys": {**root.keys, KEYS["d"].keyid: KEYS["d"].public}})
    with pytest.raises(ConfigurationError, match="exactly the keys"):
        encode_root_body(extra)


def _edit(edit) -> bytes:
    obj = body_of(root_value(1, "ab", 1))
    edit(obj)
    return encoded(obj)


A, B = KEYS["a"].keyid, KEYS["b"].keyid
REFUSED = {
    "a missing field": lambda o: o.pop("trees"),
    "an unknown field": lambda o: o.update(extra=1),
    "another type": lambda o: o.update(type="secure-urlimport/manifest"),
    "format 2": lambda o: o.update(format=2),
    "format true": lambda o: o.update(format=True),
    "version 0": lambda o: o.update(version=0),
    "version as a string": lambda o: o.update(version="1"),
    "no keys": lambda o: o.update(keys={}),
    "a key under the wrong id": lambda o: o["keys"].update({A: o["keys"][B]}),
    "a key that is not base64": lambda o: o["keys"].update({A: "not base64!"}),
    "a key of 31 bytes": lambda o: o["keys"].update({A: base64.b64encode(b"x" * 31).decode()}),
    "a role naming an unknown key": lambda o: o["root"].update(keyids=sorted([A, "0" * 16])),
    "a role with an unknown field": lambda o: o["root"].update(extra=1),
    "a role without keys": lambda o: o["root"].update(keyids=[]),
    "role keyids unsorted": lambda o: o["root"].update(keyids=sorted([A, B], reverse=True)),
    "role keyids repeated": lambda o: o["root"].update(keyids=[A, A]),
    "threshold 0": lambda o: o["root"].update(threshold=0),
    "threshold above the role's keys": lambda o: o["root"].update(threshold=3),
    "threshold true": lambda o: o["root"].update(threshold=True),
    "a bad key id": lambda o: o["signers"].update(keyids=["XYZ"]),
    "a name with a control character": lambda o: o.update(name="tree\x1b[2J"),
    "its own name again under trees": lambda o: o.update(trees={"tree": o["signers"]}),
    "a bad expiry time": lambda o: o.update(expires="tomorrow"),
}


@pytest.mark.parametrize("edit", REFUSED.values(), ids=REFUSED.keys())
def test_parse_refuses_a_root_body_with(edit):
    with pytest.raises(ManifestFormatError):
        parse_root_body(_edit(edit))


def test_parse_accepts_the_unedited_body_twin():
    assert parse_root_body(_edit(lambda o: None)).version == 1


def test_parse_refuses_a_float_and_a_repeated_field():
    body = encode_root_body(root_value(1, "a", 1))
    with pytest.raises(ManifestFormatError):
        parse_root_body(body.replace(b'"version": 1', b'"version": 1.0'))
    with pytest.raises(ManifestFormatError):
        parse_root_body(body.replace(b'"version": 1', b'"version": 1, "version": 2'))
