"""Single flight: many callers missing one key at once, and how many loads they cause.

Bar (DESIGN.md section 6, issue 4): 50 threads, or 50 coroutines, missing one
key at once cause exactly one call of the function, with or without a Redis
tier; two processes sharing Redis cause one call. The peers are counted the
same way, beside it (context, no bar): ``cachetools.cached(lock=...)`` (the
lock guards the cache, not the call: expect 50), ``cachetools.cached(
condition=...)`` (its stampede guard), dogpile.cache (its dogpile lock: expect
1), cashews ``@cache`` on ``mem://`` (its default per-process thunder
protection), aiocache ``@cached`` (no lock) and ``@cached_stampede`` (its lock).

Each case runs ``TRIALS`` times on a fresh key; the row shows the largest
count (the others in the notes). The function sleeps ``LOAD_SECONDS`` so that
every caller arrives while the first load is still running; the callers are
released together by a barrier (threads), ``asyncio.gather`` (coroutines) or
one ``go`` line sent to every process once all are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools

import tiercache as tc

from ._harness import Context, Row

__all__ = ["run"]

CALLERS = 50
TRIALS = 3  # 1 in a --quick run
LOAD_SECONDS = 0.2
PROC_THREADS = 25  # the 2-process x 25-thread case
ROOT = Path(__file__).resolve().parents[1]


class Counter:
    """Calls of the loading function, from any thread."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.n += 1


def _threads(call: Callable[[str], Any], key: str) -> list[str]:
    """Run ``call(key)`` in CALLERS threads released at once; the errors they raised."""
    barrier = threading.Barrier(CALLERS)
    errors: list[str] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            call(key)
        except Exception as exc:  # noqa: BLE001 - counted in the row's notes
            errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(CALLERS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    return errors


async def _coroutines(call: Callable[[str], Any], key: str) -> list[str]:
    results = await asyncio.wait_for(
        asyncio.gather(*(call(key) for _ in range(CALLERS)), return_exceptions=True), 30)
    return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]


def _row(name: str, label: str, counts: list[int], errors: list[str], *, ours: bool,
         notes: str) -> Row:
    worst = max(counts) if counts else -1
    passed = (worst == 1 and not errors) if ours else None
    detail = f"calls per trial {counts}"
    if errors:
        detail += f"; {len(errors)} callers raised, e.g. {errors[0][:120]}"
    bar = "bar: exactly 1 call; " if ours else "context, no bar; "
    return Row(name, float(worst), None, None, 1.0 if ours else None, passed,
               bar + notes + "; " + detail,
               ours_label=label, baseline_label="")


# -- threads ---------------------------------------------------------------------------


