"""Side-by-side timing: ours and a baseline interleaved in alternating rounds.

The machines this runs on are shared and noisy (2 cores, a loopback that
flips between latency modes), so an absolute time means little. What the
harness measures is a ratio: each round times N calls of ours and N calls of
the baseline back to back, alternating which goes first, with the garbage
collector off for both alike; the per-call medians over the rounds give the
ratio that is checked against the bar.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Comparison",
    "Context",
    "Row",
    "compare",
    "count_commands",
    "cycle",
    "interleave",
    "interleave_n",
    "make_loop",
    "seed",
    "timed_row",
]


@dataclass
class Row:
    """One line of the results table.

    ``ours`` and ``baseline`` are per-call nanoseconds (None for a check
    that is not a timing); ``bar`` is the largest ratio allowed (None: context
    only, no verdict); ``passed`` is None when there is no verdict.
    """

    name: str
    ours: float | None
    baseline: float | None
    ratio: float | None
    bar: float | None
    passed: bool | None
    notes: str = ""
    ours_label: str = ""
    baseline_label: str = ""

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "SKIP" if self.notes.startswith("SKIP") else "-"
        return "PASS" if self.passed else "FAIL"


@dataclass
class Context:
    """What every benchmark module receives from ``run.py``."""

    redis_url: str
    quick: bool
    redis_ok: bool
    redis_error: str = ""
    #: Unique key prefix for this run: everything written to Redis starts with it.
    prefix: str = field(default_factory=lambda: "bench" + uuid.uuid4().hex[:12])

    def scale(self, full: int, quick: int) -> int:
        """A count for the full run or the smoke run."""
        return quick if self.quick else full

    def raw_client(self) -> Any:
        """A redis-py client configured like RedisTier's: 0.1 s timeouts, no retries."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis.from_url(
            self.redis_url,
            socket_timeout=0.1,
            socket_connect_timeout=0.1,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    def cleanup(self) -> int:
        """SCAN + UNLINK every key under this run's prefix (and nothing else)."""
        if not self.redis_ok:
            return 0
        client = self.raw_client()
        removed = 0
        try:
            cursor = 0
            for _step in range(1_000_000):  # bounded; SCAN ends at cursor 0
                cursor, keys = client.scan(cursor, match=self.prefix + "*", count=1000)
                if keys:
                    removed += client.unlink(*keys)
                if int(cursor) == 0:
                    break
        finally:
            client.close()
        return removed


def make_loop(stmt: str, env: dict[str, Any], unroll: int = 1, is_async: bool = False) -> Any:
    """Compile ``loop(n) -> elapsed ns`` running ``stmt`` ``n * unroll`` times.

    The statement is repeated ``unroll`` times inside the loop body (as
    timeit's template does with its ``number``), so that for sub-microsecond
    operations the loop's own cost is spread over several calls. Names in
    ``stmt`` are bound as default arguments: fast local lookups, the same for
    ours and the baseline.
    With ``is_async`` it is ``async def`` (``stmt`` then awaits).
    """
    names = sorted(env)
    params = "".join(f", {n}={n}" for n in names)
    body = "".join(f"        {stmt}\n" for _ in range(unroll))
    src = (
        f"{'async ' if is_async else ''}def _loop(_n, _pc=_pc, _repeat=_repeat{params}):\n"
        "    _t0 = _pc()\n"
        "    for _ in _repeat(None, _n):\n"
        f"{body}"
        "    return _pc() - _t0\n"
    )
    scope: dict[str, Any] = dict(env, _pc=time.perf_counter_ns, _repeat=itertools.repeat)
    exec(compile(src, f"<bench loop: {stmt}>", "exec"), scope)  # noqa: S102 - our own source
    return scope["_loop"]


@dataclass
class Comparison:
    """Per-call nanoseconds of each round, ours and baseline."""

    ours: list[float]
    baseline: list[float]

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)

    @property
    def ratio(self) -> float:
        """The headline: median per-call time of ours over the baseline's."""
        return self.ours_median / self.baseline_median

    @property
    def ratio_min(self) -> float:
        """Best round of each side: the ratio with the least noise added."""
        return min(self.ours) / min(self.baseline)

    @property
    def ratio_paired(self) -> float:
        """Median of the per-round ratios (each round's two halves ran back to back)."""
        return statistics.median(o / b for o, b in zip(self.ours, self.baseline, strict=True))

    def describe(self) -> str:
        return (
            f"min-ratio {self.ratio_min:.2f}x, paired-median {self.ratio_paired:.2f}x, "
            f"{len(self.ours)} rounds"
        )


