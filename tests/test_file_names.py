"""The names things filed by URL get on disk: fixed, so that the manifest cache,
the rollback floors and the bytecode packs written by earlier releases are still
found (a floor that is not found is a floor lost)."""

from __future__ import annotations

import hashlib
import sys

import pytest

from secure_urlimport._store.bytecode import pack_name
from secure_urlimport._store.cache import FileCache, Validators
from secure_urlimport._store.file_names import file_name_for
from secure_urlimport._store.state import StateStore
from secure_urlimport._trust.verify import TrustedState

URL = "https://code.example.com/tree"
#: sha256(URL)[:32], as every release so far has named it.
URL_NAME = "8568bc364fdc2fcd4169f5b89c36597d"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (URL, URL_NAME),
        ("https://code.example.com/träd", "d9a5b237abe24d8cc104b6be2f8589d3"),  # UTF-8
    ],
    ids=["ascii", "non-ascii"],
)
def test_a_url_gets_the_name_earlier_releases_gave_it(text: str, name: str) -> None:
    assert file_name_for(text) == name


def test_the_manifest_cache_files_a_url_under_that_name(tmp_path):
    FileCache(tmp_path).put_manifest(URL, Validators(etag='"etag"'), b"manifest")
    assert [p.name for p in (tmp_path / "manifests").iterdir()] == [URL_NAME]


def test_the_rollback_state_files_a_url_under_that_name_with_json_suffix(tmp_path):
    StateStore(tmp_path).record(URL, ["k1"], TrustedState(1, "0" * 64))
    assert [p.name for p in (tmp_path / "state").iterdir()] == [f"{URL_NAME}.json"]


def test_a_bytecode_pack_is_named_after_the_url_and_this_interpreter():
    tag = f"{URL}\0{sys.implementation.cache_tag}\0{sys.flags.optimize}"
    assert pack_name(URL) == hashlib.sha256(tag.encode("utf-8")).hexdigest()[:32]
