"""Package metadata is refused like code (issue #15, item 1).

``importlib.metadata`` decides which plugin code runs: an entry point names a
module and an attribute, and ``ep.load()`` imports it.  So a changed
``entry_points.txt`` is as dangerous as a changed module, even when every
module it can name is signed.  The tree holds a signed module
``plugpkg/danger.py`` that leaves the marker behind when imported; every
attack below tries to have it loaded as a plugin.

Each test runs in a fresh interpreter over a real HTTPS server and asserts the
exact error and that the marker was never written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import evil_source, write_tree
from simulator import child_env


def _metadata(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"


PLUGINS = "[plug.plugins]\nhello = plugpkg.plugin:hello\n"
DANGEROUS = "[plug.plugins]\nhello = plugpkg.danger:hello\n"  # same length: not a size check


def _tree(root: Path, marker: Path) -> Path:
    return write_tree(
        root,
        {
            "plugpkg/__init__.py": "",
            "plugpkg/plugin.py": "def hello():\n    return 'hello'\n",
            "plugpkg/danger.py": evil_source(marker) + "def hello():\n    return 'ran'\n",
            "plugpkg-1.2.dist-info/METADATA": _metadata("plugpkg", "1.2"),
            "plugpkg-1.2.dist-info/entry_points.txt": PLUGINS,
            "plugpkg-1.2.dist-info/RECORD": "plugpkg/plugin.py,,\n",
        },
    )


#: A plugin host in a fresh interpreter: argv[1] is a JSON config.  Loads every
#: plugin of its group; writes what it saw (or the error class) to the result file.
HOST = r"""
import importlib.metadata as md, json, sys
import secure_urlimport

config = json.loads(open(sys.argv[1], encoding="utf-8").read())
if config["mode"] == "install":
    secure_urlimport.install(config["url"], pubkey=config["pubkey"], cafile=config["cafile"])
elif config["mode"] in ("path", "path-late"):
    secure_urlimport.trust(config["url"], pubkey=config["pubkey"], cafile=config["cafile"])
    secure_urlimport.install_path_hook()
    sys.path.append(config["url"])
    if config["mode"] == "path-late":
        # As if importlib.metadata were imported only now, after the hook
        # (here urllib3 imports it first): the guard is not in place yet.
        from secure_urlimport._import import metadata_guard
        metadata_guard._unguard()
else:  # "stdlib": the URL on sys.path and no secure_urlimport at all
    sys.path.append(config["url"])

messages = []

def attempt(function):
    try:
        return function()
    except Exception as exc:
        messages.append(str(exc))
        return type(exc).__name__

result = {
    "version": attempt(lambda: md.version(config.get("name", "plugpkg"))),
    "plugins": attempt(lambda: {e.name: e.load()() for e in md.entry_points(group="plug.plugins")}),
    "files": attempt(lambda: [str(f) for f in md.files("plugpkg")]),
    "names": attempt(lambda: sorted(d.metadata["Name"] for d in md.distributions())),
    "messages": messages,
}
with open(config["result"], "w", encoding="utf-8") as handle:
    json.dump(result, handle)
