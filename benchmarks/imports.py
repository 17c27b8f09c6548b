"""The import table (issue #5): local, remote cold/warm and naive imports of one tree."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .children import Run, run_child
from .common import MIB, PRELOAD, Workspace, format_table, log
from .measures import ImportTime, Verification
from .servers import Server

SCENARIOS = (
    "local-source",
    "local-bytecode",
    "remote-cold",
    "remote-warm",
    "remote-fresh",
    "naive",
)
#: remote-fresh: a warm start within install(max_age=...) of the last
#: revalidation (issue #14): no request at all.
FRESH_MAX_AGE = 3600
BASELINE = "local-source"


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
        **({"max_age": FRESH_MAX_AGE} if scenario == "remote-fresh" else {}),
    }


def run_scenario(ws: Workspace, server: Server, scenario: str, modules: int, rep: int) -> Run:
    """One run; ``remote-cold@baseline`` is ``remote-cold`` with the --baseline checkout."""
    label = f"{scenario} ({modules} modules, run {rep + 1})"
    kind, _, variant = scenario.partition("@")
    spec = child_spec(ws, server, kind, modules)
    if kind in ("remote-warm", "remote-fresh"):
        cache = ws.root / "cache" / f"{kind}-{variant}-{modules}-{rep}"
        shutil.copytree(warm_seed(ws, modules, variant, fresh=kind == "remote-fresh"), cache)
    else:
        cache = ws.fresh_cache(f"{kind}-{variant}-{modules}-{rep}")
    flags = ["-B"] if kind == "local-source" else []
    return run_child(
        ws, server, label, spec=spec, cache_dir=cache, flags=flags, baseline=bool(variant)
    )


def warm_seed(ws: Workspace, modules: int, variant: str = "", *, fresh: bool = False) -> Path:
    return ws.root / "cache" / f"warm-seed-{variant}-{modules}{'-fresh' if fresh else ''}"


def seed_warm_cache(
    ws: Workspace, server: Server, modules: int, variant: str = "", *, fresh: bool = False
) -> None:
    """One untimed remote import, so the warm runs start from a populated cache
    dir; *fresh*: with max_age, which records the revalidation remote-fresh uses."""
    cache = warm_seed(ws, modules, variant, fresh=fresh)
    cache.mkdir(parents=True)
    spec = child_spec(ws, server, "remote-fresh" if fresh else "remote-cold", modules)
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
    # Not remote-fresh: a checkout from before issue #14 has no max_age.
    remote = ("remote-cold", "remote-warm")
    return (*SCENARIOS, *(f"{s}@baseline" for s in remote))


Results = dict[tuple[str, int], list[Run]]


def measure_imports(ws: Workspace, server: Server, sizes: Sequence[int], repeat: int) -> Results:
    """Every scenario for every size, interleaved so background load hits all alike."""
    for modules in sizes:
        seed_warm_cache(ws, server, modules)
        seed_warm_cache(ws, server, modules, fresh=True)
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

    def to_bytecode(scenario: str, modules: int) -> float | None:
        row, local = find_row(rows, scenario, modules), find_row(rows, "local-bytecode", modules)
        return None if row is None or local is None else row.median_ms / local.median_ms

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
            "warm within max_age, 1000 modules, x local-bytecode",
            to_bytecode("remote-fresh", 1000),
            "≤ 1.00x",
            lambda x: x <= 1.0,
            "{:.2f}x",
        ),
        (
            "warm within max_age, 100 modules, x local-bytecode",
            to_bytecode("remote-fresh", 100),
            "≤ 1.00x",
            lambda x: x <= 1.0,
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
    return format_table(["target (issues #5, #14)", "goal", "measured", "met"], cells, markdown)


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
