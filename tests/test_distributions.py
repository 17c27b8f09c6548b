"""``importlib.metadata`` of signed trees (issue #15, item 1).

A tree holding a package and its ``*.dist-info`` is signed, served over real
HTTPS and used from a fresh interpreter, both ``install()``ed and as a pinned
entry on ``sys.path`` (path-hook style): ``version()``, ``metadata()``,
``requires()``, ``entry_points()`` and ``ep.load()``, ``files()`` and a file's
``read_text()``, ``distributions()`` and ``packages_distributions()`` must
answer from the signed tree, and the server's log must show the metadata came
over HTTPS.  A real package closes it: markdown finds its ``tables``
extension by entry-point name from a signed copy of itself.

Each success has its failure twin: a distribution the tree does not have is
``PackageNotFoundError``, and an unpinned URL entry yields nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO, write_tree

from secure_urlimport import UnpinnedURLWarning, api, install, install_path_hook
from secure_urlimport._import.distributions import RemoteDistribution, normalize

PLUGIN_FILES = {
    "plugpkg/__init__.py": "VERSION = '1.2'\n",
    "plugpkg/plugin.py": "def hello():\n    return 'hello from the signed plugin'\n",
    "plugpkg/data.txt": "signed data\n",
    "plugpkg-1.2.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: PlugPkg\nVersion: 1.2\nSummary: a signed plugin\n"
        "Requires-Dist: requests>=2\nRequires-Dist: idna; extra == 'net'\n"
    ),
    "plugpkg-1.2.dist-info/entry_points.txt": "[plug.plugins]\nhello = plugpkg.plugin:hello\n",
    "plugpkg-1.2.dist-info/top_level.txt": "plugpkg\n",
    "plugpkg-1.2.dist-info/RECORD": (
        "plugpkg/__init__.py,,\nplugpkg/plugin.py,,\nplugpkg/data.txt,,\n"
        "plugpkg-1.2.dist-info/METADATA,,\nplugpkg-1.2.dist-info/RECORD,,\n"
        "../../bin/plug,,\n"
    ),
}

#: A fresh interpreter: argv[1] is a JSON config (url, pubkey, cafile, mode, result).
#: Prints nothing; writes what importlib.metadata answered to the result file.
SCRIPT = r"""
import importlib.metadata as md, json, sys
import secure_urlimport

config = json.loads(open(sys.argv[1], encoding="utf-8").read())
if config["mode"] == "install":
    secure_urlimport.install(config["url"], pubkey=config["pubkey"], cafile=config["cafile"])
else:
    secure_urlimport.trust(config["url"], pubkey=config["pubkey"], cafile=config["cafile"])
    secure_urlimport.install_path_hook()
    sys.path.append(config["url"])

def attempt(function):
    try:
        return function()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

result = {}
result["version"] = attempt(lambda: md.version("plugpkg"))
result["version_by_other_spelling"] = attempt(lambda: md.version("Plug_Pkg".replace("_", "")))
result["metadata_summary"] = attempt(lambda: md.metadata("plugpkg")["Summary"])
result["requires"] = attempt(lambda: md.requires("plugpkg"))
eps = md.entry_points(group="plug.plugins")
result["entry_points"] = sorted(ep.name for ep in eps)
result["loaded"] = attempt(lambda: eps["hello"].load()())
plugin = sys.modules.get("plugpkg.plugin")
result["plugin_file"] = plugin and plugin.__file__
files = md.files("plugpkg")
result["files"] = sorted(str(f) for f in files)
result["data_text"] = attempt(lambda: next(f for f in files if f.name == "data.txt").read_text())
outside = [f for f in files if f.name == "plug"]  # from 3.12, files() leaves it out
result["outside_tree"] = attempt(lambda: outside[0].read_text()) if outside else None
dist = md.distribution("plugpkg")
result["dist_type"] = type(dist).__name__
result["missing_file"] = dist.read_text("INSTALLER")
result["names"] = [d.name for d in md.distributions() if d.name == "PlugPkg"]
result["packages"] = md.packages_distributions().get("plugpkg")
result["absent"] = attempt(lambda: md.version("no-such-dist"))
with open(config["result"], "w", encoding="utf-8") as handle:
    json.dump(result, handle)
