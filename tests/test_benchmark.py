"""The benchmark still runs (quick mode). Timing is not tested, only that it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MACHINE_VARIABLES, REPO
from nginx import REQUIRE_ENV, find_nginx

SCENARIOS = (
    "local-source",
    "local-bytecode",
    "remote-cold",
    "remote-warm",
    "remote-fresh",
    "naive",
)


def bench(tmp_path: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in MACHINE_VARIABLES and not name.startswith("PYTHON")
    }
    env["TMPDIR"] = str(tmp_path)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )


def test_benchmark_quick_mode_runs_every_scenario(tmp_path: Path) -> None:
    result = bench(tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    for scenario in SCENARIOS:
        assert scenario in rows, result.stdout
    assert "server: " in result.stdout
    assert "µs/file" in result.stdout and "files/s" in result.stdout


def test_a_baseline_checkout_runs_the_remote_scenarios_again_in_the_same_run(
    tmp_path: Path,
) -> None:
    result = bench(tmp_path, "--baseline", str(REPO))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"remote-cold@baseline", "remote-warm@baseline", "remote-cold"} <= rows


def test_a_baseline_that_is_not_a_checkout_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    result = bench(tmp_path, "--baseline", str(tmp_path))
    assert result.returncode == 2
    assert "no secure_urlimport package in that checkout" in result.stderr


SCALING = ("cold-one", "cold-package", "cold-all", "warm-1-changed", "warm-unchanged")


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_the_scaling_table_counts_requests_and_bytes_from_the_nginx_log(tmp_path: Path) -> None:
    if find_nginx() is None and not os.environ.get(REQUIRE_ENV):
        pytest.skip("the scaling table needs nginx")
    result = bench(tmp_path, "--scaling")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    found = {(row[0], row[1]): row for row in rows if len(row) > 2 and row[1] in SCALING}
    for files in ("102", "1,020"):
        for scenario in SCALING:
            assert (files, scenario) in found, result.stdout
    # Exact counts from nginx's access log (whatever the library's design).
    for row in found.values():
        assert number(row[3]) >= 1 and number(row[4]) > 0, row
    warm, cold = found["1,020", "warm-unchanged"], found["1,020", "cold-all"]
    assert number(warm[4]) < number(cold[4])
    assert "signing (sign_tree" in result.stdout


def test_the_wan_run_runs_or_says_why_not(tmp_path: Path) -> None:
    if find_nginx() is None and not os.environ.get(REQUIRE_ENV):
        pytest.skip("the WAN table needs nginx")
    result = bench(tmp_path, "--wan", "--scaling-files", "100")
    assert result.returncode == 0, result.stderr
    if "WAN run skipped: " in result.stdout:  # not root, no unshare/tc: the reason is given
        return
    assert "scaling (issue #14), WAN" in result.stdout
    assert "RTT" in result.stdout and "Mbit/s" in result.stdout
    rows = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("  102 ")}
    assert set(SCALING) <= rows, result.stdout


def test_without_unshare_the_wan_run_is_skipped_with_the_reason(tmp_path: Path) -> None:
    result = bench(tmp_path, "--wan", "--scaling-files", "100", path=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "WAN run skipped: unshare, ip, tc not found" in result.stdout
