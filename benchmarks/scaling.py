"""The scaling table (issue #14): what one consumer downloads, by tree size and by use.

Trees of packages with 50 small modules each (``pkgK/modJ.py``, ~450 bytes, and
``pkgK/__init__.py``), signed once per size. Each scenario runs in a fresh
interpreter against nginx; requests and bytes come from nginx's access log
(``$bytes_sent``), time from the child, and the same import from the same tree
on local disk gives the ratio.  The WAN run (wan.py) runs the same suite through
a delaying relay in a network namespace of its own.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .children import child_env, run_python
from .common import BenchError, Workspace, format_table, log
from .servers import LoggingNginx, Served

MODULES_PER_PACKAGE = 50
DEFAULT_SIZES = (100, 1000, 10000, 50000)
QUICK_SIZES = (100, 1000)
#: Runs of "cold-all" for trees this big or bigger (one run imports 51,000 modules
#: twice over: remote and local); every other scenario gets --repeat runs.
BIG_TREE = 50000
BIG_TREE_ALL_RUNS = 3
#: Bump when the generated tree changes: a --keep directory signed with another
#: layout is signed again.
TREE_FORMAT = 1
#: A kept tree is signed again when its signature is older than this (it expires after 90 days).
RESIGN_AFTER = timedelta(days=30)
CHANGED_FILE = "pkg0/mod0.py"
ONE_MODULE = "pkg0.mod0"

SCENARIOS = ("cold-one", "cold-package", "cold-all", "warm-1-changed", "warm-unchanged")
WHAT = {
    "cold-one": "one",
    "cold-package": "package",
    "cold-all": "all",
    "warm-1-changed": "one",
    "warm-unchanged": "one",
}

MODULE = '''\
"""pkg{k}.mod{j}: a small generated module of the scaling benchmark{note}."""

VALUE = {value}
NAME = "pkg{k}.mod{j}"


class Item:
    """A value with a label."""

    def __init__(self, value: int = VALUE) -> None:
        self.value = value

    def label(self) -> str:
        return f"{{NAME}}={{self.value}}"


def double(x: int) -> int:
    return 2 * x + VALUE


def items(n: int) -> list[Item]:
    """The first n items."""
    return [Item(VALUE + i) for i in range(n)]
'''


def packages_for(files: int) -> int:
    """Packages of a tree of about *files* files (100 -> 2 packages, 102 files)."""
    return max(1, files // MODULES_PER_PACKAGE)


def module_text(k: int, j: int, release: int = 1) -> str:
    note = "" if release == 1 else f", release {release}"
    return MODULE.format(k=k, j=j, value=k * MODULES_PER_PACKAGE + j, note=note)


def write_scaling_tree(root: Path, files: int) -> int:
    """``pkgK/__init__.py`` and ``pkgK/mod0..49.py``; the number of files written."""
    count = 0
    for k in range(packages_for(files)):
        package = root / f"pkg{k}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f'"""pkg{k}: generated."""\n\nINDEX = {k}\n')
        for j in range(MODULES_PER_PACKAGE):
            (package / f"mod{j}.py").write_text(module_text(k, j))
        count += MODULES_PER_PACKAGE + 1
    return count


def all_names(files: int) -> list[str]:
    names = []
    for k in range(packages_for(files)):
        names.append(f"pkg{k}")
        names += [f"pkg{k}.mod{j}" for j in range(MODULES_PER_PACKAGE)]
    return names


def selection(what: str, files: int) -> list[str]:
    if what == "one":
        return [ONE_MODULE]
    if what == "package":
        return ["pkg0", *(f"pkg0.mod{j}" for j in range(MODULES_PER_PACKAGE))]
    return all_names(files)


# -- the signed trees, kept between runs with --keep --------------------------------


@dataclass
class Trees:
    """Release 1 and 2 (one file changed) of each size, the key, and the served root."""

    root: Path
    pubkey: Path = field(init=False)
    www: Path = field(init=False)  # s<files> -> ../n<files>/r1 or r2 (a symlink, swapped)
    signing: dict[int, dict[str, Any]] = field(default_factory=dict)  # files -> stamp

    def __post_init__(self) -> None:
        self.pubkey = self.root / "key.pub"
        self.www = self.root / "www"

    def release(self, files: int, release: int) -> Path:
        return self.root / f"n{files}" / f"r{release}"

    def bytecode(self, files: int) -> Path:
        """A copy of release 1 with ``__pycache__``: the local import with bytecode."""
        return self.root / f"n{files}" / "pyc"

    def url_path(self, files: int) -> str:
        return f"s{files}"

    def serve(self, files: int, release: int) -> None:
        """Point ``www/s<files>`` at *release* (atomically: a new link renamed over)."""
        link = self.www / self.url_path(files)
        new = link.with_name(link.name + ".new")
        new.unlink(missing_ok=True)
        new.symlink_to(self.release(files, release), target_is_directory=True)
        os.replace(new, link)


def load_key(trees: Trees) -> Any:
    """The benchmark's signing key, made once per work directory."""
    from secure_urlimport._format.keys import PrivateKey

    seed_file = trees.root / "key.seed"
    if seed_file.exists():
        key = PrivateKey.from_seed(bytes.fromhex(seed_file.read_text().strip()))
    else:
        key = PrivateKey.generate()
        seed_file.touch(mode=0o600)
        seed_file.write_text(key.seed().hex())
    trees.pubkey.write_text(key.public.to_line(), encoding="ascii")
    return key