def _thread_cases(ctx: Context, tag: str) -> list[Row]:
    from dogpile.cache import make_region

    rows: list[Row] = []

    def trials(make: Callable[[Counter], Callable[[str], Any]]) -> tuple[list[int], list[str]]:
        counts, errors = [], []
        for trial in range(ctx.scale(TRIALS, 1)):
            counter = Counter()
            fn = make(counter)
            errors += _threads(fn, f"{tag}:t{trial}")
            counts.append(counter.n)
        return counts, errors

    def slow(counter: Counter) -> Callable[[str], Any]:
        def load(key: str) -> Any:
            counter.hit()
            time.sleep(LOAD_SECONDS)
            return {"key": key}
        return load

    stacks: list[tuple[str, str, Callable[[], list[tc.Tier]]]] = [
        ("single_flight_threads_l1", "tiercache L1 only, 50 threads",
         lambda: [tc.MemoryTier()]),
    ]
    if ctx.redis_ok:
        stacks.append(("single_flight_threads_l1_redis", "tiercache L1 + real Redis, 50 threads",
                       lambda: [tc.MemoryTier(), tc.RedisTier(ctx.redis_url)]))
    else:
        rows.append(Row("single_flight_threads_l1_redis", None, None, None, 1.0, None,
                        f"SKIP: no Redis at {ctx.redis_url} ({ctx.redis_error})"))
    for name, label, tiers in stacks:
        cache = tc.Cache(tiers=tiers(), prefix=ctx.prefix)
        try:
            counts, errors = trials(
                lambda c, cache=cache, name=name: cache.cached(f"sf.{name}.{id(c)}", ttl=60)(
                    slow(c)))
            rows.append(_row(name, label, counts, errors, ours=True,
                             notes=f"@cache.cached, function sleeps {LOAD_SECONDS} s"))
        finally:
            cache.close()

    peers: list[tuple[str, str, Callable[[Counter], Callable[[str], Any]], str]] = [
        ("single_flight_threads_cachetools_lock", "cachetools.cached(LRUCache, lock=Lock())",
         lambda c: cachetools.cached(cachetools.LRUCache(100), lock=threading.Lock())(slow(c)),
         "the lock guards the cache, not the call: every thread calls"),
        ("single_flight_threads_cachetools_condition",
         "cachetools.cached(LRUCache, condition=Condition())",
         lambda c: cachetools.cached(cachetools.LRUCache(100),
                                     condition=threading.Condition())(slow(c)),
         "cachetools' own stampede guard"),
        ("single_flight_threads_dogpile", "dogpile.cache memory region.cache_on_arguments()",
         lambda c: make_region().configure("dogpile.cache.memory", expiration_time=60)
         .cache_on_arguments()(slow(c)),
         "dogpile's per-key lock"),
    ]
    for name, label, make, note in peers:
        counts, errors = trials(make)
        rows.append(_row(name, label + ", 50 threads", counts, errors, ours=False, notes=note))
    return rows


# -- coroutines ------------------------------------------------------------------------


async def _coroutine_cases(ctx: Context, tag: str) -> list[Row]:
    import aiocache
    from cashews import Cache as CashewsCache

    rows: list[Row] = []

    def slow(counter: Counter) -> Callable[[str], Any]:
        async def load(key: str) -> Any:
            counter.hit()
            await asyncio.sleep(LOAD_SECONDS)
            return {"key": key}
        return load

    async def trials(
        make: Callable[[Counter], Callable[[str], Any]],
    ) -> tuple[list[int], list[str]]:
        counts, errors = [], []
        for trial in range(ctx.scale(TRIALS, 1)):
            counter = Counter()
            fn = make(counter)
            errors += await _coroutines(fn, f"{tag}:c{trial}")
            counts.append(counter.n)
        return counts, errors

    stacks: list[tuple[str, str, Callable[[], list[tc.Tier]]]] = [
        ("single_flight_coroutines_l1", "tiercache AsyncCache L1 only, 50 coroutines",
         lambda: [tc.MemoryTier()]),
    ]
    if ctx.redis_ok:
        stacks.append(("single_flight_coroutines_l1_redis",
                       "tiercache AsyncCache L1 + real Redis, 50 coroutines",
                       lambda: [tc.MemoryTier(), tc.RedisTier(ctx.redis_url)]))
    else:
        rows.append(Row("single_flight_coroutines_l1_redis", None, None, None, 1.0, None,
                        f"SKIP: no Redis at {ctx.redis_url} ({ctx.redis_error})"))
    for name, label, tiers in stacks:
        acache = tc.AsyncCache(tiers=tiers(), prefix=ctx.prefix)
        try:
            counts, errors = await trials(
                lambda c, acache=acache, name=name: acache.cached(f"sf.{name}.{id(c)}", ttl=60)(
                    slow(c)))
            rows.append(_row(name, label, counts, errors, ours=True,
                             notes=f"@acache.cached async def, function sleeps {LOAD_SECONDS} s"))
        finally:
            await acache.close()

    cashews = CashewsCache()
    cashews.setup("mem://")
    try:
        peers: list[tuple[str, str, Callable[[Counter], Callable[[str], Any]], str]] = [
            ("single_flight_coroutines_cashews", "cashews @cache(ttl) mem://",
             lambda c: cashews(ttl=60, key=f"sf{id(c)}:{{key}}")(slow(c)),
             "default protected=True: one task per key in this process"),
            ("single_flight_coroutines_aiocache", "aiocache @cached SimpleMemoryCache",
             lambda c: aiocache.cached(ttl=60, namespace=f"sf{id(c)}")(slow(c)),
             "no lock"),
            ("single_flight_coroutines_aiocache_stampede",
             "aiocache @cached_stampede(lease=2) SimpleMemoryCache",
             lambda c: aiocache.cached_stampede(lease=2, ttl=60, namespace=f"sfs{id(c)}")(slow(c)),
             "aiocache's lock option (RedLock on the cache)"),
        ]
        for name, label, make, note in peers:
            counts, errors = await trials(make)
            rows.append(_row(name, label + ", 50 coroutines", counts, errors, ours=False,
                             notes=note))
    finally:
        await cashews.close()
    return rows


