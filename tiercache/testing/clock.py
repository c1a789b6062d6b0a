"""FakeClock: time that moves only when a test says so."""

from __future__ import annotations

import threading
from datetime import timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock for tests: call it for the time, ``advance()`` to move it.

    Pass it as ``Cache(clock=...)``; nothing patches :mod:`time`.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move time forward; returns the new reading."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._lock:
            self._now += step
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now})"