"""


def child_env(cache: Path) -> dict[str, str]:
    """A fresh interpreter's environment: this checkout, its own cache, no CA override."""
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = str(REPO)
    return env


def run_script(tmp_path: Path, script: str, config: dict, cwd: Path | None = None) -> dict:
    """Run *script* in a fresh interpreter with *config*; the result it wrote."""
    config = {**config, "result": str(tmp_path / "result.json")}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", script, str(config_file)],
        env=child_env(tmp_path / "child-cache"),
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def served() -> Iterator[Callable[[], list[str]]]:
    """The paths the test's servers were asked for (their request log)."""
    logger = logging.getLogger("secure_urlimport.cli.devserver")
    handler, level, propagate = _Lines(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield lambda: [p for line in handler.lines for p in line.split() if p.startswith("/")]
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def plugin_tree(tmp_path, publisher):
    root = write_tree(tmp_path / "tree", PLUGIN_FILES)
    publisher.sign(root)
    return root


@pytest.mark.parametrize(("mode", "sharded"), [("install", False), ("path", False), ("path", True)])
def test_every_metadata_api_answers_from_the_signed_tree(
    mode, sharded, tmp_path, serve, tls, publisher, served
):
    root = write_tree(tmp_path / "tree", PLUGIN_FILES)
    publisher.sign(root, **({"shard_threshold": 2} if sharded else {}))
    server = serve(root)
    config = {"url": server.url, "pubkey": str(publisher.pub), "cafile": tls.cafile, "mode": mode}
    result = run_script(tmp_path, SCRIPT, config)
    assert result["version"] == "1.2"
    assert result["version_by_other_spelling"] == "1.2"
    assert result["metadata_summary"] == "a signed plugin"
    assert result["requires"] == ["requests>=2", "idna; extra == 'net'"]
    assert result["entry_points"] == ["hello"]
    assert result["loaded"] == "hello from the signed plugin"
    assert result["plugin_file"] == f"{server.url}/plugpkg/plugin.py"
    assert "plugpkg/data.txt" in result["files"]
    assert result["data_text"] == "signed data\n"
    if sys.version_info < (3, 12):
        assert result["outside_tree"].startswith("FileNotFoundError")
        assert "../../bin/plug" in result["files"]
    else:
        assert result["outside_tree"] is None
        assert "../../bin/plug" not in result["files"]
    assert result["dist_type"] == "RemoteDistribution"
    assert result["missing_file"] is None
    assert result["names"] == ["PlugPkg"]
    assert result["packages"] == ["PlugPkg"]
    assert result["absent"].startswith("PackageNotFoundError: No package metadata")
    # Read a dozen times, downloaded once (then verified from the disk cache).
    assert served().count("/plugpkg-1.2.dist-info/METADATA") == 1
    assert any("secure-urlimport.shards/" in path for path in served()) == sharded


def test_a_distribution_the_tree_does_not_have_is_not_found(tmp_path, publisher, serve, tls):
    root = write_tree(tmp_path / "tree", {"plugpkg/__init__.py": ""})  # no dist-info
    publisher.sign(root)
    server = serve(root)
    config = {"url": server.url, "pubkey": str(publisher.pub), "cafile": tls.cafile}
    result = run_script(tmp_path, SCRIPT_NOT_FOUND, {**config, "mode": "install"})
    assert result == {"version": "PackageNotFoundError", "entry_points": []}


SCRIPT_NOT_FOUND = r"""
import importlib.metadata as md, json, sys
import secure_urlimport

config = json.loads(open(sys.argv[1], encoding="utf-8").read())
if config["mode"] == "install":
    secure_urlimport.install(config["url"], pubkey=config["pubkey"], cafile=config["cafile"])
else:
    import warnings
    warnings.simplefilter("ignore")
    secure_urlimport.install_path_hook()
    sys.path.append(config["url"])
result = {}
try:
    result["version"] = md.version("plugpkg")
except Exception as exc:
    result["version"] = type(exc).__name__
result["entry_points"] = [ep.name for ep in md.entry_points(group="plug.plugins")]
with open(config["result"], "w", encoding="utf-8") as handle:
    json.dump(result, handle)
"""


def test_an_unpinned_url_entry_yields_no_distribution(tmp_path, plugin_tree, serve, tls, served):
    server = serve(plugin_tree)
    config = {"url": server.url, "pubkey": "", "cafile": tls.cafile, "mode": "path"}
    result = run_script(tmp_path, SCRIPT_NOT_FOUND, config)
    assert result == {"version": "PackageNotFoundError", "entry_points": []}
    assert served() == []


def test_names_are_matched_as_importlib_metadata_normalises_them():
    for name in ("Plug.Pkg", "plug__pkg", "PLUG-pkg", "zope.interface", "a-_.b"):
        assert normalize(name) == importlib.metadata.Prepared.normalize(name)  # type: ignore[attr-defined]


# -- a real package: markdown's extensions are entry points looked up by name ------------

#: markdown rendered with two extensions named as entry points.  Remotely, the
#: local site-packages leave sys.path once the tree is installed: the local
#: markdown and its metadata can stand in for nothing.
MARKDOWN_SCRIPT = r"""
import importlib.metadata as md, json, sys
config = json.loads(open(sys.argv[1], encoding="utf-8").read())
if config["url"]:
    import secure_urlimport
    secure_urlimport.install(config["url"], pubkey=config["pubkey"], cafile=config["cafile"])
    sys.path[:] = [p for p in sys.path if "site-packages" not in p]
import markdown
text = "| a | b |\n| --- | --- |\n| 1 | 2 |\n\n# Title\n"
try:
    html = markdown.markdown(text, extensions=["tables", "toc"])
except Exception as exc:
    html = f"{type(exc).__name__}: {exc}"
tables = sys.modules.get("markdown.extensions.tables")
try:
    version = md.version("markdown")
except md.PackageNotFoundError as exc:
    version = f"PackageNotFoundError: {exc}"
result = {
    "html": html,
    "file": markdown.__file__,
    "tables_file": tables and tables.__file__,
    "version": version,
}
with open(config["result"], "w", encoding="utf-8") as handle:
    json.dump(result, handle)
"""


def _markdown_tree(root: Path) -> Path:
    """A copy of the installed markdown package and its dist-info (nothing else)."""
    info = Path(str(importlib.metadata.distribution("markdown")._path))  # type: ignore[attr-defined]
    spec = importlib.util.find_spec("markdown")
    assert spec is not None and spec.origin is not None
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(spec.origin).parent, root / "markdown", ignore=ignore)
    shutil.copytree(info, root / info.name, ignore=ignore)
    return root


