"""What the CI gate (``verify``) and ``sign --check`` find: one model for both.

A :class:`Finding` is one thing wrong with a tree: its kind (one of the
documented kinds of the command that found it), the path in the tree it is
about and a message for people.  :class:`Findings` keeps them in the order
found and counts them by kind for the summary line.  gate/output.py renders them
(text, GitHub annotations, JSON).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["Finding", "Findings", "plural"]


@dataclass(frozen=True)
class Finding:
    """One problem of a tree: *kind*, the tree-relative *path*, a *message* for people."""

    kind: str
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "message": self.message}


@dataclass
class Findings:
    """The findings of one run, in the order found; *kinds* are the documented kinds."""

    kinds: Mapping[str, str]
    items: list[Finding] = field(default_factory=list)

    def add(self, kind: str, path: str, message: str) -> Finding:
        if kind not in self.kinds:
            raise ValueError(f"{kind!r} is not a documented kind ({', '.join(self.kinds)})")
        finding = Finding(kind, path, message)
        self.items.append(finding)
        return finding

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def counts(self) -> str:
        """``1 tampered, 2 unsigned``: how many of each kind, sorted by kind."""
        counts = Counter(finding.kind for finding in self.items)
        return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))

    def summary(self, noun: str) -> str:
        """``3 problems (1 tampered, 2 unsigned)``, or ``0 problems``."""
        detail = self.counts()
        return plural(len(self.items), noun) + (f" ({detail})" if detail else "")


def plural(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
