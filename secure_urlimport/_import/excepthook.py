"""Uncaught-exception tracebacks that show remote source lines on Python 3.11 and 3.12.

Before 3.13 the interpreter prints uncaught exceptions with C code that reads
source lines only from local files, so a traceback through a remote module
(or a zipimported one) shows no code.  The ``traceback`` module asks
``linecache``, which asks the module's loader, and prints the same layout.
So while trees are installed, the *default* hooks are swapped for ones that
use it; hooks someone else installed (IPython, a logging setup) are left alone.
"""

from __future__ import annotations

import sys
import threading
import traceback
from types import TracebackType

__all__ = ["install_excepthooks", "remove_excepthooks"]

NEEDED = sys.version_info < (3, 13)


def _print_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    traceback.print_exception(exc_type, exc, tb, file=sys.stderr)


def _print_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # as the default hook does
    name = args.thread.name if args.thread is not None else threading.get_ident()
    print(f"Exception in thread {name}:", file=sys.stderr, flush=True)
    traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=sys.stderr)


def install_excepthooks() -> None:
    if not NEEDED:
        return
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _print_uncaught
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _print_uncaught_in_thread


def remove_excepthooks() -> None:
    if sys.excepthook is _print_uncaught:
        sys.excepthook = sys.__excepthook__
    if threading.excepthook is _print_uncaught_in_thread:
        threading.excepthook = threading.__excepthook__
