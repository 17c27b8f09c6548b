"""What every part of the benchmark shares: errors, the workspace, TLS, tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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


def tail(text: str, lines: int = 40) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])
