"""Code that opens files beside ``__file__`` (issue #15 item 5): what really happens.

A remote module's ``__file__`` is a URL.  ``os.path.join(os.path.dirname(__file__),
"t.txt")`` is then ``https://host/pkg/t.txt``, which the operating system reads as
the *relative* path ``https:/host/pkg/t.txt`` under the current directory.  Without
such a directory ``open()`` fails, as it does for a module imported from a zip
(there the path runs through the archive file).  With one, planted by whoever
can write to the current directory, ``open()`` reads it: unverified bytes the
library never sees.  That is inherent while ``__file__`` is a URL; the advice is
``importlib.resources`` or ``__loader__.get_data()``, which read verified bytes.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import Signer, TLSFiles, write_tree

from secure_urlimport import install

BESIDE = """\
import os
from importlib import resources

HERE = os.path.dirname(__file__)


def by_path():
    with open(os.path.join(HERE, "t.txt"), encoding="utf-8") as f:
        return f.read()


def by_resources():
    return resources.files(__package__).joinpath("t.txt").read_text(encoding="utf-8")
"""

FILES = {"beside/__init__.py": "", "beside/mod.py": BESIDE, "beside/t.txt": "signed\n"}


@pytest.fixture
def remote(tmp_path: Path, serve, tls: TLSFiles, publisher: Signer, monkeypatch) -> str:
    """The package served and installed; the current directory an empty one."""
    root = write_tree(tmp_path / "tree", FILES)
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return server.url


def test_open_beside_a_remote_dunder_file_fails_and_resources_read_the_signed_file(remote):
    mod = importlib.import_module("beside.mod")
    assert mod.__file__ == f"{remote}/beside/mod.py"
    with pytest.raises(FileNotFoundError) as err:
        mod.by_path()
    assert err.value.filename == f"{remote}/beside/t.txt"
    assert mod.by_resources() == "signed\n"


def test_open_beside_a_zipimported_dunder_file_fails_too(tmp_path: Path, monkeypatch):
    # The reference for "not a local directory": the same code from a zip.
    archive = tmp_path / "beside.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel, text in FILES.items():
            zf.writestr(rel, text)
    monkeypatch.syspath_prepend(str(archive))
    mod = importlib.import_module("beside.mod")
    assert mod.__file__ == str(archive / "beside" / "mod.py")
    with pytest.raises(NotADirectoryError):  # an OSError, as remotely
        mod.by_path()
    assert mod.by_resources() == "signed\n"


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="the hazard (SECURITY.md): open() of a path built from a URL __file__ is a "
    "relative local path, so a file planted under ./https:/host/ in the current "
    "directory is read; use importlib.resources or __loader__.get_data()",
)
def test_open_beside_a_remote_dunder_file_never_reads_a_file_planted_in_the_cwd(remote):
    planted = Path.cwd() / remote.replace("https://", "https:/") / "beside" / "t.txt"
    write_tree(planted.parent, {"t.txt": "planted, never signed\n"})
    mod = importlib.import_module("beside.mod")
    assert mod.by_resources() == "signed\n"  # verified: resources never look at the cwd
    try:
        text = mod.by_path()
    except FileNotFoundError:
        text = None
    assert text != "planted, never signed\n", f"read {planted} (relative to the cwd)"
    assert "beside.mod" in sys.modules  # the import itself was fine
