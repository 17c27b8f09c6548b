#!/usr/bin/env python3
"""Benchmark secure_urlimport against local imports and a naive URL importer (issue #5).

Builds a package of N generated modules, signs it with a fresh Ed25519 key,
serves it over real HTTPS on 127.0.0.1 (nginx when installed, else the
project's own TreeServer) and times, each in a fresh interpreter:

- local-source    the tree on local disk, no bytecode (``-B``): the baseline
- local-bytecode  the same tree with ``__pycache__`` precompiled
- remote-cold     ``secure_urlimport.install()`` with an empty cache dir
- remote-warm     the same, with a cache dir filled by one earlier run
- remote-fresh    remote-warm within ``install(max_age=3600)``: no request at all
- naive           the classic recipe: one GET per file, no signature checks

It also measures signature verification (µs/file), signing (files/s) and the
cost of ``import secure_urlimport`` (``-X importtime``).  Timing is not a
test: the script fails (exit 1) only when a scenario fails to run.

    python benchmarks/bench.py [--modules 1000 100] [--repeat 5] [--quick]
                               [--server auto|nginx|builtin] [--markdown]
                               [--baseline CHECKOUT] [--no-bundle]

With ``--scaling`` and/or ``--wan`` it prints the scaling tables of issue #14
instead (benchmarks/scaling.py, benchmarks/wan.py):

    python benchmarks/bench.py --scaling [--wan] [--scaling-files 100 1000 10000 50000]
                               [--repeat 5] [--quick] [--keep DIR] [--markdown]
                               [--baseline CHECKOUT]

With ``--scaling --baseline CHECKOUT`` the loopback table runs first with that
checkout (its ``sign`` signs the trees, its library imports them), then with
this one: before and after, in one run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The benchmarks package and the tests' nginx harness come from the checkout; this
# script's own directory is not a place to import from (its modules are the package's).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.insert(0, str(REPO))

from benchmarks.common import BenchError, Workspace, log, make_tls  # noqa: E402
from benchmarks.imports import Extras, measure_imports, report, summarize  # noqa: E402
from benchmarks.measures import measure_import_time, measure_verification  # noqa: E402
from benchmarks.runs import loopback, wan_inner, wan_outer  # noqa: E402
from benchmarks.scaling import DEFAULT_SIZES, QUICK_SIZES, signing_note  # noqa: E402
from benchmarks.scaling_trees import Trees, prepare  # noqa: E402
from benchmarks.servers import serve  # noqa: E402
from benchmarks.trees import build_trees, count_files, sign_trees  # noqa: E402

QUICK_MODULES = 20

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
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="the scaling table instead (issue #14): trees of packages of 50 small "
        "modules, cold/warm imports of one module, one package, everything",
    )
    parser.add_argument(
        "--scaling-files",
        type=int,
        nargs="+",
        metavar="N",
        help="scaling tree sizes in files (default: 100 1000 10000 50000; --quick: 100 1000)",
    )
    parser.add_argument(
        "--wan",
        action="store_true",
        help="the scaling table over a 40 ms / 50 Mbit/s link (needs root, unshare, tc); "
        "skipped, with the reason, where they are unavailable",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        type=Path,
        help="keep the signed scaling trees in DIR and reuse them in later runs",
    )
    parser.add_argument("--wan-inner", metavar="DIR", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    default_files = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.scaling_files = sorted(set(args.scaling_files or default_files))
    if min(args.scaling_files) < 1:
        parser.error("--scaling-files must be positive")
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


def scaling_benchmark(ws: Workspace, args: argparse.Namespace) -> str:
    """--scaling and/or --wan: the trees (signed here, or kept), then each table."""
    make_tls(ws)
    if args.wan_inner is not None:
        return wan_inner(ws, args.wan_inner, args.scaling_files, args.repeat, args.markdown)
    work = args.keep.resolve() if args.keep is not None else ws.root / "scaling"
    work.mkdir(parents=True, exist_ok=True)
    trees = Trees(work)
    prepare(trees, args.scaling_files)
    parts = []
    if args.scaling and ws.baseline_path is not None:
        # Before and after in one run: the same trees signed and imported by
        # the --baseline checkout, then by this one.
        before = Trees(work / "baseline", library=ws.baseline_path)
        prepare(before, args.scaling_files)
        parts.append(loopback(ws, before, args.scaling_files, args.repeat, args.markdown))
        parts.append(signing_note(before))
    if args.scaling:
        parts.append(loopback(ws, trees, args.scaling_files, args.repeat, args.markdown))
    if args.wan:
        parts.append(wan_outer(work, args.scaling_files, args.repeat, args.markdown))
    parts.append(signing_note(trees))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    started = time.monotonic()
    lib = library_path()
    try:
        with tempfile.TemporaryDirectory(prefix="secure-urlimport-bench-") as tmp:
            baseline = None if args.baseline is None else str(args.baseline.resolve())
            workspace = Workspace(Path(tmp), library_path=lib, baseline_path=baseline)
            scaling = args.scaling or args.wan or args.wan_inner is not None
            table = (scaling_benchmark if scaling else benchmark)(workspace, args)
    except BenchError as exc:
        print(f"benchmark FAILED: {exc}", file=sys.stderr)
        return 1
    print(table)
    log.info("finished in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