def kept(trees: Trees, files: int) -> dict[str, Any] | None:
    """The stamp of a usable kept tree of this size, else None."""
    stamp_file = trees.root / f"n{files}" / "stamp.json"
    try:
        stamp: dict[str, Any] = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return None
    dirs = (trees.release(files, 1), trees.release(files, 2), trees.bytecode(files))
    if not all(directory.is_dir() for directory in dirs):
        return None
    signed = datetime.fromisoformat(stamp.get("signed", "1970-01-01T00:00:00+00:00"))
    fresh = datetime.now(UTC) - signed < RESIGN_AFTER
    return stamp if stamp.get("format") == TREE_FORMAT and fresh else None


def prepare(trees: Trees, sizes: Sequence[int]) -> None:
    """Generate, sign (timed) and precompile each size, unless a kept copy is usable."""
    from secure_urlimport.publish.signing import sign_tree

    trees.www.mkdir(parents=True, exist_ok=True)
    key = load_key(trees)
    for files in sizes:
        stamp = kept(trees, files)
        if stamp is not None:
            log.info("scaling: %d files: signed trees kept from %s", files, stamp["signed"])
            stamp["kept"] = True
        else:
            stamp = sign_releases(trees, files, key, sign_tree)
        trees.signing[files] = stamp
        trees.serve(files, 1)


def sign_releases(trees: Trees, files: int, key: Any, sign_tree: Any) -> dict[str, Any]:
    base = trees.root / f"n{files}"
    shutil.rmtree(base, ignore_errors=True)
    first, second = trees.release(files, 1), trees.release(files, 2)
    written = write_scaling_tree(first, files)
    log.info("scaling: %d files: signing release 1", written)
    started = time.perf_counter()
    sign_tree(first, [key], name="scaling")
    sign1 = time.perf_counter() - started
    shutil.copytree(first, second)
    changed = second / CHANGED_FILE
    changed.write_text(module_text(0, 0, release=2))
    log.info("scaling: %d files: signing release 2 (%s changed)", written, CHANGED_FILE)
    started = time.perf_counter()
    sign_tree(second, [key], name="scaling")
    sign2 = time.perf_counter() - started
    separate_releases(first, second)
    shutil.copytree(first, trees.bytecode(files))
    if not compileall.compile_dir(trees.bytecode(files), quiet=1):
        raise BenchError(f"compileall failed for {trees.bytecode(files)}")
    stamp = {
        "format": TREE_FORMAT,
        "files": written,
        "signed": datetime.now(UTC).isoformat(timespec="seconds"),
        "sign_seconds": [sign1, sign2],
        "kept": False,
    }
    (base / "stamp.json").write_text(json.dumps(stamp))
    return stamp


