"""Parity of frames: warnings and tracebacks of a remote import match a local one exactly.

The stdlib loaders run module code from importlib's own frames, which
``warnings`` skips for ``stacklevel`` and tracebacks drop; a loader that calls
``exec`` itself leaves a frame of its own under every module body.  Each test
runs one scenario in fresh interpreters three ways (``local``: a directory on
``sys.path``; ``meta``: the signed tree ``install()``ed; ``hook``: pinned, with
the URL on ``sys.path``), set up by a ``sitecustomize`` before the scenario's
first line, and expects one result once the tree's location (directory or URL)
is written ``<ROOT>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, Signer, TLSFiles, write_tree

from secure_urlimport.cli.devserver import TreeServer

LOCAL, META, HOOK = "local", "meta", "hook"
MODES = (LOCAL, META, HOOK)

#: Installed in each fresh interpreter before anything else runs.
SITECUSTOMIZE = """\
import json, os, sys
_config = json.loads(os.environ["FRAMES_CONFIG"])
if _config["mode"] == "local":
    sys.path.insert(0, _config["root"])
else:
    import secure_urlimport
    if _config["mode"] == "meta":
        secure_urlimport.install(_config["url"], pubkey=_config["pub"], cafile=_config["ca"])
    else:
        secure_urlimport.trust(_config["url"], pubkey=_config["pub"], cafile=_config["ca"])
        secure_urlimport.install_path_hook()
        sys.path.insert(0, _config["url"])
"""

TREE = {
    # Warnings at import time, attributed by stacklevel to the importer.
    "warn_direct.py": (
        "import warnings\n"
        "warnings.warn('direct', DeprecationWarning, stacklevel=2)\n"
        "warnings.warn('own line', DeprecationWarning)\n"
    ),
    "warn_outer.py": "x = 1\nimport warn_inner  # the importer's line\n",
    "warn_inner.py": (
        "import warnings\n"
        "warnings.warn('inner', DeprecationWarning, stacklevel=2)\n"
        "warnings.warn('two up', DeprecationWarning, stacklevel=3)\n"
    ),
    "wpkg/__init__.py": "from . import sub  # the package imports its module\n",
    "wpkg/sub.py": "import warnings\nwarnings.warn('in a package', FutureWarning, stacklevel=2)\n",
    # Exceptions raised while a module body runs.
    "boom_direct.py": "x = 1\nraise ValueError('boom')\n",
    "boom_outer.py": "import boom_inner  # a imports b\n",
    "boom_inner.py": "def fail():\n    raise KeyError('inner')\n\n\nfail()\n",
    "bpkg/__init__.py": "from .sub import value\n",
    "bpkg/sub.py": "value = 1 / 0\n",
}


class Trees:
    """The one tree, deployed three ways, and fresh interpreters run against it."""

    def __init__(self, tmp_path: Path, server: TreeServer, root: Path, signer: Signer, ca: str):
        self.tmp_path = tmp_path
        self.site = write_tree(tmp_path / "site", {"sitecustomize.py": SITECUSTOMIZE})
        self.root = root
        self.url = server.url
        self.config = {"root": str(root), "url": server.url, "pub": str(signer.pub), "ca": ca}

    def base(self, mode: str) -> str:
        return str(self.root) if mode == LOCAL else self.url

    def run(self, mode: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python ARGS`` in a fresh interpreter with the tree deployed the *mode* way."""
        workdir = self.tmp_path / "cwd"
        workdir.mkdir(exist_ok=True)
        result = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            cwd=workdir,
            env={
                **os.environ,
                "PYTHONPATH": f"{self.site}{os.pathsep}{REPO}",
                "FRAMES_CONFIG": json.dumps({**self.config, "mode": mode}),
                **env,
            },
            timeout=60,
            check=False,
        )
        return result

    def norm(self, mode: str, text: str) -> str:
        return text.replace(self.base(mode), "<ROOT>")

    def three_ways(self, observe: Callable[[str], str]) -> dict[str, str]:
        return {mode: self.norm(mode, observe(mode)) for mode in MODES}


@pytest.fixture
def trees(tmp_path: Path, serve, tls: TLSFiles, publisher: Signer) -> Trees:
    root = write_tree(tmp_path / "tree", TREE)
    publisher.sign(root)
    return Trees(tmp_path, serve(root), root, publisher, tls.cafile)


def _json_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# -- warnings ---------------------------------------------------------------------

RECORD_WARNINGS = """\
import json, os, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import warn_direct  # the script's line
    import warn_outer
    import wpkg
print(json.dumps([
    (os.path.basename(w.filename) if w.filename == __file__ else w.filename,
     w.lineno, w.category.__name__, str(w.message))
    for w in caught
]))
"""


