"""Schedulers: where background work (write-back flushing) runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Handle", "Scheduler", "ThreadScheduler"]

log = logging.getLogger("tiercache")


class Handle(Protocol):
    """A repeating job; ``cancel()`` stops it."""

    def cancel(self) -> None: ...


@runtime_checkable
class Scheduler(Protocol):
    """Runs a function repeatedly in the background."""

    def every(self, interval: float, fn: Callable[[], object], name: str) -> Handle:
        """Call ``fn`` every ``interval`` seconds until the handle is cancelled."""
        ...


class _ThreadJob:
    def __init__(self, interval: float, fn: Callable[[], object], name: str) -> None:
        self._interval = interval
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except Exception:  # a failing job must not die: it retries next time
                log.exception("background job %s failed", self._thread.name)

    def cancel(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class ThreadScheduler:
    """The default: one daemon thread per job, waking every ``interval`` seconds."""

    def every(self, interval: float, fn: Callable[[], object], name: str) -> Handle:
        return _ThreadJob(interval, fn, name)