def test_markdown_finds_its_extensions_by_entry_point_name_from_a_signed_copy(
    tmp_path, publisher, serve, tls, served
):
    root = _markdown_tree(tmp_path / "tree")
    publisher.sign(root)
    server = serve(root)
    config = {"url": server.url, "pubkey": str(publisher.pub), "cafile": tls.cafile}
    local = run_script(tmp_path, MARKDOWN_SCRIPT, {**config, "url": ""})
    remote = run_script(tmp_path, MARKDOWN_SCRIPT, config)
    assert "<table>" in local["html"]
    assert 'id="title"' in local["html"]
    assert remote["html"] == local["html"]
    assert remote["file"] == f"{server.url}/markdown/__init__.py"
    assert remote["tables_file"] == f"{server.url}/markdown/extensions/tables.py"
    assert remote["version"] == local["version"] == importlib.metadata.version("markdown")
    assert any(p.endswith(".dist-info/entry_points.txt") for p in served())


def test_markdown_without_its_signed_dist_info_cannot_find_the_extension(
    tmp_path, publisher, serve, tls
):
    """The twin: the same tree without the dist-info (markdown then tries
    'tables' as a module name, which does not exist)."""
    root = _markdown_tree(tmp_path / "tree")
    for info in root.glob("*.dist-info"):
        shutil.rmtree(info)
    publisher.sign(root)
    server = serve(root)
    config = {"url": server.url, "pubkey": str(publisher.pub), "cafile": tls.cafile}
    remote = run_script(tmp_path, MARKDOWN_SCRIPT, config)
    assert remote["html"].startswith(("ImportError", "ModuleNotFoundError")), remote
    assert remote["version"].startswith("PackageNotFoundError")
    assert remote["tables_file"] is None


