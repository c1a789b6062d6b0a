"""Single-key shortcuts for ``get`` and ``set``, chosen once per configuration by :func:`select`."""

from __future__ import annotations

import copy as copy_module
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._types import MISSING, Key
from ..errors import SerializationError, TierError
from ..keys import encode_key
from ..policies import WriteBack, WriteBackJournal, WriteContext
from ..tiers.base import UNDECODABLE, Hit, Undecodable
from .common import NEGATIVE, NOTHING, perf
from .ops import run

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["FAILED", "FastPaths", "select"]

FAILED = object()  # the direct read's tier failed: read around it, take no lease


@dataclass(frozen=True, slots=True)
class FastPaths:
    """The shortcuts one configuration allows; the facades call them and nothing else.

    (The L1 hit itself is inline in the facades, on ``State.hit_lookup``.)
    ``rest``: the sync read after an L1 miss. ``get``: the whole sync read,
    for when ``hit_lookup`` is None. ``set``: one key's sync write;
    ``in_process`` tells whether it is the in-process shortcut.
    """

    rest: Callable[[Key, str, Any], Any]
    get: Callable[[Key, Any], Any]
    set: Callable[[Key, Any], None]
    in_process: bool


def select(engine: Engine) -> FastPaths:
    """The shortcuts for ``engine`` as configured now (on each configuration, never per call).

    Each shortcut takes the same steps as the general plan for one key, in
    the same order, without a batch, a plan or the driver (which cost
    several times an L1 hit or an in-process write).
    ``tests/unit/test_fast_paths.py`` checks each against the general path
    from one table of cases.
    """
    state = engine.state
    views = state.views
    lookup = state.l1_lookup
    start = 1 if lookup is not None else 0
    get_one = views[start].get_one if start < len(views) else None
    l1_stats = state.l1_stats
    clock = state.clock
    failures = engine.failures

    def rest(key: Key, tier_key: str, default: Any) -> Any:
        """After an L1 miss: one GET of the next tier when it has one, else the plan."""
        first, lease = start, True
        if get_one is not None and not failures.purges:
            value = read_direct(engine, get_one, start, tier_key)
            if value is FAILED:
                lease = False
            elif value is not NOTHING:
                return default if value is MISSING else value
            first += 1
        return run(engine.get_plan(key, default, first, lease))

    copying = state.config.copy

    def get(key: Key, default: Any) -> Any:
        """The whole read, L1 included, for the facade when ``lookup`` is None."""
        tier_key = state.encode_key(key)
        if lookup is not None:  # copy=: L1 read here, every answer copied
            try:
                value, expires_at, _ = lookup(tier_key)
            except KeyError:
                pass
            else:
                if expires_at > clock():
                    l1_stats.hits += 1
                    return default if value is MISSING else copy_module.deepcopy(value)
            l1_stats.misses += 1
        value = rest(key, tier_key, MISSING)
        if value is MISSING:
            return default
        return copy_module.deepcopy(value) if copying else value

    in_process = sets_in_process(engine)
    set_: Callable[[Key, Any], None]
    if in_process:
        set_ = functools.partial(set_in_process, engine)  # no frame of its own
    else:

        def set_(key: Key, value: Any) -> None:
            state.encode_key(key)  # refuse a bad key before it meets a dict (unhashable, True == 1)
            run(engine.set_plan({key: value}))

    return FastPaths(
        rest=rest,
        get=get,
        set=set_,
        in_process=in_process,
    )


def sets_in_process(engine: Engine) -> bool:
    """Whether ``set`` can take the in-process shortcut: nothing it does leaves the process.

    That is WriteBack itself (a subclass may write otherwise), whose
    journal is then a dict here; every tier in-process and holding objects;
    and no bus to announce to.
    """
    state = engine.state
    return (
        type(state.policy) is WriteBack
        and state.bus is None
        and not any(view.shared or view.serialized for view in state.views)
    )


def read_direct(
    engine: Engine, get_one: Callable[[str], Hit | Undecodable | None], t: int, tier_key: str
) -> Any:
    """Ask tier ``t`` (the one after L1) for one key; its value, or NOTHING to go on down.

    The single-key form of ``Reader.read_tiers`` for that tier, with its L1
    backfill fenced as ``Writer.fill_local`` fences it.
    """
    state, failures = engine.state, engine.failures
    stats = state.tier_stats[t]
    generation = state.fence.generation
    before = generation(tier_key) if t else None
    started = perf()
    try:
        answer: Any = get_one(tier_key)  # told from None and UNDECODABLE by identity
    except TierError as exc:
        failures.tier_failed(t, "read", exc)
        return FAILED
    stats.latency.add(perf() - started)
    if answer is None or answer is UNDECODABLE:
        if answer is UNDECODABLE:
            failures.undecodable(t, tier_key, "unknown envelope")
        stats.misses += 1
        return NOTHING
    raw, remaining = answer
    if raw == NEGATIVE:
        value = MISSING
    else:
        try:
            value = state.decode(raw, tier_key) if state.bound else state.serializer.loads(raw)
        except SerializationError as exc:
            failures.undecodable(t, tier_key, str(exc))
            stats.misses += 1
            return NOTHING
    stats.hits += 1
    fill = state.l1_fill
    if fill is not None and generation(tier_key) == before:
        # Backfill L1, fenced: insert, then drop it if a change raced us.
        fill(tier_key, value, state.fill_ttl(0, remaining), len(raw), state.clock())
        if generation(tier_key) != before:
            state.tiers[0].delete_many((tier_key,))
    return value


def set_in_process(engine: Engine, key: Key, value: Any) -> None:
    """``Writer.prepare`` and ``Writer.write`` for one key, inline.

    The same steps in the same order, without a batch, a plan or the
    driver, which cost several times the write itself: validate and
    serialize; bump the fence, journal, bump it again; then fill each tier
    only if no other change touched the key meanwhile, and check again
    after the insert (see ``fill_local``). Writes that need I/O first
    (purges to replay, a full journal to flush) take the general plan, and
    so does a caller that kept ``ns.set`` across a ``configure()`` that
    swapped WriteBack out.
    """
    state, failures, writer = engine.state, engine.failures, engine.writer
    field = encode_key(key)  # InvalidKeyError, before anything is written
    tier_key = state.key_prefix + field  # one read of the prefix: a new version may land
    data = state.encode(value, tier_key) if state.bound else state.serializer.dumps(value)
    limit = state.config.max_value_bytes
    if limit is not None and len(data) > limit:
        raise writer.too_large(key, data, limit)
    now = state.clock()
    journal = state.run
    if type(journal) is not WriteBackJournal or failures.purges or not journal.local_room(1):
        run(writer.write(WriteContext([key], [tier_key], [value], [data], now)))
        return
    fence = state.fence
    epoch, before = fence.bump_one(tier_key)
    try:
        journal.journal_one(field, data)
    finally:
        after = fence.bump_one(tier_key)
    raced = after != (epoch, before + 1)  # another change moved the key between our bumps
    size = len(data)
    generation = fence.generation
    fills = state.fills
    for t in range(len(fills)):
        ttl = state.fill_ttl(t)
        if raced:
            failures.drop_local(t, tier_key)
        elif generation(tier_key) == after:
            try:
                fills[t](tier_key, value, ttl, size, now)
                done = True
            except TierError as exc:
                failures.tier_failed(t, "set_many", exc)
                done = False
            if generation(tier_key) != after:
                failures.drop_local(t, tier_key)
            if done:
                state.tier_stats[t].sets += 1
