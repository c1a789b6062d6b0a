"""The engine of one namespace: its parts composed, and the plans the facades run."""

from __future__ import annotations

import copy as copy_module
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._types import MISSING, Clock, Key
from ..errors import StoreError
from ..policies import DeadLetters
from ..scheduler import Scheduler
from ..stores.base import Store
from ..tiers.base import Tier
from .common import NOTHING
from .failures import Failures
from .fast import FastPaths, select
from .ops import MaybeAsync, Op, Plan, Sleep
from .read import LoadOp, Reader
from .state import NamespaceConfig, State
from .write import Writer

__all__ = ["Engine", "Loader", "loader_op"]

Loader = Callable[[list[Key]], Mapping[Key, Any]]


class Engine:
    """One namespace's engine: state, failure handling, the read and write sides, shortcuts.

    Each part has one job and holds references to the parts it uses; none
    inherits from another. The facades (:class:`~tiercache.Namespace`,
    :class:`~tiercache.AsyncNamespace`) validate nothing themselves: they
    ask for a plan here and run it with their driver, or call a shortcut
    of :attr:`fast`. This is also the named internal API ``cached()`` and
    ``Cache`` use (``peek``, ``get_or_load``, ``set_plan``, ...).
    """

    def __init__(
        self,
        name: str,
        *,
        prefix: str,
        tiers: Sequence[Tier],
        store: Store | None,
        config: NamespaceConfig,
        clock: Clock,
        scheduler: Scheduler,
        bus: Any,
        max_staleness: float,
        on_tier_error: str,
        wall_clock: Clock,
        log_interval: float,
    ) -> None:
        self.state = State(
            name, prefix=prefix, tiers=tiers, store=store, clock=clock, scheduler=scheduler,
            bus=bus, max_staleness=max_staleness, on_tier_error=on_tier_error,
            wall_clock=wall_clock, log_interval=log_interval,
        )
        self.failures = Failures(self.state)
        self.writer = Writer(self.state, self.failures)
        self.reader = Reader(self.state, self.failures, self.writer)
        self.apply(config, restart=True)

    def apply(self, config: NamespaceConfig, restart: bool) -> None:
        """Take ``config`` (starting its policy's run if ``restart``), and choose the shortcuts."""
        state = self.state
        state.apply(config)
        if restart:
            state.run = state.policy.start(self.writer, state.scheduler)
        # Chosen here, once per configuration: never per call, never by
        # rebinding a facade's methods.
        self.fast: FastPaths = select(self)

    # -- reads --------------------------------------------------------------

    def get_plan(self, key: Key, default: Any, start: int = 0, lease: bool = True) -> Plan[Any]:
        """``get`` from tier ``start`` on (the tiers above it missed already)."""
        state = self.state
        found = yield from self.reader.read(
            [key], [state.tier_key(key)], state.clock(), None, start, lease)
        value = found.get(0, MISSING)
        return default if value is MISSING else value

    def get_copy_plan(self, key: Key, default: Any) -> Plan[Any]:
        """``get`` from L1 on, the answer deep-copied under ``copy=``."""
        value = yield from self.get_plan(key, MISSING)
        if value is MISSING:
            return default
        return copy_module.deepcopy(value) if self.state.config.copy else value

    def unique(self, keys: Iterable[Key]) -> tuple[list[Key], list[str]]:
        """Validate every key, then drop repeats by canonical form (so 1 and True never merge)."""
        seen: dict[str, Key] = {}
        encode = self.state.encode_key
        for key in keys:
            seen.setdefault(encode(key), key)
        return list(seen.values()), list(seen)

    def get_many_plan(self, keys: Iterable[Key], loader: Loader | None) -> Plan[dict[Key, Any]]:
        """``get_many``; the keys are validated before the plan starts."""
        unique, tier_keys = self.unique(keys)
        return self._get_many(unique, tier_keys, None if loader is None else loader_op(loader))

    def _get_many(
        self, keys: list[Key], tier_keys: list[str], loader: LoadOp | None
    ) -> Plan[dict[Key, Any]]:
        found = yield from self.reader.read(keys, tier_keys, self.state.clock(), loader)
        get = found.get
        out = {
            key: value for i, key in enumerate(keys) if (value := get(i, MISSING)) is not MISSING
        }
        if self.state.config.copy:
            return {key: copy_module.deepcopy(value) for key, value in out.items()}
        return out

    def peek(self, key: Key) -> Any:
        """The L1 copy of ``key`` (MISSING for a cached absence), or ``NOTHING``; no I/O."""
        state = self.state
        lookup = state.l1_lookup
        if lookup is None:
            return NOTHING
        try:
            value, expires_at, _ = lookup(state.encode_key(key))
        except KeyError:
            return NOTHING
        if expires_at > state.clock():
            state.tier_stats[0].hits += 1
            return value
        return NOTHING

    def get_or_load(self, key: Key, loader: LoadOp) -> Plan[Any]:
        """Read ``key`` through the tiers, loading a miss through ``loader``; MISSING if none."""
        state = self.state
        found = yield from self.reader.read([key], [state.tier_key(key)], state.clock(), loader)
        return found.get(0, MISSING)

    # -- writes -------------------------------------------------------------

    def set_plan(self, items: Mapping[Key, Any]) -> Plan[None]:
        """``set_many``: validated and serialized now, before any I/O."""
        return self.writer.write(self.writer.prepare(items))

    def delete_plan(self, keys: Iterable[Key]) -> Plan[None]:
        """``delete_many``; the keys are validated now."""
        unique, tier_keys = self.unique(keys)
        return self.writer.delete(unique, tier_keys)

    def invalidate_plan(self, keys: Iterable[Key]) -> Plan[None]:
        """``invalidate_many``; the keys are validated now."""
        _unique, tier_keys = self.unique(keys)
        return self.writer.invalidate(tier_keys)

    def invalidate_all_plan(self) -> Plan[None]:
        """``invalidate_all``."""
        return self.writer.invalidate_all()

    # -- write-back and lifecycle -------------------------------------------

    def flush_plan(self, timeout: float) -> Plan[None]:
        """Write what the policy holds back; waits up to ``timeout`` for another flusher."""
        state = self.state
        deadline = time.monotonic() + timeout
        for _attempt in range(100_000):  # bounded; the deadline ends it sooner
            busy, failed = (yield from state.run.flush(self.writer, True)) or (False, 0)
            if failed:
                raise StoreError(
                    f"{state.name}: {failed} write-back entries could not be written "
                    "to the store; they stay pending and are retried"
                )
            if not busy or time.monotonic() >= deadline:
                return
            yield Sleep(0.02)

    def dead_letters_plan(self) -> Plan[dict[Key, Any]]:
        """Write-back entries given up on; empty for policies that never defer writes."""
        run = self.state.run
        if not isinstance(run, DeadLetters):
            return {}
        return (yield from run.dead_letters(self.writer))

    def replay_dead_letters_plan(self) -> Plan[int]:
        """Queue the dead letters for writing again; how many."""
        run = self.state.run
        if not isinstance(run, DeadLetters):
            return 0
        return int((yield from run.replay_dead_letters(self.writer)))

    def configure_plan(self, changes: dict[str, Any]) -> Plan[None]:
        """Swap policy or strategy: pending writes flushed first, a new strategy starting empty."""
        if not changes:
            return
        state = self.state
        old_run = state.run
        yield from self.flush_plan(5.0)  # raises, changing nothing, if writes are stuck
        self.apply(replace(state.config, **changes), restart="write" in changes)
        if "invalidation" in changes:
            # Keys cached under the old strategy (versioned or not) could be
            # read again by a later swap back: drop the namespace everywhere.
            yield from self.writer.announced(self.writer.drop_all(), "all", ())
        if state.run is not old_run:
            old_run.close()

    def close_plan(self) -> Plan[None]:
        """Flush, then stop the policy's background work."""
        try:
            yield from self.flush_plan(5.0)
        finally:
            self.state.run.close()

    def stats(self) -> dict[str, Any]:
        """Per-layer counters and latency of this namespace."""
        state, failures = self.state, self.failures
        out: dict[str, Any] = {
            "tiers": {
                f"L{t + 1}:{tier.name}": state.tier_stats[t].snapshot()
                for t, tier in enumerate(state.tiers)
            },
            "store": state.store_stats.snapshot() if state.store is not None else None,
            "bus_errors": failures.bus_errors,
            "purges_pending": failures.pending(),
            "purges_replayed": failures.purges_replayed,
        }
        if isinstance(state.run, DeadLetters):  # WriteBack's journal
            out["write_back"] = state.run.counters()
        return out

    # -- the bus: other processes' changes ----------------------------------

    def on_invalidation(self, kind: str, keys: list[str]) -> None:
        """Apply another process's change to our L1 (called by the bus listener)."""
        state = self.state
        if state.l1_lookup is None:
            return
        l1 = state.tiers[0]
        self.writer.touch(kind, keys)
        if kind == "keys":
            l1.delete_many(keys)
        elif kind == "all":
            l1.delete_prefix(state.base_prefix)
        elif kind == "version" and keys:
            self.on_version(int(keys[0]))

    def on_gap(self) -> None:
        """Invalidations may have been missed: drop our L1 copies, re-read the version."""
        state = self.state
        state.fence.bump_all()
        self.failures.replay_now()
        if state.config.invalidation.broadcast and state.l1_lookup is not None:
            state.tiers[0].delete_prefix(state.base_prefix)
        self.refresh_version()

    def refresh_version(self) -> None:
        """Re-read the namespace version (after a bus gap); only ever moves forward."""
        if self.state.config.invalidation.versioned:
            self.state.set_version(self.state.read_version())

    def on_version(self, version: int) -> None:
        """Another process bumped the namespace version."""
        if self.state.config.invalidation.versioned:
            self.state.set_version(version)

    def replay_purges_now(self) -> None:
        """Replay remembered purges now (from the bus thread, once Redis answers)."""
        self.failures.replay_now()

    def has_purges(self) -> bool:
        """True while purges wait for a shared tier to come back."""
        return bool(self.failures.purges)


def loader_op(loader: Loader) -> LoadOp:
    """A ``get_many(loader=)`` callable as the operation that loads the missing keys."""

    def load(keys: list[Key]) -> Op[Mapping[Key, Any]]:
        return MaybeAsync(loader, (keys,), "a coroutine loader needs AsyncCache")

    return load
