"""The one rate-limited warning: an outage writes a line per interval and topic, not per call."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError

__all__ = ["DEFAULT_INTERVAL", "RateLimitedWarning"]

DEFAULT_INTERVAL = 10.0
"""Seconds between two warnings of one topic."""


class RateLimitedWarning:
    """Logs a warning at most once per ``interval`` seconds per topic; counts the rest.

    The first warning of a topic is logged at once. Later ones within
    ``interval`` of the last logged one are counted, and the next logged
    warning of that topic says how many were suppressed. Topics are
    independent: a failing tier does not silence a failing bus. Thread-safe.

    Args:
        logger: Where the warnings go (``logging.getLogger("tiercache")`` by default).
        interval: Seconds between two warnings of one topic; 0 logs every one.
        clock: Monotonic seconds; tests pass a fake clock.

    Raises:
        ConfigurationError: ``interval`` is negative, NaN or infinite.
    """

    __slots__ = ("_clock", "_last", "_lock", "_logger", "_suppressed", "interval")

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise ConfigurationError(f"interval must be a number of seconds, got {interval!r}")
        if not 0 <= interval < math.inf:  # NaN fails too
            raise ConfigurationError(f"interval must be finite seconds >= 0, got {interval!r}")
        self.interval = float(interval)
        self._logger = logger if logger is not None else logging.getLogger("tiercache")
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, topic: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` under ``topic`` unless one was logged within the interval.

        Returns:
            True if the warning was logged, False if it was counted as suppressed.
        """
        now = self._clock()
        with self._lock:
            last = self._last.get(topic)
            if last is not None and now - last < self.interval:
                self._suppressed[topic] = self._suppressed.get(topic, 0) + 1
                return False
            self._last[topic] = now
            suppressed = self._suppressed.pop(topic, 0)
        if suppressed:
            # Appended after formatting: a "%" in the message's arguments stays literal.
            self._logger.warning("%s (%d similar suppressed)", message % args if args else message,
                                 suppressed)
        else:
            self._logger.warning(message, *args)
        return True