def compare(
    ours: Callable[[int], int],
    baseline: Callable[[int], int],
    *,
    calls: int,
    rounds: int,
    per_loop: int = 1,
    warmup: int | None = None,
    before_round: Callable[[], None] | None = None,
    baseline_calls: int | None = None,
) -> Comparison:
    """Time ``ours`` and ``baseline`` in ``rounds`` alternating rounds.

    Args:
        ours, baseline: loops from :func:`make_loop`.
        calls: loop iterations per round and side.
        baseline_calls: the baseline's iterations per round, when not ``calls``:
            for a baseline so much slower that equal counts would time ours
            over a window too short to be warm.
        rounds: rounds (each side runs once per round; the side that goes
            first alternates).
        per_loop: operations per loop iteration (``make_loop``'s ``unroll``).
        warmup: iterations each side runs untimed first (default: ``calls``).
        before_round: called (untimed) before each round, for both sides.
    """
    # Two loops round-robin: the side that goes first alternates.
    out = interleave_n(
        {"ours": ours, "baseline": baseline},
        calls={"ours": calls, "baseline": calls if baseline_calls is None else baseline_calls},
        rounds=rounds, per_loop=per_loop, warmup=warmup, before_round=before_round,
    )
    return Comparison(out["ours"], out["baseline"])


def interleave(
    loops: dict[str, Callable[[int], int]], *, calls: int, rounds: int, per_loop: int = 1
) -> dict[str, list[float]]:
    """Per-call nanoseconds of each round for several loops, run round-robin.

    The order rotates from round to round, so no loop always runs first or
    right after the same neighbour; GC is off for each alike.
    """
    return interleave_n(loops, calls=dict.fromkeys(loops, calls), rounds=rounds,
                        per_loop=per_loop)


def interleave_n(
    loops: dict[str, Callable[[int], int]],
    *,
    calls: dict[str, int],
    rounds: int,
    per_loop: int = 1,
    warmup: int | None = None,
    before_round: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """``interleave``, each loop running its own number of calls per round.

    ``warmup``: iterations each loop runs untimed first (default: its
    ``calls``); ``before_round`` is called, untimed, before each round.
    """
    names = list(loops)
    for name in names:
        loops[name](warmup if warmup is not None else calls[name])
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        if before_round is not None:
            before_round()
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            gc.disable()
            try:
                elapsed = loops[name](calls[name])
            finally:
                gc.enable()
            out[name].append(elapsed / (calls[name] * per_loop))
    return out


def cycle(items: list[Any]) -> Iterator[Any]:
    """An endless iterator over ``items`` (for benchmarks that rotate keys)."""
    return itertools.cycle(items)


def timed_row(
    name: str,
    result: Comparison,
    *,
    bar: float | None,
    ours_label: str,
    baseline_label: str,
    notes: str = "",
    valid: bool = True,
) -> Row:
    """A table row from a comparison; ``valid=False`` (the run did not measure
    what it claims, e.g. L1 did not serve every call) fails the bar."""
    ratio = result.ratio
    passed = None if bar is None else (valid and ratio <= bar)
    detail = result.describe()
    return Row(
        name=name,
        ours=result.ours_median,
        baseline=result.baseline_median,
        ratio=ratio,
        bar=bar,
        passed=passed,
        notes=f"{notes}; {detail}" if notes else detail,
        ours_label=ours_label,
        baseline_label=baseline_label,
    )


def count_commands(tier: Any, sent: list[str]) -> None:
    """Record every command a RedisTier sends, and every pipeline it runs, in ``sent``.

    Its client's commands, and its direct reads (``tiercache/redis/direct.py``), which
    do not go through the client.
    """
    if getattr(tier, "_direct", None) is not None:
        tier._direct = _CountingReads(tier._direct, sent)
    client = tier.client
    execute = client.execute_command
    pipeline = client.pipeline

    def counting_execute(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]).upper())
        return execute(*args, **kwargs)

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        run_pipe = pipe.execute

        def counting_run(*a: Any, **k: Any) -> Any:
            sent.append(f"PIPELINE[{len(pipe.command_stack)}]")
            return run_pipe(*a, **k)

        pipe.execute = counting_run
        return pipe

    client.execute_command = counting_execute
    client.pipeline = counting_pipeline


class _CountingReads:
    """A tier's DirectReads that records each command in ``sent`` first."""

    def __init__(self, inner: Any, sent: list[str]) -> None:
        self.inner, self.sent = inner, sent

    def __call__(self, *args: Any) -> Any:
        self.sent.append(str(args[0]).upper())
        return self.inner(*args)

    def close(self) -> None:
        self.inner.close()


def seed(ns: Any, tier: Any, items: dict[Any, Any], ttl: float | None = None) -> None:
    """Put ``items`` into one tier of ``ns`` directly, through the Tier protocol.

    Benchmarks need a value sitting in exactly the tier they measure, whatever
    the namespace's write policy does on ``set`` (fill, or delete-on-write):
    so they write the tier's own entries, encoded as the namespace would.
    """
    entries = []
    for key, value in items.items():
        data = ns.serializer.dumps(value)
        entries.append((ns.tier_key(key), data if tier.serialized else value, ttl, len(data)))
    tier.set_many(entries, time.monotonic())
