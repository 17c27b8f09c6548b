"""How the CI gate prints a report: text lines, or GitHub workflow commands.

docs/ci.md documents both formats (and the JSON document, ``Report.to_json``);
keep them in step.

- text: ``KIND: PATH: MESSAGE`` per problem, then one summary line.  Control
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

from .audit import Problem, Report
from .errors import shown

__all__ = [
    "escape_data",
    "escape_property",
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


def summary_line(report: Report) -> str:
    return one_line(f"{PROG} verify: {report.summary()}")


def text_lines(report: Report) -> list[str]:
    lines = [one_line(f"{p.kind}: {p.path}: {p.message}") for p in report.problems]
    return [*lines, summary_line(report)]


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


def github_annotation(problem: Problem, *, file: str | None = None, url: str | None = None) -> str:
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
    for problem in report.problems:
        if root is not None:
            lines.append(github_annotation(problem, file=workspace_path(root / problem.path)))
        else:
            url = file_url(problem.path) if file_url is not None else report.target
            lines.append(github_annotation(problem, url=url))
    return [*lines, summary_line(report)]