# -- processes -------------------------------------------------------------------------


def _process_case(ctx: Context, tag: str, threads: int) -> tuple[list[int], list[str]]:
    import redis

    client = ctx.raw_client()
    counts: list[int] = []
    problems: list[str] = []
    try:
        for trial in range(ctx.scale(TRIALS, 1)):
            key = f"{tag}:p{threads}:{trial}"
            counter = f"{ctx.prefix}:sfcount:{threads}:{trial}"
            argv = [sys.executable, "-m", "benchmarks._workers", "single_flight", ctx.redis_url,
                    ctx.prefix, f"sf.proc{threads}", key, counter, str(threads),
                    str(LOAD_SECONDS)]
            # stderr to files, not pipes: a chatty child never blocks on it.
            with contextlib.ExitStack() as files:
                logs = [files.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(2)]
                _two_processes(argv, logs, problems)
            raw = client.get(counter)
            counts.append(int(raw) if raw is not None else 0)
            client.delete(counter)
    except (RuntimeError, ValueError, subprocess.SubprocessError, redis.RedisError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return counts, problems


def _two_processes(argv: list[str], logs: list[Any], problems: list[str]) -> None:
    """Start two workers, release them together, collect what they report."""
    procs = [subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=log, text=True) for log in logs]
    try:
        for p in procs:
            line = _readline(p, 30.0)
            if line != "ready":
                raise RuntimeError(f"worker {p.pid} did not start: {line!r}")
        for p in procs:  # both released within microseconds of each other
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            report = json.loads(_readline(p, 60.0))
            if report["errors"]:
                problems.extend(report["errors"])
            if report["distinct"] != 1:
                problems.append(f"worker {p.pid} saw {report['distinct']} values")
            p.wait(timeout=30)
    except RuntimeError as exc:
        tails = []
        for log in logs:
            log.seek(0)
            tails.append(log.read()[-300:])
        raise RuntimeError(f"{exc}; stderr: {tails!r}") from exc
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # our own child, by its pid
                p.wait(timeout=10)


def _readline(p: subprocess.Popen[str], timeout: float) -> str:
    """One line of the child's stdout, or an error naming what it printed to stderr."""
    assert p.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(p.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        raise RuntimeError(f"worker {p.pid} said nothing within {timeout} s "
                           f"(exit status {p.poll()})")
    return box[0].strip()


def run(ctx: Context) -> list[Row]:
    tag = f"sf{time.monotonic_ns()}"
    rows = _thread_cases(ctx, tag)
    rows.extend(asyncio.run(_coroutine_cases(ctx, tag)))
    for threads, name in ((1, "single_flight_2_processes"),
                          (PROC_THREADS, "single_flight_2_processes_x25_threads")):
        label = f"tiercache L1 + real Redis, 2 processes x {threads} thread{'s' * (threads > 1)}"
        if not ctx.redis_ok:
            rows.append(Row(name, None, None, None, 1.0, None,
                            f"SKIP: no Redis at {ctx.redis_url} ({ctx.redis_error})"))
            continue
        counts, problems = _process_case(ctx, tag, threads)
        rows.append(_row(name, label, counts, problems, ours=True,
                         notes="separate interpreters (subprocess), a lease in Redis; "
                               "calls counted by INCR in Redis"))
    return rows