def test_import_time_warnings_are_attributed_to_the_same_file_and_line_three_ways(
    trees: Trees,
) -> None:
    script = trees.tmp_path / "record_warnings.py"
    script.write_text(RECORD_WARNINGS, encoding="utf-8")
    seen = trees.three_ways(lambda mode: _json_of(trees.run(mode, str(script))))
    assert seen[META] == seen[LOCAL]
    assert seen[HOOK] == seen[LOCAL]
    root = "<ROOT>" + os.sep  # os.path.join for a local tree; a URL's "/" is the same here
    assert json.loads(seen[LOCAL]) == [
        ["record_warnings.py", 4, "DeprecationWarning", "direct"],
        [root + "warn_direct.py", 3, "DeprecationWarning", "own line"],
        [root + "warn_outer.py", 2, "DeprecationWarning", "inner"],
        ["record_warnings.py", 5, "DeprecationWarning", "two up"],
        [root + "wpkg" + os.sep + "__init__.py", 1, "FutureWarning", "in a package"],
    ]


def test_default_warning_filters_show_and_hide_import_time_warnings_the_same_three_ways(
    trees: Trees,
) -> None:
    # With the default filters a DeprecationWarning shows only if attributed to
    # __main__: 'direct' and 'two up' land on the -c line, 'inner' on warn_outer.
    # A loader frame under the module body would take the blame and hide them.
    printed = trees.three_ways(
        lambda mode: trees.run(mode, "-c", "import warn_direct; import warn_outer").stderr
    )
    assert printed[META] == printed[LOCAL]
    assert printed[HOOK] == printed[LOCAL]
    # (3.13+ prints the -c line's source under each warning, 3.11 and 3.12 do not.)
    assert [line for line in printed[LOCAL].splitlines() if not line.startswith(" ")] == [
        "<string>:1: DeprecationWarning: direct",
        "<string>:1: DeprecationWarning: two up",
    ]


def test_warnings_seen_through_pythonwarnings_error_fail_the_same_import(trees: Trees) -> None:
    # The twin of the above: -W error turns the attribution into the failing frame.
    def observe(mode: str) -> str:
        result = trees.run(mode, "-W", "error::DeprecationWarning", "-c", "import warn_outer")
        assert result.returncode == 1
        return result.stderr

    printed = trees.three_ways(observe)
    assert printed[META] == printed[LOCAL]
    assert printed[HOOK] == printed[LOCAL]
    assert printed[LOCAL].endswith("DeprecationWarning: inner\n")
    assert 'File "<ROOT>' in printed[LOCAL]
    assert "secure_urlimport" not in printed[META] + printed[HOOK]


# -- tracebacks -------------------------------------------------------------------

EXTRACT_TB = """\
import json, os, sys, traceback
seen = []
for name in ("boom_direct", "boom_outer", "bpkg"):
    try:
        __import__(name)
    except Exception as exc:
        seen.append([
            (os.path.basename(f.filename) if f.filename == __file__ else f.filename,
             f.lineno, f.name, f.line)
            for f in traceback.extract_tb(exc.__traceback__)
        ])
print(json.dumps(seen))
"""


def test_tracebacks_of_errors_in_module_bodies_have_the_same_frames_three_ways(
    trees: Trees,
) -> None:
    script = trees.tmp_path / "extract_tb.py"
    script.write_text(EXTRACT_TB, encoding="utf-8")
    seen = trees.three_ways(lambda mode: _json_of(trees.run(mode, str(script))))
    assert seen[META] == seen[LOCAL]
    assert seen[HOOK] == seen[LOCAL]
    join = os.path.join
    script_frame = ["extract_tb.py", 5, "<module>", "__import__(name)"]
    assert json.loads(seen[LOCAL]) == [
        [
            script_frame,
            [join("<ROOT>", "boom_direct.py"), 2, "<module>", "raise ValueError('boom')"],
        ],
        [
            script_frame,
            [join("<ROOT>", "boom_outer.py"), 1, "<module>", "import boom_inner  # a imports b"],
            [join("<ROOT>", "boom_inner.py"), 5, "<module>", "fail()"],
            [join("<ROOT>", "boom_inner.py"), 2, "fail", "raise KeyError('inner')"],
        ],
        [
            script_frame,
            [join("<ROOT>", "bpkg", "__init__.py"), 1, "<module>", "from .sub import value"],
            [join("<ROOT>", "bpkg", "sub.py"), 1, "<module>", "value = 1 / 0"],
        ],
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("-c", "import boom_direct"),
        ("-c", "import boom_outer"),
        ("-c", "import bpkg"),
        ("-m", "boom_outer"),  # runpy runs it (get_code), the import system its import
    ],
    ids=["module", "nested", "package", "run-as-main"],
)
def test_uncaught_error_of_an_import_prints_the_same_traceback_three_ways(
    trees: Trees, args: tuple[str, str]
) -> None:
    def observe(mode: str) -> str:
        result = trees.run(mode, *args)
        assert result.returncode == 1
        return result.stderr

    printed = trees.three_ways(observe)
    assert printed[META] == printed[LOCAL]
    assert printed[HOOK] == printed[LOCAL]
    assert printed[LOCAL].startswith("Traceback (most recent call last):\n")
    assert "frozen importlib" not in printed[LOCAL]
    assert "secure_urlimport" not in printed[META] + printed[HOOK]
