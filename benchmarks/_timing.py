"""Side-by-side timing of coroutines inside one running event loop, and of
loops of very different speeds.

The async twin of ``_harness.make_loop``/``compare``/``interleave``: the
statement is awaited ``unroll`` times per iteration of a compiled loop,
``time.perf_counter_ns`` is read inside the coroutine (so neither the event
loop's start-up nor ``run_until_complete`` is timed), and every round of every
side runs in the same loop, the one that awaits :func:`acompare` or
:func:`ainterleave`. Rounds alternate (or rotate) as in ``_harness``, with the
garbage collector off for each side alike.

(``_harness.interleave_n`` gives each sync loop its own call count, for
round-robin tables whose members differ by 100x in cost.)
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import Any

from ._harness import Comparison, make_loop

__all__ = ["acompare", "ainterleave", "make_async_loop"]

AsyncLoop = Callable[[int], Awaitable[int]]


def make_async_loop(stmt: str, env: dict[str, Any], unroll: int = 1) -> AsyncLoop:
    """Compile ``async loop(n) -> elapsed ns``, running ``stmt`` (an await) ``n * unroll`` times."""
    loop: AsyncLoop = make_loop(stmt, env, unroll, is_async=True)
    return loop


async def _timed(loop: AsyncLoop, calls: int) -> int:
    gc.collect()
    gc.disable()
    try:
        return await loop(calls)
    finally:
        gc.enable()


async def acompare(
    ours: AsyncLoop,
    baseline: AsyncLoop,
    *,
    calls: int,
    rounds: int,
    per_loop: int = 1,
    warmup: int | None = None,
) -> Comparison:
    """``_harness.compare`` for coroutine loops, in the running event loop."""
    for loop in (ours, baseline):
        await loop(warmup if warmup is not None else calls)
    out_ours: list[float] = []
    out_base: list[float] = []
    ops = calls * per_loop
    for r in range(rounds):
        order = ((ours, out_ours), (baseline, out_base))
        if r % 2:
            order = order[::-1]
        for loop, out in order:
            out.append(await _timed(loop, calls) / ops)
    return Comparison(out_ours, out_base)


async def ainterleave(
    loops: dict[str, AsyncLoop], *, calls: int | dict[str, int], rounds: int, per_loop: int = 1
) -> dict[str, list[float]]:
    """``_harness.interleave`` for coroutine loops; ``calls`` may differ per loop
    (a 1 µs loop and an 80 µs one need not run the same count to be timed well)."""
    names = list(loops)
    count = calls if isinstance(calls, dict) else dict.fromkeys(names, calls)
    for name in names:
        await loops[name](count[name])
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(await _timed(loops[name], count[name]) / (count[name] * per_loop))
    return out
