"""The benchmark still runs (quick mode). Timing is not tested, only that it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import MACHINE_VARIABLES, REPO

SCENARIOS = ("local-source", "local-bytecode", "remote-cold", "remote-warm", "naive")


def test_benchmark_quick_mode_runs_every_scenario(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items()
           if name not in MACHINE_VARIABLES and not name.startswith("PYTHON")}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    for scenario in SCENARIOS:
        assert scenario in rows, result.stdout
    assert "server: " in result.stdout
    assert "µs/file" in result.stdout and "files/s" in result.stdout
