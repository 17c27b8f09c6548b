"""In-process measurements: signature verification and ``import secure_urlimport``."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .children import child_env
from .common import BenchError, Workspace, tail

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
