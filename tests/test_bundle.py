"""The bundle: one download for every module of a tree, never trusted on its own.

``sign`` writes ``secure-urlimport.bundle`` (every ``.py`` file, concatenated
in path order).  A cold import fetches the manifest and the bundle; each
module cut out of it is verified against its own signed entry before use.
Whatever happens to the bundle, the worst outcome is speed: one download per
file, each verified.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import pytest
from conftest import evil_source, rebuild_bundle, write_tree

from secure_urlimport import Config, TamperedFileError, install
from secure_urlimport._format.bundle import build_bundle, bundle_members
from secure_urlimport._format.manifest import parse_manifest_body, split_manifest_file
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME

PAD = "#" * 300 + "\n"  # room for attacker code of the same size
PACKAGE = {
    "pkg/__init__.py": "from . import a, b\n",
    "pkg/a.py": "A = 'signed a'\n" + PAD,
    "pkg/b.py": "B = 'signed b'\n" + PAD,
    "pkg/data.txt": "data files are not in the bundle\n",
}


@pytest.fixture
def tree(tmp_path, publisher) -> Path:
    root = write_tree(tmp_path / "tree", PACKAGE)
    publisher.sign(root)
    return root


def manifest_entries(root: Path):
    signed = split_manifest_file((root / MANIFEST_NAME).read_bytes())
    return parse_manifest_body(signed.body).files


def test_sign_writes_a_bundle_of_every_module_in_path_order(tree):
    expected = b"".join((tree / p).read_bytes() for p in sorted(PACKAGE) if p.endswith(".py"))
    assert (tree / BUNDLE_NAME).read_bytes() == expected
    members = bundle_members(manifest_entries(tree))
    assert [m.path for m in members] == ["pkg/__init__.py", "pkg/a.py", "pkg/b.py"]
    assert build_bundle(members, {m.path: (tree / m.path).read_bytes() for m in members}) == (
        expected
    )
    assert BUNDLE_NAME not in manifest_entries(tree)  # not signed itself: its members are


def test_cold_import_of_a_package_is_two_downloads(tree, serve, tls, publisher, caplog):
    server = serve(tree)
    caplog.set_level(logging.DEBUG, logger="secure_urlimport")
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert importlib.import_module("pkg").b.B == "signed b"
    fetched = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fetch ")]
    assert [m.split()[1].rpartition("/")[2] for m in fetched] == [MANIFEST_NAME, BUNDLE_NAME]


def test_module_tampered_on_the_server_is_served_from_the_signed_bundle(
    tree, serve, tls, publisher, marker
):
    # The attacker edits the file but not the bundle: the client never needs
    # the file, and what it runs is the signed text.
    (tree / "pkg/b.py").write_text(evil_source(marker))
    install(serve(tree).url, pubkey=publisher.pub, cafile=tls.cafile)
    assert importlib.import_module("pkg").b.B == "signed b"
    assert not marker.exists()


def test_tampered_bundle_falls_back_to_verified_files_and_never_runs(
    tree, serve, tls, publisher, marker, caplog
):
    bundle = tree / BUNDLE_NAME
    evil = evil_source(marker).encode()
    bundle.write_bytes(evil + b"#" * (bundle.stat().st_size - len(evil)))  # same size
    install(serve(tree).url, pubkey=publisher.pub, cafile=tls.cafile)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("pkg").a.A == "signed a"
    assert "does not match its manifest" in caplog.text
    assert not marker.exists()


def test_module_and_bundle_both_tampered_are_refused(tree, serve, tls, publisher, marker):
    evil = evil_source(marker)
    (tree / "pkg/b.py").write_text(evil + "#" * (len(PACKAGE["pkg/b.py"]) - len(evil) - 1) + "\n")
    rebuild_bundle(tree)
    install(serve(tree).url, pubkey=publisher.pub, cafile=tls.cafile)
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("pkg")
    assert err.value.name == "pkg.b"
    assert not marker.exists()
    assert "pkg.b" not in sys.modules and "pkg" not in sys.modules


def test_missing_bundle_falls_back_to_one_download_per_file(tree, serve, tls, publisher):
    (tree / BUNDLE_NAME).unlink()
    install(serve(tree).url, pubkey=publisher.pub, cafile=tls.cafile)
    assert importlib.import_module("pkg").a.A == "signed a"


def test_bundle_of_the_wrong_size_is_not_used(tree, serve, tls, publisher, caplog):
    with (tree / BUNDLE_NAME).open("ab") as handle:
        handle.truncate(5)
    install(serve(tree).url, pubkey=publisher.pub, cafile=tls.cafile)
    with caplog.at_level(logging.WARNING, logger="secure_urlimport"):
        assert importlib.import_module("pkg").b.B == "signed b"
    assert "not the" in caplog.text and "its manifest implies" in caplog.text


def test_bundle_larger_than_max_bundle_bytes_is_never_downloaded(
    tree, serve, tls, publisher, caplog
):
    caplog.set_level(logging.DEBUG, logger="secure_urlimport")
    install(
        serve(tree).url, pubkey=publisher.pub, config=Config(cafile=tls.cafile, max_bundle_bytes=10)
    )
    assert importlib.import_module("pkg").b.B == "signed b"
    assert not any(BUNDLE_NAME in r.getMessage() for r in caplog.records)


def test_warm_start_reads_the_cached_bundle_and_downloads_only_the_manifest(
    tree, serve, tls, publisher, caplog
):
    server = serve(tree)
    importer = install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    importlib.import_module("pkg")
    importer.uninstall()
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[name]
    caplog.set_level(logging.DEBUG, logger="secure_urlimport")
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert importlib.import_module("pkg").a.A == "signed a"
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("fetch ")] == [
        f"fetch {server.url}/{MANIFEST_NAME} (if changed)"
    ]
    assert any(m.startswith("using the cached bundle") for m in messages)