"""


def host(tmp_path: Path, server, publisher, tls, mode: str, cwd: Path | None = None, **extra):
    """Run the plugin host against *server* in a fresh interpreter; what it saw."""
    result_file = tmp_path / f"result-{mode}.json"
    config = {
        "url": server.url,
        "pubkey": str(publisher.pub),
        "cafile": tls.cafile,
        "mode": mode,
        "result": str(result_file),
        **extra,
    }
    config_file = tmp_path / f"config-{mode}.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    env = child_env(tmp_path / "child-cache")
    done = subprocess.run(
        # -P: the working directory is not on sys.path (only the metadata lookup reads it).
        [sys.executable, "-P", "-c", HOST, str(config_file)],
        env=env,
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(result_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("mode", ["install", "path"])
def test_the_signed_plugins_load(mode, tmp_path, publisher, serve, tls, marker):
    """The baseline every attack below changes one thing of."""
    root = _tree(tmp_path / "tree", marker)
    publisher.sign(root)
    seen = host(tmp_path, serve(root), publisher, tls, mode)
    assert seen["version"] == "1.2"
    assert seen["plugins"] == {"hello": "hello"}
    assert not marker.exists()


@pytest.mark.parametrize("mode", ["install", "path"])
def test_a_tampered_entry_points_file_is_refused_and_its_plugin_never_runs(
    mode, tmp_path, publisher, serve, tls, marker
):
    root = _tree(tmp_path / "tree", marker)
    publisher.sign(root)
    (root / "plugpkg-1.2.dist-info" / "entry_points.txt").write_text(DANGEROUS)
    seen = host(tmp_path, serve(root), publisher, tls, mode)
    assert seen["plugins"] == "TamperedFileError"
    assert seen["version"] == "1.2"  # METADATA itself is intact
    assert not marker.exists(), "a plugin named by tampered metadata ran"


@pytest.mark.parametrize("mode", ["install", "path"])
def test_tampered_metadata_and_record_are_refused(mode, tmp_path, publisher, serve, tls, marker):
    root = _tree(tmp_path / "tree", marker)
    publisher.sign(root)
    info = root / "plugpkg-1.2.dist-info"
    (info / "METADATA").write_text(_metadata("plugpkg", "9.9"))
    (info / "RECORD").write_text("plugpkg/danger.py,,\n")
    server = serve(root)
    seen = host(tmp_path, server, publisher, tls, mode)
    assert seen["version"] == "TamperedFileError"
    url = f"{server.url}/plugpkg-1.2.dist-info"
    assert seen["messages"][0].startswith(
        f"cannot read the metadata of {url}: {url}/METADATA does not match the SHA-256 in "
        "the signed manifest: the file was changed after signing; re-sign and re-publish the tree"
        " (asked for again with Cache-Control: no-cache, with the same result; "
    )
    assert seen["files"] == "TamperedFileError"
    assert seen["names"] == "TamperedFileError"
    assert not marker.exists()


@pytest.mark.parametrize("mode", ["install", "path"])
def test_unsigned_metadata_added_on_the_server_does_not_exist(
    mode, tmp_path, publisher, serve, tls, marker
):
    root = _tree(tmp_path / "tree", marker)
    (root / "plugpkg-1.2.dist-info" / "entry_points.txt").unlink()
    publisher.sign(root)
    write_tree(
        root,
        {
            "plugpkg-1.2.dist-info/entry_points.txt": DANGEROUS,  # beside signed files
            "evil-6.6.dist-info/METADATA": _metadata("evil", "6.6"),
            "evil-6.6.dist-info/entry_points.txt": DANGEROUS.replace("hello", "evil"),
        },
    )
    seen = host(tmp_path, serve(root), publisher, tls, mode)
    assert seen["plugins"] == {}
    assert "evil" not in seen["names"]
    assert not marker.exists()
    assert host(tmp_path, serve(root), publisher, tls, mode, name="evil")["version"] == (
        "PackageNotFoundError"
    )


def _plant(cwd: Path, url: str) -> Path:
    """What an attacker who can write the working directory leaves there: a
    dist-info at the local relative path a URL entry reads as ('./https:/host/')."""
    local = cwd / url.replace("https://", "https:/")
    write_tree(
        local,
        {
            "evil-6.6.dist-info/METADATA": _metadata("evil", "6.6"),
            "evil-6.6.dist-info/entry_points.txt": DANGEROUS.replace("hello", "evil"),
            "plugpkg-9.9.dist-info/METADATA": _metadata("plugpkg", "9.9"),
            "plugpkg-9.9.dist-info/entry_points.txt": DANGEROUS,
        },
    )
    return local


def test_the_standard_library_alone_reads_a_planted_local_dist_info(
    tmp_path, publisher, serve, tls, marker
):
    """The threat is real: without the library, a URL entry on sys.path is read as
    the relative directory './https:/host:port', and what is planted there is believed."""
    root = _tree(tmp_path / "tree", marker)
    publisher.sign(root)
    server = serve(root)
    cwd = tmp_path / "cwd"
    _plant(cwd, server.url)
    seen = host(tmp_path, server, publisher, tls, "stdlib", cwd=cwd, name="evil")
    assert seen["version"] == "6.6"
    assert "evil" in seen["names"]
    assert host(tmp_path, server, publisher, tls, "stdlib", cwd=cwd)["version"] == "9.9"


@pytest.mark.parametrize("mode", ["install", "path", "path-late"])
def test_a_planted_local_https_directory_never_counts(
    mode, tmp_path, publisher, serve, tls, marker
):
    root = _tree(tmp_path / "tree", marker)
    publisher.sign(root)
    server = serve(root)
    cwd = tmp_path / "cwd"
    planted = _plant(cwd, server.url)
    assert os.path.isdir(Path(cwd, server.url.replace("https://", "https:/")))
    seen = host(tmp_path, server, publisher, tls, mode, cwd=cwd)
    assert seen["version"] == "1.2"
    assert seen["plugins"] == {"hello": "hello"}
    assert "evil" not in seen["names"]
    assert host(tmp_path, server, publisher, tls, mode, cwd=cwd, name="evil")["version"] == (
        "PackageNotFoundError"
    )
    assert not marker.exists()
    assert planted.is_dir()