def separate_releases(first: Path, second: Path, seconds: float = 3600.0) -> None:
    """Date every file release 2 changed an hour after release 1.

    Both are signed within a second or so, and nginx's ETag and Last-Modified
    are the file's mtime in seconds and its size: a manifest of the same size
    signed in the same second would get the old ETag and a 304. Real releases
    are further apart.
    """
    later = time.time() + seconds
    for path in second.rglob("*"):
        if path.is_file():
            before = first / path.relative_to(second)
            if not before.is_file() or before.read_bytes() != path.read_bytes():
                os.utime(path, (later, later))


# -- running the scenarios ---------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """Where the children connect, and what the header says about it."""

    base_url: str  # https://127.0.0.1:PORT (nginx itself, or the WAN relay)
    description: str


@dataclass
class Measured:
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)


Results = dict[tuple[str, int], Measured]


def runs_for(scenario: str, files: int, repeat: int) -> int:
    if WHAT.get(scenario) == "all" and files >= BIG_TREE:
        return min(repeat, BIG_TREE_ALL_RUNS)
    return repeat


class Suite:
    """Every scenario of every size, interleaved (run 1 of each, then run 2 ...)."""

    def __init__(
        self, ws: Workspace, trees: Trees, server: LoggingNginx, link: Link, sizes: Sequence[int]
    ) -> None:
        self.ws, self.trees, self.server, self.link = ws, trees, server, link
        self.sizes = sorted(sizes)
        self.results: Results = {}
        self.counter = 0

    def cache(self, label: str) -> Path:
        self.counter += 1
        return self.ws.root / "cache" / f"scaling-{self.counter}-{label}"

    def spec(self, files: int, what: str, local: str | None) -> dict[str, Any]:
        names = selection(what, files)
        spec: dict[str, Any] = {"preload": [], "mode": "local" if local else "remote"}
        if len(names) > 1000:  # too long for one argv string: the child walks the tree
            spec["names_from"] = str(self.trees.release(files, 1))
        else:
            spec["names"] = names
        if local is not None:
            tree = self.trees.release(files, 1) if local == "src" else self.trees.bytecode(files)
            root = str(tree)
            return {
                **spec,
                "root": root,
                "origin_prefix": root + os.sep,
                "dont_write_bytecode": local == "src",
            }
        url = f"{self.link.base_url}/{self.trees.url_path(files)}"
        return {
            **spec,
            "url": url,
            "origin_prefix": url + "/",
            "pubkey": str(self.trees.pubkey),
            "cafile": str(self.ws.cafile),
        }

    def child(
        self, label: str, spec: dict[str, Any], cache: Path, flags: Sequence[str] = ()
    ) -> dict[str, Any]:
        env = child_env(self.ws, cache, self.ws.library_path)
        return run_python(label, spec, cwd=self.ws.cwd, env=env, flags=flags, timeout=1800.0)

    def seed(self, files: int) -> Path:
        """A cache that imported pkg0.mod0 from release 1 (copied for each warm run)."""
        path = self.ws.root / "cache" / f"scaling-seed-{files}"
        if not path.exists():
            path.mkdir(parents=True)
            self.trees.serve(files, 1)
            self.child(f"seed ({files} files)", self.spec(files, "one", None), path)
        return path

    def record(self, key: tuple[str, int], data: dict[str, Any], served: Served | None) -> None:
        measured = self.results.setdefault(key, Measured())
        measured.seconds.append(float(data["seconds"]))
        measured.rss_kib.append(int(data["maxrss_kib"]))
        if served is not None:
            measured.served.append(served)

    def run_remote(self, scenario: str, files: int, rep: int) -> None:
        label = f"{scenario} ({files} files, run {rep + 1})"
        cache = self.cache(scenario)
        if scenario.startswith("warm-"):
            shutil.copytree(self.seed(files), cache)
        else:
            cache.mkdir(parents=True)
        self.trees.serve(files, 2 if scenario == "warm-1-changed" else 1)
        self.server.access.start()
        try:
            data = self.child(label, self.spec(files, WHAT[scenario], None), cache)
        finally:
            served = self.server.access.served()
            self.trees.serve(files, 1)
        self.record((scenario, files), data, served)
        shutil.rmtree(cache, ignore_errors=True)
        log.info(
            "scaling run %d %-15s %6d files %9.1f ms %5d requests %11d bytes",
            rep + 1,
            scenario,
            files,
            data["seconds"] * 1e3,
            served.requests,
            served.bytes_sent,
        )

    def run_local(self, kind: str, what: str, files: int, rep: int) -> None:
        label = f"local-{kind} {what} ({files} files, run {rep + 1})"
        cache = self.cache(f"local-{kind}")
        flags = ["-B"] if kind == "src" else []
        data = self.child(label, self.spec(files, what, kind), cache, flags)
        self.record((f"local-{kind}-{what}", files), data, None)

    def run(self, repeat: int) -> Results:
        for files in self.sizes:
            self.seed(files)
        for rep in range(repeat):
            for files in self.sizes:
                for scenario in SCENARIOS:
                    if rep < runs_for(scenario, files, repeat):
                        self.run_remote(scenario, files, rep)
                for what in ("one", "package", "all"):
                    if rep < runs_for(f"cold-{what}", files, repeat):
                        for kind in ("src", "pyc"):
                            self.run_local(kind, what, files, rep)
        return self.results


