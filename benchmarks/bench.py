#!/usr/bin/env python3
"""Benchmark secure_urlimport against local imports and a naive URL importer (issue #5).

Builds a package of N generated modules, signs it with a fresh Ed25519 key,
serves it over real HTTPS on 127.0.0.1 (nginx when installed, else the
project's own TreeServer) and times, each in a fresh interpreter:

- local-source    the tree on local disk, no bytecode (``-B``): the baseline
- local-bytecode  the same tree with ``__pycache__`` precompiled
- remote-cold     ``secure_urlimport.install()`` with an empty cache dir
- remote-warm     the same, with a cache dir filled by one earlier run
- naive           the classic recipe: one GET per file, no signature checks

It also measures signature verification (µs/file), signing (files/s) and the
cost of ``import secure_urlimport`` (``-X importtime``).  Timing is not a
test: the script fails (exit 1) only when a scenario fails to run.

    python benchmarks/bench.py [--modules 1000 100] [--repeat 5] [--quick]
                               [--server auto|nginx|builtin] [--markdown]
                               [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests' nginx harness (tests/nginx.py)
from tests import nginx as harness  # noqa: E402
from tests.nginx import Nginx  # noqa: E402

PACKAGE = "benchpkg"
SUBPACKAGES = 10
SCENARIOS = ("local-source", "local-bytecode", "remote-cold", "remote-warm", "naive")
BASELINE = "local-source"
QUICK_MODULES = 20
#: The stdlib modules the generated tree imports, loaded in every child before
#: the clock starts: ``secure_urlimport`` loads dataclasses itself, so timing
#: their first import would favour the remote scenarios.
PRELOAD = ("dataclasses", "functools", "os")
CHILD_TIMEOUT = 300.0
MIB = 1024 * 1024
#: Variables that would change what a child trusts, where it connects or how it imports.
DROPPED_ENV = frozenset(
    {
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SECURE_URLIMPORT_CACHE_DIR",
        "SECURE_URLIMPORT_PASSPHRASE",
    }
)

log = logging.getLogger("bench")


class BenchError(Exception):
    """A scenario or a server could not run; the message says what and why."""


# -- the child: one measurement in a fresh interpreter ------------------------

CHILD_CODE = r'''
import importlib, json, os, sys, time


def peak_rss_kib():
    """This process's own peak resident set (VmHWM). Not ru_maxrss: Linux carries
    that across fork+exec, so it never reads below the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource  # not Linux: ru_maxrss (bytes on macOS, KiB elsewhere)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def module_names(root):
    """Sorted dotted names of every module under root, and the .py paths."""
    names, files = [], set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for filename in filenames:
            if not filename.endswith(".py"):
                continue
            rel = filename if rel_dir == "." else rel_dir + "/" + filename
            files.add(rel)
            dotted = rel[:-3].replace("/", ".")
            names.append(dotted[:-9] if filename == "__init__.py" else dotted)
    return sorted(names), files


def install_naive(url, cafile, files):
    """The classic recipe: a meta-path finder, one keep-alive session, one GET
    per file, no signature checks."""
    import importlib.machinery
    import requests

    session = requests.Session()
    session.verify = cafile

    class NaiveLoader:
        def __init__(self, file_url):
            self.file_url = file_url

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            response = session.get(self.file_url, timeout=30)
            response.raise_for_status()
            code = compile(response.content, self.file_url, "exec", dont_inherit=True)
            exec(code, module.__dict__)

    class NaiveFinder:
        def find_spec(self, fullname, path=None, target=None):
            rel = fullname.replace(".", "/")
            for candidate, package in ((rel + "/__init__.py", True), (rel + ".py", False)):
                if candidate in files:
                    origin = url + "/" + candidate
                    spec = importlib.machinery.ModuleSpec(
                        fullname, NaiveLoader(origin), origin=origin, is_package=package)
                    if package:
                        spec.submodule_search_locations = [url + "/" + rel]
                    spec.has_location = True
                    return spec
            return None

    sys.meta_path.insert(0, NaiveFinder())


