"""Downloading a package's modules in the background, ahead of their import.

Importing a package usually imports most of its modules next, one after the
other; fetching them one request at a time makes the import wait a round
trip per module.  When a package starts executing, :class:`Prefetcher` puts
its not-yet-cached modules on a small pool of daemon threads, which download
them over the fetcher's keep-alive connections.  Nothing is trusted here:
the loader takes the bytes from the :class:`Future` and verifies them as if
it had downloaded them itself.  A failed prefetch is not an error either;
the loader simply downloads the file again and reports that outcome.

The threads are daemons that never import anything (the transport is warmed
up before the first prefetch), so they cannot deadlock with the import
system or keep the interpreter alive at exit.

A forked child inherits the pool but none of its threads: it gets an empty
pool of its own (forksafe.py), or it would queue downloads that no thread
runs and wait for each one until the loader's deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future

from .. import forksafe

__all__ = ["Prefetcher"]

log = logging.getLogger("secure_urlimport")

Job = tuple[str, Callable[[], bytes]]  # (key, download)


class Prefetcher:
    """A bounded pool of download threads and the futures of what they fetch."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = forksafe.Lock()
        self._closed = False
        self._new_pool()
        forksafe.register(self)

    def _new_pool(self) -> None:
        self._futures: dict[str, Future[bytes]] = {}
        self._queue: queue.SimpleQueue[tuple[Future[bytes], Callable[[], bytes]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def _after_fork_in_child(self) -> None:
        # The inherited futures are dropped, not cancelled: cancelling takes
        # each future's lock, which a parent's worker may have held.  The loader
        # then finds no prefetch and downloads the file itself.
        self._new_pool()

    def __repr__(self) -> str:
        return f"<Prefetcher workers={self.workers} pending={len(self._futures)}>"

    def start(self, jobs: Iterable[Job]) -> int:
        """Queue the jobs whose key is not queued yet; return how many were."""
        started = 0
        with self._lock:
            if self._closed or self.workers < 1:
                return 0
            for key, download in jobs:
                if key in self._futures:
                    continue
                future: Future[bytes] = Future()
                self._futures[key] = future
                self._queue.put((future, download))
                started += 1
            while len(self._threads) < min(self.workers, len(self._futures)):
                thread = threading.Thread(
                    target=self._work, name="secure_urlimport-prefetch", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return started

    def take(self, key: str) -> Future[bytes] | None:
        """The future of a queued download of *key*, handed over once."""
        with self._lock:
            return self._futures.pop(key, None)

    def scheduled(self, key: str) -> bool:
        return key in self._futures

    def close(self) -> None:
        """Drop queued downloads; running ones finish and are discarded."""
        with self._lock:
            self._closed = True
            for future in self._futures.values():
                future.cancel()
            self._futures.clear()
            for _ in self._threads:
                self._queue.put(None)
            self._threads.clear()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, download = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(download())
            except BaseException as exc:  # handed to the loader, which re-downloads
                future.set_exception(exc)
