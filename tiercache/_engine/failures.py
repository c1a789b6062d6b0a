"""Failure handling: tier calls that degrade, purges remembered while a shared tier is away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import TierError
from ..tiers.base import TierEntry
from .ops import Blocking, Op, Plan, run
from .state import State

__all__ = ["MAX_REMEMBERED_PURGES", "Failures"]

log = logging.getLogger("tiercache")

MAX_REMEMBERED_PURGES = 100_000
"""Keys a namespace remembers to purge from a tier that is away; past it, all of them."""


class Failures:
    """Every tier call of the paths, and what a failed one leaves to do.

    A tier failure is counted, logged (rate-limited) and read around, or
    re-raised under ``on_tier_error="raise"``. A shared tier that could not
    drop keys (Redis down) may still hold their old copies: the keys are
    remembered, then dropped and announced again as soon as it answers.
    An announcement that could not be sent is remembered the same way.
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self.purges: dict[int, set[str] | None] = {}
        self.lock = threading.Lock()
        self.purges_replayed = 0
        self.bus_errors = 0

    # -- tier calls ---------------------------------------------------------

    def call(self, t: int, op: Op[Any], what: str) -> Plan[bool]:
        """One operation on tier ``t``; False if it failed (counted and logged)."""
        try:
            yield op
        except TierError as exc:
            self.tier_failed(t, what, exc)
            return False
        return True

    def result(self, t: int, op: Op[Any], what: str) -> Plan[Any]:
        """Like :meth:`call`, but returns the operation's result (None on failure)."""
        try:
            return (yield op)
        except TierError as exc:
            self.tier_failed(t, what, exc)
            return None

    def set(self, t: int, entries: list[TierEntry], now: float) -> Plan[bool]:
        """Write entries into tier ``t``."""
        return self.call(t, self.state.views[t].set_many(entries, now), "set_many")

    def delete(self, t: int, tier_keys: list[str]) -> Plan[bool]:
        """Drop keys from tier ``t``; remembered if a shared tier could not."""
        view = self.state.views[t]
        done = yield from self.call(t, view.delete_many(tier_keys), "delete_many")
        if not done and view.shared:
            self.remember(t, tier_keys)
        return done

    def delete_prefix(self, t: int) -> Plan[bool]:
        """Drop the whole namespace from tier ``t``; remembered like :meth:`delete`."""
        view = self.state.views[t]
        done = yield from self.call(t, view.delete_prefix(self.state.base_prefix), "delete_prefix")
        if not done and view.shared:
            self.remember(t, None)
        return done

    def drop_local(self, t: int, tier_key: str) -> None:
        """Delete one key from in-process tier ``t`` now (outside a plan)."""
        try:
            self.state.tiers[t].delete_many([tier_key])
        except TierError as exc:
            self.tier_failed(t, "delete_many", exc)

    def tier_failed(self, t: int, what: str, exc: TierError) -> None:
        """Count and log a tier failure; re-raise it under ``on_tier_error="raise"``."""
        state = self.state
        state.tier_stats[t].errors += 1
        if state.on_tier_error == "raise":
            raise exc
        state.warn(f"tier{t}", f"{state.name}: tier L{t + 1} {what} failed, degrading: {exc}")

    def undecodable(self, t: int, tier_key: str, why: str) -> None:
        """Count (and log) bytes in tier ``t`` that we cannot decode: a miss."""
        state = self.state
        state.tier_stats[t].undecodable += 1
        state.warn(f"undecodable{t}", f"{state.name}: undecodable bytes at {tier_key!r} "
                   f"in L{t + 1} treated as a miss: {why}")

    # -- announcements ------------------------------------------------------

    def publish(self, kind: str, tier_keys: Sequence[str]) -> Plan[None]:
        """Tell the other processes (Purge and Versioned); remembered if the bus is away."""
        state = self.state
        bus = state.bus
        if bus is None or not state.config.invalidation.broadcast:
            return
        try:
            yield Blocking(bus.publish, (state.name, kind, list(tier_keys)))
        except TierError as exc:
            self.bus_errors += 1
            state.warn("bus", f"{state.name}: invalidation not announced yet: {exc}")
            # Other processes' L1 copies must still hear of it: announce it
            # again (with the drop) once Redis answers, like a failed purge.
            self.remember(self.shared_index(), None if kind != "keys" else list(tier_keys))

    def shared_index(self) -> int:
        """Index of the first shared (Redis) tier; the bus only exists when there is one."""
        return next(t for t, view in enumerate(self.state.views) if view.shared)

    # -- remembered purges --------------------------------------------------

    def remember(self, t: int, keys: Sequence[str] | None) -> None:
        """Drop ``keys`` (None: the whole namespace) from tier ``t`` once it answers."""
        with self.lock:
            known = self.purges.get(t, set())
            if keys is None or known is None or len(known) + len(keys) > MAX_REMEMBERED_PURGES:
                self.purges[t] = None  # too many, or all: purge the whole namespace
            else:
                known.update(keys)
                self.purges[t] = known

    def replay(self) -> Plan[None]:
        """Drop (and announce) what failed to be dropped while a shared tier was away."""
        with self.lock:
            purges, self.purges = self.purges, {}
        for t, keys in purges.items():
            if keys is None:
                done = yield from self.delete_prefix(t)
                if done:
                    yield from self.publish("all", ())
            else:
                ordered = sorted(keys)
                done = yield from self.delete(t, ordered)
                if done:
                    yield from self.publish("keys", ordered)
            if done:
                self.purges_replayed += 1

    def replay_now(self) -> None:
        """Replay remembered purges now (from the bus thread, once Redis answers)."""
        if not self.purges:
            return
        try:
            run(self.replay())
        except Exception:  # the caller is a background thread; the next operation retries
            log.exception("%s: replaying purges failed", self.state.name)

    def pending(self) -> int:
        """Keys remembered (a whole-namespace purge counts one)."""
        return sum(len(keys) if keys is not None else 1 for keys in self.purges.values())
