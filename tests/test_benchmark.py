"""The benchmark still runs (quick mode). Timing is not tested, only that it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import MACHINE_VARIABLES, REPO

SCENARIOS = ("local-source", "local-bytecode", "remote-cold", "remote-warm", "naive")


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in MACHINE_VARIABLES and not name.startswith("PYTHON")
    }
    env["TMPDIR"] = str(tmp_path)
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
