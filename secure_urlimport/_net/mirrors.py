"""Mirrors: the same signed tree at several URLs, tried in turn.

Every byte is verified against pinned keys, so a mirror needs no trust: one
that is down, slow, answers 5xx, or serves bad signatures or an older release
fails verification (or the download) and the next one is asked.  An import
fails only when no mirror serves valid content, and then the error lists
what each one did.  The first URL is the tree's identity -- modules'
``__file__``, the rollback records and the pin all use it -- whichever
mirror served the bytes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import SecureImportError, VerificationError
from .deadline import source_budget

__all__ = ["Mirrors"]

log = logging.getLogger("secure_urlimport")

T = TypeVar("T")


class Mirrors:
    """Base URLs of one tree, the one that worked last tried first."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = tuple(dict.fromkeys(urls))  # order kept, duplicates dropped
        if not self.urls:
            raise ValueError("at least one URL is needed")
        self.active = self.urls[0]

    def __repr__(self) -> str:
        return f"Mirrors({list(self.urls)!r}, active={self.active!r})"

    def in_order(self) -> list[str]:
        return [self.active, *(url for url in self.urls if url != self.active)]

    def first_success(self, attempt: Callable[[str], T], *, what: str) -> T:
        """``attempt(base)`` for each mirror until one returns; raise if none does.

        A mirror's failure is logged with its reason and the next one asked; the
        one that succeeds is asked first from then on.
        """
        failures: list[tuple[str, SecureImportError]] = []
        for base in self.in_order():
            try:
                with source_budget(base):  # each mirror gets the step's full bound
                    result = attempt(base)
            except SecureImportError as exc:
                failures.append((base, exc))
                if len(self.urls) > 1:
                    log.warning("mirror %s skipped for %s: %s", base, what, exc)
                continue
            if base != self.active:
                log.info("using mirror %s from now on (for %s)", base, what)
                self.active = base
            return result
        raise _every_mirror_failed(failures)


def _every_mirror_failed(failures: list[tuple[str, SecureImportError]]) -> SecureImportError:
    """One error for all: the first mirror's, or the first verification failure
    (bad content matters more than a mirror being down), with what every
    other mirror did."""
    if len(failures) == 1:
        return failures[0][1]
    main = next((i for i, (_, exc) in enumerate(failures) if isinstance(exc, VerificationError)), 0)
    first = failures[main][1]
    combined = copy.copy(first)
    others = "; ".join(f"{base}: {exc}" for i, (base, exc) in enumerate(failures) if i != main)
    combined.msg = f"{first.msg} (no mirror served valid content either -- {others})"
    combined.args = (combined.msg,)
    return combined.with_traceback(None)
