"""Cost follows use and change (issue #14), counted in a real nginx's access log.

A 10,200-file tree (200 packages of 50 small modules and their ``__init__``)
signed as format 2, served by nginx, imported by fresh interpreters:

- cold, ``import pkg0.mod0`` makes at most 4 requests and transfers at most
  64 KiB more than the bytes of ``pkg0/__init__.py`` and ``pkg0/mod0.py``;
- after a release that changes only that module, a warm consumer (same cache
  directory) transfers at most 64 KiB more than the new file.

``SECURE_URLIMPORT_SHARD_SCALE=50000`` measures a 50,000-file tree instead
(the numbers are printed; signing it takes a while).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, Signer

from secure_urlimport._format.paths import MANIFEST_NAME

KIB = 1024
PACKAGES = int(os.environ.get("SECURE_URLIMPORT_SHARD_SCALE", "10000")) // 50
MODULE = "# a small module of the tree\n" + "VALUE = {n}\n" + "#" * 380 + "\n"

IMPORT = """
import sys, secure_urlimport
secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])
import pkg0.mod0
print(pkg0.mod0.VALUE)
"""


def write_tree(root: Path) -> None:
    for p in range(PACKAGES):
        package = root / f"pkg{p}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        for m in range(50):
            (package / f"mod{m}.py").write_text(MODULE.format(n=p * 100 + m))


def fresh_import(url: str, publisher: Signer, cafile: str, cache: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", IMPORT, url, str(publisher.pub), cafile],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def served(server, before: int) -> tuple[list[str], int]:
    rows = server.transfers()[before:]
    return [row[0] for row in rows], sum(row[3] for row in rows)  # bytes with headers


def test_one_import_from_a_10000_file_tree_costs_the_index_one_shard_and_its_files(
    nginx, tls, publisher, tmp_path, capsys
):
    root = tmp_path / "tree"
    write_tree(root)
    started = time.perf_counter()
    publisher.sign(root, name="fleet")
    signing = time.perf_counter() - started
    server = nginx(root)
    cache = tmp_path / "cache"
    own = (root / "pkg0/__init__.py").stat().st_size + (root / "pkg0/mod0.py").stat().st_size
    index = (root / MANIFEST_NAME).stat().st_size

    assert fresh_import(server.url, publisher, tls.cafile, cache) == "0"
    server.requests_seen(at_least=4)
    requests, cold = served(server, 0)
    assert len(requests) <= 4, requests
    assert cold <= 64 * KIB + own, (cold, requests)

    (root / "pkg0/mod0.py").write_text(MODULE.format(n="'new'"))
    publisher.sign(root, name="fleet")
    new_file = (root / "pkg0/mod0.py").stat().st_size
    before = len(server.transfers())
    assert fresh_import(server.url, publisher, tls.cafile, cache) == "new"
    server.requests_seen(at_least=before + 3)
    warm_requests, warm = served(server, before)
    assert warm <= 64 * KIB + new_file, (warm, warm_requests)
    with capsys.disabled():
        print(
            f"\n{PACKAGES * 51} files: signed in {signing:.1f} s, index {index} bytes; "
            f"cold import of pkg0.mod0: {len(requests)} requests, {cold} bytes "
            f"({cold - own} beyond its files); warm after a 1-file release: "
            f"{len(warm_requests)} requests, {warm} bytes ({warm - new_file} beyond the file)"
        )
