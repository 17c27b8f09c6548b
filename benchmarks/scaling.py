"""The scaling table (issue #14): what one consumer downloads, by tree size and by use.

Trees of packages with 50 small modules each (``pkgK/modJ.py``, ~450 bytes, and
``pkgK/__init__.py``), signed once per size. Each scenario runs in a fresh
interpreter against nginx; requests and bytes come from nginx's access log
(``$bytes_sent``), time from the child, and the same import from the same tree
on local disk gives the ratio.  The WAN run (wan.py) runs the same suite through
a delaying relay in a network namespace of its own.
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .children import child_env, run_python
from .common import Workspace, format_table, log
from .scaling_trees import Trees, selection
from .servers import LoggingNginx, Served

DEFAULT_SIZES = (100, 1000, 10000, 50000)
QUICK_SIZES = (100, 1000)
#: Runs of "cold-all" for trees this big or bigger (one run imports 51,000 modules
#: twice over: remote and local); every other scenario gets --repeat runs.
BIG_TREE = 50000
BIG_TREE_ALL_RUNS = 3

SCENARIOS = ("cold-one", "cold-package", "cold-all", "warm-1-changed", "warm-unchanged")
WHAT = {
    "cold-one": "one",
    "cold-package": "package",
    "cold-all": "all",
    "warm-1-changed": "one",
    "warm-unchanged": "one",
}

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
        env = child_env(self.ws, cache, self.trees.library or self.ws.library_path)
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