# -- in this process: the edges ---------------------------------------------------------

EGG_FILES = {
    "oldpkg/__init__.py": "",
    "oldpkg.egg-info/PKG-INFO": "Metadata-Version: 1.1\nName: oldpkg\nVersion: 0.9\n",
    "oldpkg.egg-info/requires.txt": "six\n\n[net]\nidna\n",
    "flat-2.0-py3.11.egg-info": "Metadata-Version: 1.1\nName: flat\nVersion: 2.0\n",
}


def test_egg_info_directories_and_files_are_distributions_too(tmp_path, publisher, serve, tls):
    root = write_tree(tmp_path / "tree", EGG_FILES)
    publisher.sign(root)
    install(serve(root).url, pubkey=publisher.pub, cafile=tls.cafile)
    assert importlib.metadata.version("oldpkg") == "0.9"
    assert importlib.metadata.requires("oldpkg") == ["six", 'idna; extra == "net"']
    assert importlib.metadata.version("flat") == "2.0"
    assert importlib.metadata.distribution("flat").read_text("PKG-INFO") is None


def test_an_installed_tree_answers_searches_of_sys_path_only(tmp_path, plugin_tree, serve, tls):
    install(serve(plugin_tree).url, pubkey=tmp_path / "publisher.pub", cafile=tls.cafile)
    assert importlib.metadata.version("plugpkg") == "1.2"
    elsewhere = list(importlib.metadata.distributions(path=[str(tmp_path)]))
    assert [d for d in elsewhere if d.metadata["Name"] == "PlugPkg"] == []


def test_read_text_stays_inside_the_info_directory(tmp_path, plugin_tree, serve, tls):
    install(serve(plugin_tree).url, pubkey=tmp_path / "publisher.pub", cafile=tls.cafile)
    dist = importlib.metadata.distribution("plugpkg")
    assert isinstance(dist, RemoteDistribution)
    assert dist.read_text("../plugpkg/data.txt") is None
    assert dist.read_text("") is None  # a directory, as PathDistribution's
    assert dist.locate_file("plugpkg/data.txt").read_bytes() == b"signed data\n"
    assert dist.locate_file("plugpkg/data.txt").exists()
    assert dist.locate_file("plugpkg/data.txt").parent.joinpath("plugin.py").exists()  # type: ignore[attr-defined]
    assert dist.locate_file("").exists()
    assert not dist.locate_file("plugpkg/unsigned.txt").exists()
    with pytest.raises(FileNotFoundError):
        dist.locate_file("../../bin/plug").read_bytes()


def test_the_guard_is_in_place_with_the_hook_and_gone_after_it(tmp_path, plugin_tree, serve, tls):
    finder = importlib.metadata.MetadataPathFinder
    own = finder.__dict__["find_distributions"]
    install(serve(plugin_tree).url, pubkey=tmp_path / "publisher.pub", cafile=tls.cafile)
    assert finder.__dict__["find_distributions"] is not own
    api.registry.reset()
    assert finder.__dict__["find_distributions"] is own


def test_without_the_guard_a_url_entry_is_read_from_local_disk(tmp_path, monkeypatch):
    """The twin of the guard, in this process: the standard finder alone reads
    './https:/host/' for a URL entry."""
    url = "https://unpinned.example:8443"
    write_tree(
        tmp_path / "https:" / "unpinned.example:8443",
        {
            "planted-1.0.dist-info/METADATA": "Name: planted\nVersion: 1.0\n",
        },
    )
    monkeypatch.chdir(tmp_path)
    found = importlib.metadata.MetadataPathFinder.find_distributions(
        importlib.metadata.DistributionFinder.Context(path=[url], name="planted")
    )
    assert [d.version for d in found] == ["1.0"]
    install_path_hook()
    with pytest.warns(UnpinnedURLWarning):
        found = importlib.metadata.MetadataPathFinder.find_distributions(
            importlib.metadata.DistributionFinder.Context(path=[url], name="planted")
        )
        assert list(found) == []