def main():
    spec = json.loads(sys.argv[1])
    names, files = module_names(spec["names_from"])
    mode = spec["mode"]
    for name in spec["preload"]:
        importlib.import_module(name)
    if mode == "local":
        sys.dont_write_bytecode = spec["dont_write_bytecode"]
    elif mode == "remote":
        import secure_urlimport
    started = time.perf_counter()
    if mode == "local":
        sys.path.insert(0, spec["root"])
    elif mode == "remote":
        secure_urlimport.install(spec["url"], pubkey=spec["pubkey"], cafile=spec["cafile"])
    else:
        install_naive(spec["url"], spec["cafile"], files)
    setup = time.perf_counter() - started
    for name in names:
        importlib.import_module(name)
    seconds = time.perf_counter() - started
    rss = peak_rss_kib()
    for name in names:
        origin = sys.modules[name].__file__ or ""
        if not origin.startswith(spec["origin_prefix"]):
            sys.exit(f"{name} was imported from {origin}, not {spec['origin_prefix']}")
    print(json.dumps({"seconds": seconds, "setup": setup, "maxrss_kib": rss,
                      "modules": len(names)}))


main()
'''


# -- the generated tree -------------------------------------------------------

DATACLASS_MODULE = '''\
"""{dotted}: generated benchmark module {index}.

A dataclass with methods, a cached function and a few constants.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

LIMIT = {index}
NAMES = ("alpha", "beta", "gamma", "m{index}")
SEPARATOR = os.sep


@dataclass
class Record:
    """A small record."""

    name: str
    values: list[int] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.values) + LIMIT

    def label(self) -> str:
        return SEPARATOR.join((self.name, str(len(self.values))))


@functools.lru_cache(maxsize=128)
def scaled(x: int) -> int:
    return x * {index} + 7


def make(n: int = 3) -> Record:
    return Record(NAMES[n % len(NAMES)], [scaled(k) for k in range(n)])
'''

CLASS_MODULE = '''\
"""{dotted}: generated benchmark module {index}.

