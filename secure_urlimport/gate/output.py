"""How the CI gate and ``sign --check`` print their findings: text lines, or GitHub
workflow commands.

docs/ci.md documents both formats (and the JSON document, ``Report.to_json``);
keep them in step.

- text (``verify`` and ``sign --check``): ``KIND: PATH: MESSAGE`` per
  finding, then one summary line ``secure-urlimport COMMAND: SUMMARY``.  Control
  characters (a newline in a file name) are shown as escapes, so every
  problem is exactly one line.
- github: ``::error file=PATH,title=secure-urlimport KIND::MESSAGE`` per
  problem, escaped as the workflow-command syntax requires, then the same
  summary line as plain text.  For a directory, ``file=`` is the file's path
  relative to ``$GITHUB_WORKSPACE`` (else the working directory) so the
  annotation lands on the file; for an https tree there is no ``file=`` and
  the message starts with the file's URL.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import shown
from ..publish.findings import Finding, Findings

if TYPE_CHECKING:
    from .audit import Report

__all__ = [
    "Outcome",
    "escape_data",
    "escape_property",
    "finding_line",
    "github_annotation",
    "github_lines",
    "one_line",
    "summary_line",
    "text_lines",
    "workspace_path",
]

PROG = "secure-urlimport"


def one_line(text: str) -> str:
    """*text* with control and other unprintable characters as escapes (``\\n``, ``\\x1b``)."""
    return shown(text, limit=None)


class Outcome(Protocol):
    """What a command found: the gate's ``Report`` or ``sign --check``'s ``SignCheck``."""

    @property
    def command(self) -> str: ...

    @property
    def findings(self) -> Findings: ...

    def summary(self) -> str: ...


def summary_line(outcome: Outcome) -> str:
    """``secure-urlimport COMMAND: SUMMARY``, always the last line printed."""
    return one_line(f"{PROG} {outcome.command}: {outcome.summary()}")


def finding_line(finding: Finding) -> str:
    """``KIND: PATH: MESSAGE`` on exactly one line."""
    return one_line(f"{finding.kind}: {finding.path}: {finding.message}")


def text_lines(outcome: Outcome) -> list[str]:
    """One line per finding, then the summary line."""
    return [*map(finding_line, outcome.findings), summary_line(outcome)]


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ``:`` and ``,`` escaped."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workspace_path(path: Path) -> str:
    """*path* relative to ``$GITHUB_WORKSPACE`` (else the working directory), or absolute."""
    absolute = Path(os.path.abspath(path))
    base = Path(os.path.abspath(os.environ.get("GITHUB_WORKSPACE") or os.getcwd()))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return absolute.as_posix()


def github_annotation(problem: Finding, *, file: str | None = None, url: str | None = None) -> str:
    """``::error file=…,title=secure-urlimport KIND::MESSAGE`` for one problem."""
    properties = [] if file is None else [f"file={escape_property(file)}"]
    properties.append(f"title={escape_property(f'{PROG} {problem.kind}')}")
    message = problem.message
    if url is not None and url not in message:
        message = f"{url}: {message}"
    return f"::error {','.join(properties)}::{escape_data(message)}"


def github_lines(
    report: Report, *, root: Path | None = None, file_url: Callable[[str], str] | None = None
) -> list[str]:
    """Annotations for a directory (*root*) or an https tree (*file_url*), then the summary."""
    lines = []
    for problem in report.findings:
        if root is not None:
            lines.append(github_annotation(problem, file=workspace_path(root / problem.path)))
        else:
            url = file_url(problem.path) if file_url is not None else report.target
            lines.append(github_annotation(problem, url=url))
    return [*lines, summary_line(report)]
