"""The in-process origin shield of the HTTP middlewares: one app call per missed key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._http_fields import Key

__all__ = ["Flights"]

E = TypeVar("E")


class Flights(Generic[E]):
    """In-process origin shield: the first miss of a key calls the app, the others wait for it.

    A waiter then reads the cache again: a cacheable answer is there, and an
    uncacheable one sends each waiter to the app itself (a response that
    must not be stored must not be shared either). ``event`` makes what the
    waiters wait on: a ``threading.Event`` (WSGI) or an ``asyncio.Event`` (ASGI).
    """

    def __init__(self, event: Callable[[], E]) -> None:
        self._event = event
        self._lock = threading.Lock()
        self._running: dict[Key, E] = {}

    def lead(self, key: Key) -> E | None:
        """None if this caller leads (and must call ``land``), else the event to wait on."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                self._running[key] = self._event()
            return running

    def land(self, key: Key) -> E | None:
        """The leader is done: the event to set, so the waiters read the cache again."""
        with self._lock:
            return self._running.pop(key, None)