A plain class with methods, a few functions and constants.
"""

from __future__ import annotations

import functools
import os

WIDTH = {index} % 17 + 3
PREFIX = "m{index}"


class Counter:
    """Counts labelled events."""

    def __init__(self, label: str = PREFIX) -> None:
        self.label = label
        self.counts: dict[str, int] = {{}}

    def add(self, key: str, amount: int = 1) -> int:
        self.counts[key] = self.counts.get(key, 0) + amount
        return self.counts[key]

    def __repr__(self) -> str:
        return f"Counter({{self.label!r}}, {{len(self.counts)}} keys)"


def pad(text: str) -> str:
    return text.rjust(WIDTH)


def joined(*parts: str) -> str:
    return os.sep.join(functools.reduce(lambda acc, p: [*acc, pad(p)], parts, []))
'''


def module_source(index: int, dotted: str) -> str:
    template = DATACLASS_MODULE if index % 2 == 0 else CLASS_MODULE
    return template.format(dotted=dotted, index=index)


def write_tree(root: Path, modules: int) -> None:
    """``root/benchpkg`` with *modules* modules spread over up to 10 subpackages."""
    package = root / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f'"""{PACKAGE}: generated."""\n\nVERSION = "1.0"\n')
    subpackages = min(SUBPACKAGES, modules)
    width = max(3, len(str(modules - 1)))
    for sub in range(subpackages):
        directory = package / f"sub_{sub:02d}"
        directory.mkdir()
        dotted = f"{PACKAGE}.sub_{sub:02d}"
        (directory / "__init__.py").write_text(f'"""{dotted}: generated."""\n\nINDEX = {sub}\n')
    for index in range(modules):
        sub = index * subpackages // modules
        name = f"mod_{index:0{width}d}"
        dotted = f"{PACKAGE}.sub_{sub:02d}.{name}"
        (package / f"sub_{sub:02d}" / f"{name}.py").write_text(module_source(index, dotted))


def count_files(root: Path) -> int:
    return sum(1 for path in root.rglob("*.py") if "__pycache__" not in path.parts)


# -- workspace: keys, TLS, trees ----------------------------------------------


@dataclass
class Workspace:
    root: Path
    cafile: Path = field(init=False)
    certfile: Path = field(init=False)
    keyfile: Path = field(init=False)
    pubkey: Path = field(init=False)
    www: Path = field(init=False)  # the served root: one signed tree per size
    cwd: Path = field(init=False)  # an empty directory the children run in
    library_path: str | None = None  # PYTHONPATH entry if the library is not installed
    baseline_path: str | None = None  # --baseline: another checkout, measured in the same run

    def __post_init__(self) -> None:
        self.www = self.root / "www"
        self.cwd = self.root / "cwd"
        self.pubkey = self.root / "keys" / "bench.pub"
        for directory in (self.www, self.cwd, self.pubkey.parent):
            directory.mkdir(parents=True)

    def served(self, modules: int) -> Path:
        return self.www / f"n{modules}"

    def local(self, kind: str, modules: int) -> Path:
        return self.root / kind / f"n{modules}"

    def fresh_cache(self, label: str) -> Path:
        path = self.root / "cache" / label
        path.mkdir(parents=True)
        return path


def make_tls(ws: Workspace) -> None:
    from secure_urlimport.cli.devserver import make_local_ca

    files = make_local_ca(ws.root / "tls")
    ws.cafile, ws.certfile, ws.keyfile = files.ca_file, files.cert_file, files.key_file


def build_trees(ws: Workspace, sizes: Sequence[int]) -> None:
    """Generate and copy each tree: served (to be signed), source-only, precompiled."""
    for modules in sizes:
        write_tree(ws.served(modules), modules)
        source = ws.local("local-source", modules)
        shutil.copytree(ws.served(modules), source)
        bytecode = ws.local("local-bytecode", modules)
        shutil.copytree(ws.served(modules), bytecode)
        if not compileall.compile_dir(bytecode, quiet=1):
            raise BenchError(f"compileall failed for {bytecode}")


def sign_trees(ws: Workspace, sizes: Sequence[int], rounds: int) -> list[float]:
    """Sign every tree with a fresh key; files/s of each signing of the largest tree."""
    from secure_urlimport._format.keys import PrivateKey
    from secure_urlimport.publish.signing import sign_tree

    key = PrivateKey.generate()
    ws.pubkey.write_text(key.public.to_line(), encoding="ascii")
    rates: list[float] = []
    largest = max(sizes)
    for modules in sorted(sizes):
        for _ in range(rounds if modules == largest else 1):
            started = time.perf_counter()
            result = sign_tree(ws.served(modules), [key])
            elapsed = time.perf_counter() - started
            if modules == largest:
                rates.append(result.files / elapsed)
    return rates


# -- servers ------------------------------------------------------------------


@dataclass
class Server:
    description: str
    url: str
    requests_served: Callable[[], int]


#: The nginx settings a benchmark wants on top of the tests' harness (tests/nginx.py,
#: the one nginx launcher of the project): long keep-alive, sendfile, modern TLS.
NGINX_TUNING = (
    "sendfile on; keepalive_timeout 65s; keepalive_requests 1000000; ssl_protocols TLSv1.2 TLSv1.3;"
)


def nginx_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    text = (result.stderr or result.stdout).strip()
    return text.split(":", 1)[-1].strip() or "nginx"


def start_nginx(ws: Workspace, binary: str) -> tuple[Nginx, Server]:
    """Start nginx on a free loopback port; raise BenchError if it does not start."""
    try:
        nginx = harness.start_nginx(
            binary,
            ws.root / "nginx",
            ws.www,
            certfile=str(ws.certfile),
            keyfile=str(ws.keyfile),
            extra=NGINX_TUNING,
        )
    except harness.NginxError as exc:
        raise BenchError(str(exc)) from exc
    return nginx, Server(nginx_version(binary), nginx.url, lambda: count_lines(nginx.access_log))


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


class _RequestCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if '"GET ' in record.getMessage():
            self.count += 1


@contextlib.contextmanager
def serve_builtin(ws: Workspace) -> Iterator[Server]:
    from secure_urlimport.cli.devserver import TreeServer

    counter = _RequestCounter()
    server_log = logging.getLogger("secure_urlimport.cli.devserver")  # one DEBUG line per request
    old_level, old_propagate = server_log.level, server_log.propagate
    server_log.addHandler(counter)
    server_log.setLevel(logging.DEBUG)
    server_log.propagate = False  # count the lines, do not print them
    server = TreeServer(ws.www, certfile=str(ws.certfile), keyfile=str(ws.keyfile))
    server.start()
    try:
        yield Server("builtin secure_urlimport TreeServer", server.url, lambda: counter.count)
    finally:
        server.stop()
        server_log.removeHandler(counter)
        server_log.setLevel(old_level)
        server_log.propagate = old_propagate


@contextlib.contextmanager
def serve(ws: Workspace, choice: str) -> Iterator[Server]:
    """nginx (``auto``: if installed and it starts), else the builtin TreeServer."""
    nginx = harness.find_nginx() if choice in ("auto", "nginx") else None
    if choice == "nginx" and nginx is None:
        raise BenchError("--server nginx: nginx is not installed (not on PATH or /usr/sbin)")
    if nginx is not None:
        try:
            process, server = start_nginx(ws, nginx)
        except BenchError as exc:
            if choice == "nginx":
                raise
            log.warning("nginx did not start, using the builtin server instead: %s", exc)
        else:
            try:
                yield server
            finally:
                process.stop()
            return
    with serve_builtin(ws) as server:
        yield server


# -- running children ---------------------------------------------------------


def child_env(ws: Workspace, cache_dir: Path, library: str | None) -> dict[str, str]:
    """The parent's environment without proxy, CA and PYTHON* settings (but PYTHONPATH)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in DROPPED_ENV and (not name.startswith("PYTHON") or name == "PYTHONPATH")
    }
    if library is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [library, env.get("PYTHONPATH")]))
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache_dir)
    return env