# -- the table -----------------------------------------------------------------------


def spread(values: Sequence[int]) -> str:
    """Exact, and a range if the runs differ (they should not)."""
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def scaling_rows(results: Results, trees: Trees) -> list[list[str]]:
    rows = []
    for (scenario, files), measured in sorted(
        ((k, v) for k, v in results.items() if k[0] in SCENARIOS),
        key=lambda item: (item[0][1], SCENARIOS.index(item[0][0])),
    ):
        what = WHAT[scenario]
        median = statistics.median(measured.seconds)
        src = statistics.median(results[f"local-src-{what}", files].seconds)
        pyc = statistics.median(results[f"local-pyc-{what}", files].seconds)
        statuses = {s.status_text() for s in measured.served}
        rows.append(
            [
                f"{trees.signing[files]['files']:,}",
                scenario,
                str(len(measured.seconds)),
                spread([s.requests for s in measured.served]),
                spread([s.bytes_sent for s in measured.served]),
                " / ".join(sorted(statuses)),
                f"{median * 1e3:.1f}",
                f"{src * 1e3:.1f}",
                f"{median / src:.2f}",
                f"{pyc * 1e3:.1f}",
                f"{median / pyc:.2f}",
                f"{statistics.median(measured.rss_kib) / 1024:.1f}",
            ]
        )
    return rows


SCALING_HEADERS = [
    "files",
    "scenario",
    "runs",
    "requests",
    "bytes served",
    "statuses",
    "median ms",
    "local src ms",
    "x src",
    "local pyc ms",
    "x pyc",
    "peak RSS MB",
]


def signing_note(trees: Trees) -> str:
    parts = []
    for _files, stamp in sorted(trees.signing.items()):
        s1, s2 = stamp["sign_seconds"]
        when = f"kept, signed {stamp['signed']}" if stamp.get("kept") else "signed in this run"
        parts.append(
            f"{stamp['files']:,} files: {s1:.1f} s ({stamp['files'] / s1:,.0f} files/s), "
            f"release 2 {s2:.1f} s ({when})"
        )
    return "signing (sign_tree, each release): " + "; ".join(parts)


def scaling_table(results: Results, trees: Trees, markdown: bool) -> str:
    rows = scaling_rows(results, trees)
    align = "rl" + "r" * 3 + "l" + "r" * 6
    return format_table(SCALING_HEADERS, rows, markdown, align=align)
