"""The invalidation bus: cross-process invalidations over a Redis stream, with gap detection."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from ..errors import TierUnavailable
from .connection import REDIS_ERRORS, tier_error

__all__ = ["STREAM_MAXLEN", "Bus", "Message"]

log = logging.getLogger("tiercache.bus")

STREAM_MAXLEN = 100_000
"""Approximate number of entries the stream keeps; older ones are trimmed."""

Message = tuple[str, str, list[str]]
"""What ``on_message`` receives: ``(namespace, kind, keys)``.

Kinds: ``"keys"`` (these tier keys changed), ``"all"`` (the whole
namespace), ``"version"`` (a Versioned namespace's new version, the one
key). On the stream each entry also names its origin, so a bus ignores
its own; ``"hb"`` (heartbeat) and ``"wake"`` (stop) entries never reach
``on_message``.
"""


class Bus:
    """Publishes invalidations to, and applies them from, one Redis stream.

    Pub/sub loses what is published while a subscriber reconnects, and says
    nothing about it (redis-py re-subscribes silently). A stream does not:
    the listener reads from the last entry id it saw, so a dropped or killed
    connection resumes where it stopped. What a stream can still lose
    (entries trimmed past ``maxlen``, a Redis restarted empty) shows as the
    last seen id being gone, and the listener then reports a gap: the cache
    drops the L1 copies it may no longer trust. A heartbeat that the bus
    writes and reads back proves the whole path works; while it is overdue
    the bus reports itself unhealthy. A cache with no L1 publishes without
    starting the listener.

    Args:
        client: the client used to publish (a cache tier's).
        listen_client: a client of its own for the blocking reads, with a
            socket timeout longer than ``block``.
        stream: the stream's key.
        on_message: called with ``(namespace, kind, tier keys)`` for each
            invalidation published by another bus.
        on_gap: called with a reason when invalidations may have been missed
            (reconnect after a lost stream position, trimmed entries, a
            heartbeat overdue, or back after being overdue); the cache drops
            its L1 copies.
        on_tick: called after each successful read of the stream (Redis
            answers): the cache replays purges that failed while it did not.
        available: returns False while the tier's circuit breaker is open:
            publish then fails at once instead of waiting for a timeout.
        heartbeat: seconds between heartbeats.
        max_silence: seconds without seeing our own heartbeat before the bus
            calls ``on_gap`` and reports itself unhealthy.
        block: seconds one blocking read waits for new entries.
        maxlen: entries the stream keeps, about (older ones are trimmed).
        clock: monotonic seconds, for the heartbeat's timing.
    """

    def __init__(
        self,
        client: Any,
        listen_client: Any,
        stream: str,
        *,
        on_message: Callable[[str, str, list[str]], None],
        on_gap: Callable[[str], None],
        on_tick: Callable[[], None] = lambda: None,
        available: Callable[[], bool] = lambda: True,
        heartbeat: float = 0.25,
        max_silence: float = 1.0,
        block: float = 0.5,
        maxlen: int = STREAM_MAXLEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._listen = listen_client
        self.stream = stream
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._on_message = on_message
        self._on_gap = on_gap
        self._on_tick = on_tick
        self._available = available
        self._heartbeat = heartbeat
        self._max_silence = max_silence
        self._block_ms = max(1, int(block * 1000))
        self._maxlen = maxlen
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_id = b"0-0"
        self._last_beat_seen = clock()
        self._last_beat_sent = 0.0
        self._healthy = True
        self.gaps = 0
        self.published = 0
        self.received = 0

    @property
    def healthy(self) -> bool:
        """True while our own heartbeat comes back within ``max_silence``."""
        return self._healthy

    def start(self) -> None:
        """Take the current end of the stream as our position and start listening."""
        if self._thread is not None:
            return
        try:
            newest = self.client.xrevrange(self.stream, count=1)
            self._last_id = newest[0][0] if newest else b"0-0"
        except REDIS_ERRORS as exc:  # the listener will retry and report the gap
            log.warning("invalidation bus could not read %s: %s", self.stream, exc)
        self._last_beat_seen = self._clock()
        self._thread = threading.Thread(
            target=self._run, name=f"tiercache-bus-{self.origin}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the listener thread, waking its blocking read with an entry of our own."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self.client.xadd(self.stream, _encode(self.origin, "", "wake", ()),
                                 maxlen=self._maxlen, approximate=True)
            except REDIS_ERRORS:
                pass  # the read ends by its own timeout
            thread.join(timeout)
        try:
            self._listen.close()
        except REDIS_ERRORS:
            pass

    def entry(self, namespace: str, kind: str, keys: Sequence[str]) -> tuple[str, bytes, int]:
        """``(stream, message, maxlen)``: what ``publish`` would add, for a write script to add.

        A script that adds it in the same step as its write announces the
        change atomically with it (see ``RedisTier.journal_put``); whoever
        ran the script then calls ``announced()``, so ``published`` counts it.
        """
        return self.stream, _encode(self.origin, namespace, kind, keys)["m"], self._maxlen

    def announced(self) -> None:
        """Count an entry that a write script added (see ``entry``)."""
        self.published += 1

    def publish(self, namespace: str, kind: str, keys: Sequence[str]) -> None:
        """Announce an invalidation to every other process (one XADD).

        Raises:
            TierUnavailable: Redis did not answer, or the tier's breaker is
                open (the namespace remembers the change and degrades).
            TierError: Redis refused the entry.
        """
        if not self._available():
            raise TierUnavailable("invalidation bus skipped: Redis circuit open")
        try:
            self.client.xadd(self.stream, _encode(self.origin, namespace, kind, keys),
                             maxlen=self._maxlen, approximate=True)
        except REDIS_ERRORS as exc:
            raise tier_error(exc, "invalidation bus publish") from exc
        self.published += 1

    # -- the listener -------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._beat()
                batches = self._listen.xread(
                    {self.stream: self._last_id}, count=1000, block=self._block_ms
                )
                if failures:
                    failures = 0
                    self._check_position("reconnected")
                for _stream, entries in batches or ():
                    for entry_id, fields in entries:
                        self._last_id = entry_id
                        self._apply(fields)
                self._check_health()
                self._on_tick()
            except REDIS_ERRORS as exc:
                failures += 1
                if failures == 1:
                    log.warning("invalidation bus lost its connection: %s", exc)
                self._check_health()
                # Bounded backoff, cut short by stop().
                # Short: once Redis is back, stale copies wait for this loop's replay.
                self._stop.wait(min(0.05 * 2 ** min(failures, 5), 0.25))
            except Exception:  # never let the listener die silently
                failures += 1
                if failures == 1:
                    log.exception("invalidation bus listener error")
                # Whatever failed, nothing is heard: the heartbeat decides.
                self._check_health()
                self._stop.wait(min(0.05 * 2 ** min(failures, 5), 0.25))

    def _beat(self) -> None:
        now = self._clock()
        if now - self._last_beat_sent >= self._heartbeat:
            self._last_beat_sent = now
            self.client.xadd(self.stream, _encode(self.origin, "", "hb", ()),
                             maxlen=self._maxlen, approximate=True)

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        try:
            origin, namespace, kind, keys = msgpack.unpackb(fields[b"m"], raw=False)
        except Exception:  # noqa: BLE001 - another program's entry: not ours to act on
            return
        if kind == "hb":
            if origin == self.origin:
                self._last_beat_seen = self._clock()
            return
        if origin == self.origin or kind == "wake":
            return  # our own writes already updated our copies
        self._on_message(namespace, kind, keys)
        self.received += 1

    def _check_position(self, why: str) -> None:
        """After a reconnect: if our last id is gone, entries may be lost."""
        if self._last_id == b"0-0":
            return
        found = self._listen.xrange(self.stream, min=self._last_id, max=self._last_id, count=1)
        if not found:
            self._gap(
                f"{why}; stream position {self._last_id!r} is gone (trimmed or Redis restarted)"
            )
            newest = self._listen.xrevrange(self.stream, count=1)
            self._last_id = newest[0][0] if newest else b"0-0"

    def _check_health(self) -> None:
        silent = self._clock() - self._last_beat_seen
        if silent > self._max_silence:
            if self._healthy:
                self._healthy = False
                self._gap(f"no heartbeat for {silent:.2f}s")
        elif not self._healthy:
            self._healthy = True
            # Back: anything said while we were deaf may be lost to us.
            self._gap("heartbeat back")

    def _gap(self, why: str) -> None:
        self.gaps += 1
        log.warning("invalidation bus gap (%s): dropping L1 copies", why)
        self._on_gap(why)


def _encode(origin: str, namespace: str, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
    return {"m": msgpack.packb([origin, namespace, kind, list(keys)], use_bin_type=True)}