@dataclass(frozen=True)
class Run:
    seconds: float
    setup: float  # of seconds: install() / making the naive session / sys.path insert
    rss_kib: int
    requests: int


def run_child(
    ws: Workspace,
    server: Server,
    label: str,
    *,
    spec: dict[str, Any],
    cache_dir: Path,
    flags: Sequence[str] = (),
    baseline: bool = False,
) -> Run:
    before = server.requests_served()
    command = [sys.executable, *flags, "-c", CHILD_CODE, json.dumps(spec)]
    try:
        result = subprocess.run(  # noqa: S603
            command,
            capture_output=True,
            text=True,
            cwd=ws.cwd,
            timeout=CHILD_TIMEOUT,
            env=child_env(ws, cache_dir, ws.baseline_path if baseline else ws.library_path),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{label}: no result within {CHILD_TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        raise BenchError(
            f"{label}: the child exited with {result.returncode}:\n"
            + tail(result.stderr or result.stdout)
        )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return Run(
        float(data["seconds"]),
        float(data["setup"]),
        int(data["maxrss_kib"]),
        server.requests_served() - before,
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def child_spec(ws: Workspace, server: Server, scenario: str, modules: int) -> dict[str, Any]:
    common = {"names_from": str(ws.local("local-source", modules)), "preload": PRELOAD}
    if scenario.startswith("local-"):
        root = str(ws.local(scenario, modules))
        return {
            **common,
            "mode": "local",
            "root": root,
            "origin_prefix": root + os.sep,
            "dont_write_bytecode": scenario == "local-source",
        }
    url = f"{server.url}/n{modules}"
    return {
        **common,
        "mode": "remote" if scenario.startswith("remote-") else "naive",
        "url": url,
        "origin_prefix": url + "/",
        "pubkey": str(ws.pubkey),
        "cafile": str(ws.cafile),
    }


def run_scenario(ws: Workspace, server: Server, scenario: str, modules: int, rep: int) -> Run:
    """One run; ``remote-cold@baseline`` is ``remote-cold`` with the --baseline checkout."""
    label = f"{scenario} ({modules} modules, run {rep + 1})"
    kind, _, variant = scenario.partition("@")
    spec = child_spec(ws, server, kind, modules)
    if kind == "remote-warm":
        cache = ws.root / "cache" / f"warm-{variant}-{modules}-{rep}"
        shutil.copytree(warm_seed(ws, modules, variant), cache)
    else:
        cache = ws.fresh_cache(f"{kind}-{variant}-{modules}-{rep}")
    flags = ["-B"] if kind == "local-source" else []
    return run_child(
        ws, server, label, spec=spec, cache_dir=cache, flags=flags, baseline=bool(variant)
    )


def warm_seed(ws: Workspace, modules: int, variant: str = "") -> Path:
    return ws.root / "cache" / f"warm-seed-{variant}-{modules}"


def seed_warm_cache(ws: Workspace, server: Server, modules: int, variant: str = "") -> None:
    """One untimed remote import, so the warm runs start from a populated cache dir."""
    cache = warm_seed(ws, modules, variant)
    cache.mkdir(parents=True)
    spec = child_spec(ws, server, "remote-cold", modules)
    run_child(
        ws,
        server,
        f"warm-up ({modules} modules)",
        spec=spec,
        cache_dir=cache,
        baseline=bool(variant),
    )


def scenarios(ws: Workspace) -> tuple[str, ...]:
    """The scenarios to run; with --baseline, the remote ones once more with that checkout."""
    if ws.baseline_path is None:
        return SCENARIOS
    return (*SCENARIOS, *(f"{s}@baseline" for s in SCENARIOS if s.startswith("remote-")))


Results = dict[tuple[str, int], list[Run]]


def measure_imports(ws: Workspace, server: Server, sizes: Sequence[int], repeat: int) -> Results:
    """Every scenario for every size, interleaved so background load hits all alike."""
    for modules in sizes:
        seed_warm_cache(ws, server, modules)
        if ws.baseline_path is not None:
            seed_warm_cache(ws, server, modules, "baseline")
    results: Results = {(s, n): [] for n in sizes for s in scenarios(ws)}
    for rep in range(repeat):
        for modules in sizes:
            for scenario in scenarios(ws):
                run = run_scenario(ws, server, scenario, modules, rep)
                results[scenario, modules].append(run)
                log.info(
                    "run %d/%d %-23s %5d modules %8.1f ms %6d requests",
                    rep + 1,
                    repeat,
                    scenario,
                    modules,
                    run.seconds * 1e3,
                    run.requests,
                )
    return results


# -- in-process measurements ---------------------------------------------------


@dataclass(frozen=True)
class Verification:
    files: int
    us_per_file: float
    manifest_ms: float


def measure_verification(tree: Path, pubkey: Path, rounds: int) -> Verification:
    """Verify the signed manifest, then every file of *tree* against it, in-process."""
    from secure_urlimport._format.keys import TrustedKeys
    from secure_urlimport._format.paths import MANIFEST_NAME
    from secure_urlimport._trust.verify import verify_file, verify_manifest

    trusted = TrustedKeys.from_arg(str(pubkey), threshold=1)
    data = (tree / MANIFEST_NAME).read_bytes()
    manifest_times = []
    for _ in range(rounds):
        started = time.perf_counter()
        manifest = verify_manifest(
            data, trusted, now=datetime.now(UTC), previous=None, url=MANIFEST_NAME
        )
        manifest_times.append(time.perf_counter() - started)
    blobs = [(entry, (tree / path).read_bytes()) for path, entry in manifest.files.items()]
    file_times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for entry, blob in blobs:
            verify_file(entry, blob, manifest, trusted, url=entry.path)
        file_times.append(time.perf_counter() - started)
    return Verification(
        len(blobs),
        statistics.median(file_times) / len(blobs) * 1e6,
        statistics.median(manifest_times) * 1e3,
    )


@dataclass(frozen=True)
class ImportTime:
    cumulative_us: float
    heaviest: list[tuple[str, int]]  # (module, cumulative µs) pulled in from outside


def parse_importtime(stderr: str) -> list[tuple[int, str, int]]:
    """``(indent, module, cumulative µs)`` for each ``-X importtime`` line, in order."""
    entries = []
    for line in stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        try:
            cumulative = int(parts[1])
        except ValueError:
            continue  # the header line
        indent = len(parts[2]) - len(parts[2].lstrip()) - 1
        entries.append((indent, parts[2].strip(), cumulative))
    return entries


def heaviest_dependencies(
    entries: list[tuple[int, str, int]], top: int
) -> tuple[int, list[tuple[str, int]]]:
    """The package's cumulative µs and the heaviest outside modules it imports itself."""
    root = max(i for i, e in enumerate(entries) if e[1] == "secure_urlimport")
    own = ("secure_urlimport", "secure_urlimport.")
    found = []
    for index in range(root - 1, -1, -1):
        indent, name, cumulative = entries[index]
        if indent <= entries[root][0]:
            break
        parent = next(e[1] for e in entries[index + 1 :] if e[0] < indent)
        if not name.startswith(own) and (parent == own[0] or parent.startswith(own[1])):
            found.append((name, cumulative))
    found.sort(key=lambda item: -item[1])
    return entries[root][2], found[:top]


def measure_import_time(ws: Workspace, rounds: int) -> ImportTime:
    env = child_env(ws, ws.fresh_cache("importtime"), ws.library_path)
    totals: list[int] = []
    heaviest: list[tuple[str, int]] = []
    for _ in range(rounds):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import secure_urlimport"],
            capture_output=True,
            text=True,
            cwd=ws.cwd,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError("import secure_urlimport failed:\n" + tail(result.stderr))
        total, heaviest = heaviest_dependencies(parse_importtime(result.stderr), 4)
        totals.append(total)
    return ImportTime(statistics.median(totals), heaviest)


# -- report -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scenario: str
    modules: int
    median_ms: float
    min_ms: float
    setup_ms: float
    ratio: float
    rss_mb: float
    rss_delta_mb: float
    requests: int


def summarize(results: Results) -> list[Row]:
    rows = []
    for (scenario, modules), runs in results.items():
        base = results[BASELINE, modules]
        base_s = statistics.median(r.seconds for r in base)
        base_rss = statistics.median(r.rss_kib for r in base) * 1024 / MIB
        median_s = statistics.median(r.seconds for r in runs)
        rss = statistics.median(r.rss_kib for r in runs) * 1024 / MIB
        setup_s = statistics.median(r.setup for r in runs)
        rows.append(
            Row(
                scenario,
                modules,
                median_s * 1e3,
                min(r.seconds for r in runs) * 1e3,
                setup_s * 1e3,
                median_s / base_s,
                rss,
                rss - base_rss,
                round(statistics.median(r.requests for r in runs)),
            )
        )
    return rows


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, align: str = ""
) -> str:
    """*align*: one ``l`` or ``r`` per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    if markdown:
        rule = "|".join(" --- " if a == "l" else " ---: " for a in align)
        lines = ["| " + " | ".join(headers) + " |", f"|{rule}|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def scenario_order(scenario: str) -> tuple[int, str]:
    """Each --baseline scenario right after its counterpart."""
    kind, _, variant = scenario.partition("@")
    return SCENARIOS.index(kind), variant


def import_table(rows: Sequence[Row], markdown: bool) -> str:
    headers = [
        "scenario",
        "modules",
        "median ms",
        "min ms",
        "setup ms",
        "x local-source",
        "peak RSS MB",
        "Δ RSS MB",
        "requests",
    ]
    cells = [
        [
            r.scenario,
            str(r.modules),
            f"{r.median_ms:.1f}",
            f"{r.min_ms:.1f}",
            f"{r.setup_ms:.1f}",
            f"{r.ratio:.2f}",
            f"{r.rss_mb:.1f}",
            f"{r.rss_delta_mb:+.1f}",
            "-" if r.scenario.startswith("local-") else str(r.requests),
        ]
        for r in sorted(rows, key=lambda r: (-r.modules, scenario_order(r.scenario)))
    ]
    return format_table(headers, cells, markdown)


@dataclass(frozen=True)
class Extras:
    verification: Verification
    signing_rates: list[float]
    signed_files: int
    import_time: ImportTime


def extras_table(extras: Extras, markdown: bool) -> str:
    v, it = extras.verification, extras.import_time
    heavy = ", ".join(f"{name} {us / 1e3:.1f}" for name, us in it.heaviest) or "-"
    cells = [
        [
            "verification",
            f"{v.us_per_file:.1f} µs/file",
            f"{v.files} files; manifest verified in {v.manifest_ms:.1f} ms",
        ],
        [
            "signing",
            f"{statistics.median(extras.signing_rates):.0f} files/s",
            f"sign_tree of {extras.signed_files} files, median of {len(extras.signing_rates)}",
        ],
        [
            "import secure_urlimport",
            f"{it.cumulative_us / 1e3:.1f} ms",
            f"-X importtime cumulative; heaviest deps (ms): {heavy}",
        ],
    ]
    return format_table(["measure", "value", "detail"], cells, markdown, align="lrl")


def find_row(rows: Sequence[Row], scenario: str, modules: int) -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.modules == modules), None)


def targets_table(rows: Sequence[Row], extras: Extras, markdown: bool) -> str:
    """The issue's targets: measured value and whether it is met (n/a: size not run)."""

    def ratio(scenario: str, modules: int) -> float | None:
        row = find_row(rows, scenario, modules)
        return None if row is None else row.ratio

    cold = find_row(rows, "remote-cold", 1000)
    checks: list[tuple[str, float | None, str, Callable[[float], bool], str]] = [
        (
            "cold import, 1000 modules",
            ratio("remote-cold", 1000),
            "≤ 1.40x",
            lambda x: x <= 1.4,
            "{:.2f}x",
        ),
        (
            "warm start, 1000 modules",
            ratio("remote-warm", 1000),
            "≤ 1.15x",
            lambda x: x <= 1.15,
            "{:.2f}x",
        ),
        (
            "cold import, 100 modules",
            ratio("remote-cold", 100),
            "≤ 1.50x",
            lambda x: x <= 1.5,
            "{:.2f}x",
        ),
        (
            "verification per file",
            extras.verification.us_per_file,
            "≤ 150 µs",
            lambda x: x <= 150,
            "{:.1f} µs",
        ),
        (
            "signing",
            statistics.median(extras.signing_rates),
            "≥ 5000 files/s",
            lambda x: x >= 5000,
            "{:.0f} files/s",
        ),
        (
            "peak RSS, cold 1000 vs local",
            None if cold is None else cold.rss_delta_mb,
            "≤ +30 MB",
            lambda x: x <= 30,
            "{:+.1f} MB",
        ),
    ]
    cells = [
        [
            name,
            target,
            "n/a" if value is None else fmt.format(value),
            "n/a" if value is None else ("yes" if ok(value) else "NO"),
        ]
        for name, value, target, ok, fmt in checks
    ]
    return format_table(["target (issue #5)", "goal", "measured", "met"], cells, markdown)


def header(server: Server, repeat: int) -> str:
    return (
        f"secure_urlimport benchmark — Python {platform.python_version()} "
        f"({platform.python_implementation()}), {os.cpu_count()} CPUs, "
        f"{platform.platform()}; server: {server.description} at {server.url}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; median of {repeat} run(s)"
    )


def report(server: Server, repeat: int, rows: Sequence[Row], extras: Extras, markdown: bool) -> str:
    parts = [
        header(server, repeat),
        import_table(rows, markdown),
        extras_table(extras, markdown),
        targets_table(rows, extras, markdown),
    ]
    return "\n\n".join(parts)


# -- main ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--modules", type=int, nargs="+", metavar="N", help="tree sizes (default: 1000 100)"
    )
    parser.add_argument("--repeat", type=int, help="runs per scenario and size (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_MODULES} modules, 1 run: proves the benchmark still runs",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "nginx", "builtin"),
        default="auto",
        help="auto: nginx if installed, else the project's TreeServer",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print Markdown tables instead of plain text"
    )
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        type=Path,
        help="another checkout of secure_urlimport (e.g. a git worktree of "
        "the previous release): its remote scenarios run interleaved in "
        "the same run, as remote-cold@baseline and remote-warm@baseline",
    )
    parser.add_argument(
        "--no-bundle",
        action="store_true",
        help="publish without secure-urlimport.bundle: remote imports then "
        "fetch one file per request, in parallel (prefetch)",
    )
    args = parser.parse_args(argv)
    default_modules, default_repeat = ([QUICK_MODULES], 1) if args.quick else ([1000, 100], 5)
    args.modules = sorted(set(args.modules or default_modules), reverse=True)
    args.repeat = args.repeat or default_repeat
    if min(args.modules) < 1 or args.repeat < 1:
        parser.error("--modules and --repeat must be positive")
    if args.baseline is not None and not (args.baseline / "secure_urlimport").is_dir():
        parser.error(f"--baseline {args.baseline}: no secure_urlimport package in that checkout")
    return args


