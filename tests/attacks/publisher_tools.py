"""Running the publisher's tools as a hostile contributor's checkout meets them.

Every command runs in its own interpreter with a timeout: a planted FIFO or
``/dev/zero`` must end in a clear error, and a hang must fail the test, not
stall the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIGN_TREE_SCRIPT = REPO / "scripts" / "sign_tree.py"
#: Long enough for a loaded machine, short enough that a hang fails quickly.
TIMEOUT = 60


def cli(
    *args: str | Path,
    cwd: Path | None = None,
    script: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``secure-urlimport ARGS`` (or ``scripts/sign_tree.py ARGS`` for ``sign``)."""
    env = {k: v for k, v in os.environ.items() if k != "SECURE_URLIMPORT_PASSPHRASE"}
    env["PYTHONPATH"] = str(REPO)
    words = [str(a) for a in args]
    if script:
        assert words[0] == "sign"
        command = [sys.executable, str(SIGN_TREE_SCRIPT), *words[1:]]
    else:
        command = [sys.executable, "-m", "secure_urlimport", *words]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
        preexec_fn=preexec_fn,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1 with the project's one-line error (or gate report), never a traceback."""
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out
    return out


def keygen(prefix: Path) -> tuple[Path, Path]:
    """An unencrypted key pair made by the real CLI: (PREFIX.key, PREFIX.pub)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    result = cli("keygen", prefix, "--unencrypted")
    assert result.returncode == 0, result.stderr
    return prefix.with_suffix(".key"), prefix.with_suffix(".pub")


def set_manifest_version(manifest: Path, version: int) -> None:
    """The contributor's edit: one number in the committed manifest, nothing else."""
    data = manifest.read_bytes()
    edited = re.sub(rb'"version": [0-9]+', b'"version": %d' % version, data, count=1)
    assert edited != data
    manifest.write_bytes(edited)
