"""Attacks on compiled extension modules (issue #15, item 3).

An extension module runs native code the moment it is loaded, so each attack
stages an attacker's module whose init function writes a marker file, and
proves both the exact refusal and that the marker was never written.  The
server's copy is tampered with or added unsigned; the client's private copy
(``<cache dir>/ext``) is swapped between runs, made writable by others,
handed to another user (``os.chown`` as root) or replaced by a symbolic link.
Each import runs in a fresh interpreter: an extension cannot be unloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from extbuild import EXT_SUFFIX, build, needs_compiler
from extensions_helpers import MakeTree, make_tree_factory
from forking import NEIGHBOUR_UID, as_root

pytestmark = needs_compiler


@pytest.fixture
def make_tree(tmp_path, publisher, serve, tls) -> MakeTree:
    return make_tree_factory(tmp_path, publisher, serve, tls)


@pytest.fixture
def evil(tmp_path, marker):
    """The attacker's build of ``fast``: writes *marker* when loaded."""
    return build(tmp_path / "evil", "fast", value="evil", marker=marker)


def refused_before_loading(tree, marker, problem: str) -> None:
    """The copy is refused with a message naming *problem* and how to fix it."""
    got, _ = tree.run("pkg.fast")
    assert got["error"] == "ConfigurationError"
    assert got["message"].startswith("cannot import 'pkg.fast': refusing to load compiled")
    assert problem in got["message"]
    assert "delete " in got["message"]
    assert not marker.exists(), "attacker code ran"


@pytest.mark.parametrize(
    ("size", "error"),
    [("same", "TamperedFileError"), ("larger", "ResponseTooLargeError")],
    ids=["same-size", "larger"],
)
def test_a_tampered_extension_module_on_the_server_is_refused_and_never_loaded(
    make_tree, evil, marker, size, error
):
    # The signed build's string is long enough for the attacker's (which has
    # the marker's path in it) to fit in its size, padded with zeros that the
    # dynamic loader ignores.
    tree = make_tree(extensions={"pkg/fast": "signed".ljust(8000)})
    signed_size = tree.ext("pkg/fast").stat().st_size
    payload = evil.read_bytes()
    assert len(payload) < signed_size
    if size == "same":
        payload = payload.ljust(signed_size, b"\0")
    else:
        payload += b"\0" * (signed_size + 1 - len(payload))
    tree.ext("pkg/fast").write_bytes(payload)  # after signing
    got, _ = tree.run("pkg.fast")
    assert got["error"] == error
    assert got["message"].startswith("cannot import 'pkg.fast': ")
    assert f"/pkg/fast{EXT_SUFFIX}" in got["message"]
    assert not marker.exists(), "attacker code ran"
    assert tree.copies() == []  # nothing unverified was written to disk


def test_the_attackers_build_padded_to_the_signed_size_would_load(tmp_path, evil, marker):
    """The twin of the test above: the padded payload is a working module."""
    padded = tmp_path / "padded" / evil.name
    padded.parent.mkdir()
    padded.write_bytes(evil.read_bytes().ljust(evil.stat().st_size + 4096, b"\0"))
    code = (
        f"import sys; sys.path.insert(0, {str(padded.parent)!r}); import fast; print(fast.SIGNED)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "evil"
    assert marker.exists()


def test_an_unsigned_extension_module_added_on_the_server_is_not_found(make_tree, tmp_path, marker):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    build(tree.root / "pkg", "extra", value="evil", marker=marker)  # not in the manifest
    got, _ = tree.run("pkg.extra")
    assert got["error"] == "ModuleNotFoundError"
    assert not marker.exists(), "attacker code ran"
    assert not any("extra" in p.name for p in tree.copies())


def test_a_copy_swapped_on_disk_between_runs_is_replaced_by_the_verified_bytes(
    make_tree, evil, marker
):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    copy = tree.copy_of("pkg/fast")
    copy.chmod(0o600)  # the same user (or a process running as it) edits it
    copy.write_bytes(evil.read_bytes())
    copy.chmod(0o500)
    got, log = tree.run("pkg.fast")
    assert got["SIGNED"] == "signed"
    assert f"WARNING {copy} differs from the signed {tree.url}/pkg/fast{EXT_SUFFIX}" in log
    assert copy.read_bytes() == tree.ext("pkg/fast").read_bytes()
    assert not marker.exists(), "attacker code ran"


def test_a_copy_made_writable_by_others_is_refused(make_tree, evil, marker):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    copy = tree.copy_of("pkg/fast")
    copy.chmod(0o600)
    copy.write_bytes(evil.read_bytes())  # what a group member could now do
    copy.chmod(0o520)
    refused_before_loading(tree, marker, f"{copy}: other users can write it (mode 0520)")


@pytest.mark.parametrize("level", ["the package directory", "the release directory"])
def test_a_directory_of_the_copies_made_group_writable_is_refused(make_tree, evil, marker, level):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    copy = tree.copy_of("pkg/fast")
    directory = copy.parent if level == "the package directory" else copy.parent.parent
    directory.chmod(0o770)
    copy.unlink()  # a group member swaps the file
    shutil.copyfile(evil, copy)
    copy.chmod(0o500)
    refused_before_loading(tree, marker, f"{directory}: other users can write it (mode 0770)")


@as_root
def test_copies_owned_by_another_user_are_refused(make_tree, evil, marker):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    copy = tree.copy_of("pkg/fast")
    copy.chmod(0o600)
    copy.write_bytes(evil.read_bytes())
    copy.chmod(0o500)
    os.chown(copy.parent, NEIGHBOUR_UID, NEIGHBOUR_UID)  # the neighbour's directory now
    refused_before_loading(
        tree, marker, f"{copy.parent}: it belongs to user id {NEIGHBOUR_UID}, not to this user"
    )


def test_a_symbolic_link_planted_for_a_copy_is_refused(make_tree, evil, marker):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    copy = tree.copy_of("pkg/fast")
    copy.unlink()
    copy.symlink_to(evil)
    refused_before_loading(tree, marker, f"{copy}: it is a symbolic link")


def test_a_symbolic_link_planted_for_a_directory_is_refused(make_tree, evil, marker, tmp_path):
    tree = make_tree(extensions={"pkg/fast": "signed"})
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    package = tree.copy_of("pkg/fast").parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shutil.copyfile(evil, elsewhere / evil.name)
    (elsewhere / evil.name).chmod(0o500)
    shutil.rmtree(package)
    package.symlink_to(elsewhere)
    refused_before_loading(tree, marker, f"{package}: it is a symbolic link")


def test_turned_off_even_a_signed_extension_module_is_never_loaded(make_tree, marker):
    tree = make_tree(extensions={"pkg/fast": "signed"}, marker=marker)
    got, _ = tree.run("pkg.fast", extensions=False)
    assert got["error"] == "ExtensionModulesOffError"
    assert not marker.exists(), "the extension module was loaded"
    assert tree.copies() == []
    # Its twin: turned on, the same signed module loads (and writes the marker).
    assert tree.run("pkg.fast")[0]["SIGNED"] == "signed"
    assert marker.exists()