def library_path() -> str:
    """This checkout, first on every child's sys.path: the code measured is the code
    beside this script, even when the venv has another checkout installed."""
    sys.path.insert(0, str(REPO))
    return str(REPO)


def benchmark(ws: Workspace, args: argparse.Namespace) -> str:
    make_tls(ws)
    build_trees(ws, args.modules)
    rates = sign_trees(ws, args.modules, rounds=min(args.repeat, 3))
    if args.no_bundle:
        from secure_urlimport._format.paths import BUNDLE_NAME

        for modules in args.modules:
            (ws.served(modules) / BUNDLE_NAME).unlink()
    largest = ws.served(max(args.modules))
    verification = measure_verification(largest, ws.pubkey, rounds=max(args.repeat, 3))
    import_time = measure_import_time(ws, rounds=args.repeat)
    with serve(ws, args.server) as server:
        log.info("serving %s at %s", server.description, server.url)
        results = measure_imports(ws, server, args.modules, args.repeat)
    extras = Extras(verification, rates, count_files(largest), import_time)
    text = report(server, args.repeat, summarize(results), extras, args.markdown)
    if args.no_bundle:
        text = text.replace("; median of", "; published WITHOUT the bundle; median of", 1)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    started = time.monotonic()
    lib = library_path()
    try:
        with tempfile.TemporaryDirectory(prefix="secure-urlimport-bench-") as tmp:
            baseline = None if args.baseline is None else str(args.baseline.resolve())
            workspace = Workspace(Path(tmp), library_path=lib, baseline_path=baseline)
            table = benchmark(workspace, args)
    except BenchError as exc:
        print(f"benchmark FAILED: {exc}", file=sys.stderr)
        return 1
    print(table)
    log.info("finished in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
