"""The --scaling and --wan runs: the signed trees, loopback, and the WAN re-run.

The outer benchmark prepares the trees (``--keep DIR`` keeps them between runs),
runs the loopback suite, then runs itself again as ``unshare -n bench.py
--wan-inner DIR`` for the WAN suite and prints the table that run prints.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .common import REPO, BenchError, Workspace, log
from .scaling import BIG_TREE, BIG_TREE_ALL_RUNS, Link, Suite, scaling_table
from .scaling_trees import Trees, prepare
from .servers import logging_nginx


def header(title: str, server: str, repeat: int, sizes: Sequence[int]) -> str:
    big = (
        f" (cold-all at {BIG_TREE:,}+ files: {min(repeat, BIG_TREE_ALL_RUNS)})"
        if max(sizes) >= BIG_TREE and repeat > BIG_TREE_ALL_RUNS
        else ""
    )
    return (
        f"{title} — Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.platform()}; {server}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; median of {repeat} run(s){big}"
    )


def loopback(ws: Workspace, trees: Trees, sizes: Sequence[int], repeat: int, md: bool) -> str:
    with logging_nginx(
        ws.root / "nginx-scaling",
        trees.www,
        certfile=ws.certfile,
        keyfile=ws.keyfile,
        cafile=ws.cafile,
    ) as server:
        link = Link(server.url, f"{server.description} at {server.url} (loopback)")
        results = Suite(ws, trees, server, link, sizes).run(repeat)
    title = "scaling (issue #14), loopback" + (
        f", BEFORE: the library of {trees.library}" if trees.library else ""
    )
    return "\n\n".join(
        [header(title, link.description, repeat, sizes), scaling_table(results, trees, md)]
    )


def wan_outer(work: Path, sizes: Sequence[int], repeat: int, md: bool) -> str:
    """Run the WAN suite in a network namespace of its own; its table, or why it was skipped."""
    from .wan import unavailable

    reason = unavailable()
    if reason is not None:
        log.warning("WAN run skipped: %s", reason)
        return f"WAN run skipped: {reason}"
    command = [
        "unshare",
        "-n",
        sys.executable,
        str(REPO / "benchmarks" / "bench.py"),
        "--wan-inner",
        str(work),
        "--repeat",
        str(repeat),
        "--scaling-files",
        *map(str, sizes),
        *(["--markdown"] if md else []),
    ]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BenchError(f"the WAN run failed (exit {result.returncode}); see its output above")
    return result.stdout.strip()


def wan_inner(ws: Workspace, work: Path, sizes: Sequence[int], repeat: int, md: bool) -> str:
    from .wan import inner

    trees = Trees(work)
    prepare(trees, sizes)  # signed by the outer run: only checks them
    description, results = inner(ws, trees, sizes, repeat)
    title = "scaling (issue #14), WAN"
    return "\n\n".join(
        [header(title, description, repeat, sizes), scaling_table(results, trees, md)]
    )
