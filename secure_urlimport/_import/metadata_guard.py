"""Keeps the standard ``MetadataPathFinder`` off the local disk for URL entries.

``MetadataPathFinder`` (behind ``PathFinder`` on ``sys.meta_path``) ignores
path hooks: it reads the ``sys.path`` entry ``https://host/tree`` as the
*local relative* directory ``./https:/host/tree``, where anyone who can write
the working directory could plant a ``.dist-info`` with the version and entry
points of their choosing.  While the library's path hook is in place,
``MetadataPathFinder.find_distributions`` is wrapped: URL entries are answered
by the hook's path-entry finders (verified metadata, distributions.py), never
from disk, and runs of local entries are passed to the original unchanged, in
``context.path`` order, so which distribution wins is decided as before.

Kept apart from distributions.py so that installing the hook does not import
``importlib.metadata`` (a few milliseconds); the guard goes in when a finder
of ours is first asked for distributions, or at once if it is imported already.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import forksafe

if TYPE_CHECKING:
    from importlib.metadata import Distribution, DistributionFinder

__all__ = ["ensure_guard", "use_hook"]

PathHook = Callable[[str], Any]

_lock = forksafe.Lock()  # guards the swap below; held for no I/O and no import
_hook: PathHook | None = None
#: The class wrapped and its own classmethod, while the guard is in place.
_wrapped: tuple[type, Any] | None = None


def _is_url(entry: object) -> bool:
    return isinstance(entry, str) and entry[:8].lower().startswith(("https://", "http://"))


def use_hook(hook: PathHook | None) -> None:
    """Set (or, with None, clear) the path hook whose finders answer URL entries.

    The guard is put in place now if ``importlib.metadata`` is imported, else
    by :func:`ensure_guard` when a finder of ours is first asked (they sit
    before ``PathFinder`` on ``sys.meta_path``), so that installing the hook
    never imports ``importlib.metadata`` itself.
    """
    global _hook
    _hook = hook
    if hook is None:
        _unguard()
    else:
        ensure_guard()


def ensure_guard() -> None:
    """Wrap ``MetadataPathFinder.find_distributions`` (once) while a hook is set."""
    global _wrapped
    metadata = sys.modules.get("importlib.metadata")
    if metadata is None:
        return  # nothing can ask it yet
    finder = metadata.MetadataPathFinder
    with _lock:
        if _hook is None or (_wrapped is not None and _wrapped[0] is finder):
            return
        _restore()  # a reloaded importlib.metadata: its old class is left alone
        _wrapped = (finder, finder.__dict__["find_distributions"])
        finder.find_distributions = classmethod(_guarded)


def _unguard() -> None:
    with _lock:
        _restore()


def _restore() -> None:
    global _wrapped
    if _wrapped is not None:
        finder, original = _wrapped
        finder.find_distributions = original  # type: ignore[attr-defined]
        _wrapped = None


def _original(cls: type) -> Any:
    """The wrapped class's own ``find_distributions``, as a function of (cls, context)."""
    wrapped = _wrapped
    if wrapped is None or wrapped[0] is not cls:  # unwrapped meanwhile: the class's own
        return cls.__dict__["find_distributions"].__func__
    return wrapped[1].__func__


def _guarded(
    cls: type, context: DistributionFinder.Context | None = None
) -> Iterable[Distribution]:
    """``MetadataPathFinder.find_distributions`` with URL entries answered by our
    path hook's finders, in ``context.path`` order; lazy, as the original."""
    from importlib.metadata import DistributionFinder

    if context is None:
        context = DistributionFinder.Context()
    path = list(context.path)
    if not any(_is_url(entry) for entry in path):
        return _original(cls)(cls, context)  # type: ignore[no-any-return]
    return itertools.chain.from_iterable(_runs(cls, context, path))


def _runs(
    cls: type, context: DistributionFinder.Context, path: Sequence[object]
) -> Iterator[Iterable[Distribution]]:
    """Runs of local entries go to the original finder; URL entries one by one to ours."""
    from importlib.metadata import DistributionFinder

    for is_url, run in itertools.groupby(path, key=_is_url):
        entries = list(run)
        if not is_url:
            local = DistributionFinder.Context(**{**vars(context), "path": entries})
            yield _original(cls)(cls, local)
            continue
        for entry in entries:
            yield _from_entry(str(entry), context)


def _from_entry(entry: str, context: DistributionFinder.Context) -> Iterable[Distribution]:
    """What the path-entry finder of URL *entry* finds; never the local disk."""
    finder = sys.path_importer_cache.get(entry)
    if getattr(finder, "find_distributions", None) is None:
        hook = _hook
        if hook is None:
            return ()  # the hook went away: a URL is still no local directory
        finder = hook(entry)  # the registry's hook: claims every URL, never raises
        sys.path_importer_cache.setdefault(entry, finder)
    found: Iterable[Distribution] = finder.find_distributions(context)  # type: ignore[union-attr]
    return found
