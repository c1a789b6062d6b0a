"""Run the peer benchmarks and regenerate ``benchmarks/RESULTS.md``.

Usage, from the repository root::

    python -m benchmarks.run                 # full run (about 25 minutes), writes RESULTS.md
    python -m benchmarks.run --quick         # smoke run (< 30 s)
    python -m benchmarks.run --only l2       # one module: l1, l2, get_many, decorators,
                                             # single_flight, write_policies, peers, metrics,
                                             # memory
                                             # (or admission, alias hit_ratio: slow)
    python -m benchmarks.run --redis redis://127.0.0.1:6380/0

Each module ``benchmarks/bench_*.py`` exposes ``run(ctx) -> list[Row]``.
Every ratio is measured side by side in one run (see ``_harness``): on the
shared, noisy machines of this project only ratios mean anything. The exit
status is 1 when a bar fails, 0 otherwise. Keys written to Redis carry a
unique ``bench<hex>`` prefix and are removed (SCAN + UNLINK) at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from ._harness import Context, Row

__all__ = ["main"]

MODULES = {
    "l1": "bench_l1",
    "l2": "bench_l2",
    "get_many": "bench_get_many",
    "decorators": "bench_decorators",
    "single_flight": "bench_single_flight",
    "write_policies": "bench_write_policies",
    "peers": "bench_peers",
    "admission": "bench_admission",
    "metrics": "bench_metrics",
    "memory": "bench_memory",
}
"""Every bar (DESIGN.md section 6, the issues', the L1 admission study) and the peers."""

OPTIONAL = {"hit_ratio": "bench_admission"}
"""Longer studies with their own entry points, run here only when named by ``--only``.
``hit_ratio`` is another name for ``admission``: its table is the hit-ratio study
(MemoryTier lru and tinylfu, theine, Belady on Zipf and the shared traces)."""
PEERS = ("dogpile.cache", "cashews", "aiocache", "theine")
"""Other caches measured beside tiercache (the ``bench`` extra installs them)."""
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
RESULTS = Path(__file__).with_name("RESULTS.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default=DEFAULT_REDIS, metavar="URL",
                        help=f"Redis server for the L2 benchmarks (default {DEFAULT_REDIS})")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and calls: a smoke run, not a measurement")
    known = {**MODULES, **OPTIONAL}
    parser.add_argument("--only", action="append", choices=sorted(known), metavar="NAME",
                        help=f"run only this module (repeatable): {', '.join(known)}")
    parser.add_argument("--output", type=Path, default=RESULTS, metavar="PATH",
                        help="where to write the results (default benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.run" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )

    if not args.redis.startswith("redis://127.0.0.1") and not args.redis.startswith(
        "redis://localhost"
    ):
        parser.error("--redis must point at 127.0.0.1 (the benchmarks write and delete keys)")

    started = time.monotonic()
    ctx = _context(args.redis, args.quick)
    machine = _machine(ctx)
    print(f"tiercache benchmarks: {command}")
    for k, v in machine.items():
        print(f"  {k}: {v}")
    if not ctx.redis_ok:
        print(f"  !! no Redis at {ctx.redis_url}: {ctx.redis_error}; L2 benchmarks skip")

    rows: list[Row] = []
    try:
        # One run per module, even when two of the names given are aliases of it.
        for name in dict.fromkeys(known[key] for key in args.only or list(MODULES)):
            t0 = time.monotonic()
            print(f"\n== {name} ...", flush=True)
            try:
                got = importlib.import_module(f"{__package__}.{name}").run(ctx)
            except Exception as exc:  # noqa: BLE001 - a broken module is a FAIL row; run the rest
                traceback.print_exc()
                got = [Row(name, None, None, None, None, False,
                           f"ERROR: {type(exc).__name__}: {exc}")]
            for row in got:
                print("   " + _line(row))
            print(f"   ({time.monotonic() - t0:.1f} s)")
            rows.extend(got)
    finally:
        removed = ctx.cleanup()
    elapsed = time.monotonic() - started

    table = _table(rows)
    print("\n" + table)
    print(f"\n{elapsed:.1f} s; removed {removed} benchmark keys under {ctx.prefix}*")
    args.output.write_text(_report(command, machine, rows, elapsed, ctx))
    print(f"wrote {args.output}")
    return 1 if any(r.passed is False for r in rows) else 0


def _context(url: str, quick: bool) -> Context:
    ctx = Context(redis_url=url, quick=quick, redis_ok=False)
    try:
        client = ctx.raw_client()
        try:
            client.ping()
            ctx.redis_ok = True
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it means "no server"
        ctx.redis_error = f"{type(exc).__name__}: {exc}"
    return ctx


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _machine(ctx: Context) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    server = "unreachable"
    if ctx.redis_ok:
        client = ctx.raw_client()
        try:
            server = str(client.info("server").get("redis_version", "?"))
        finally:
            client.close()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": f"{usable} (cpu_count {os.cpu_count()}), {cpu}",
        "load average at start": _loadavg(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "tiercache": f"{_version('tiercache')} ({_git_revision()})",
        "redis-py": _version("redis"),
        "redis server": f"{server} at {ctx.redis_url}",
        "cachetools": _version("cachetools"),
        "msgpack": _version("msgpack"),
        "peers": ", ".join(f"{d} {_version(d)}" for d in PEERS),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, check=False, capture_output=True,
                              text=True, timeout=5)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "tiercache")
    except (OSError, subprocess.SubprocessError):
        return "no git"
    if not head:
        return "no commit"
    return f"git {head}" + (", tiercache/ has uncommitted changes" if dirty else "")


def _ns(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1_000:
        return f"{value:.0f} ns"
    if value < 1_000_000:
        return f"{value / 1_000:.1f} µs"
    return f"{value / 1_000_000:.2f} ms"


def _cells(row: Row) -> list[str]:
    timed = row.ratio is not None
    return [
        f"`{row.name}`",
        row.ours_label,
        _ns(row.ours) if timed else ("" if row.ours is None else f"{row.ours:g}"),
        row.baseline_label,
        _ns(row.baseline),
        "" if row.ratio is None else f"{row.ratio:.2f}x",
        _bar(row),
        f"**{row.verdict}**" if row.passed is not None else row.verdict,
        row.notes,
    ]


def _bar(row: Row) -> str:
    """A ratio's bar (``<= 1.50x``), or a check's limit in its own unit (``<= 100``)."""
    if row.bar is None:
        return ""
    return f"<= {row.bar:.2f}x" if row.ratio is not None else f"<= {row.bar:g}"


def _table(rows: list[Row]) -> str:
    head = ["benchmark", "ours", "ours/call", "baseline", "baseline/call", "ratio", "bar",
            "result", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(lines)


def _line(row: Row) -> str:
    if row.ratio is None:  # a check, not a timing
        value = "" if row.ours is None else f"{row.ours:g} {row.ours_label}"
        bar = f" (bar {_bar(row)})" if row.bar is not None else ""
        return f"{row.verdict:4} {row.name:26} {value}{bar}  {row.notes}"
    bar = "" if row.bar is None else f"(bar {row.bar:.2f}x)"
    return (f"{row.verdict:4} {row.name:26} ours {_ns(row.ours):>10}  "
            f"base {_ns(row.baseline):>10}  {row.ratio:6.2f}x {bar}  {row.notes}")


METHOD = """\
- Bars are DESIGN.md section 6. Only ratios mean anything on these shared, noisy 2-core
  machines: every ratio is measured side by side in the same run.
- Each comparison runs ours and the baseline in alternating rounds (the side that goes
  first alternates), N calls per side per round, after an untimed warm-up of N calls
  each; `time.perf_counter_ns` around the whole round; `gc.collect()` then `gc.disable()`
  for each side alike during timing.
- `ours/call` and `baseline/call` are the median per-call time over the rounds; `ratio` =
  median(ours) / median(baseline) is what the bar checks. The notes also give the ratio of
  the best rounds (min-ratio) and the median of the per-round ratios (paired-median): when
  the three disagree, the machine was noisy during that row.
- In-process loops repeat the statement 10 times per loop iteration (timeit-style, names
  bound as locals), so the loop's own cost is a few ns per call, the same on both sides.
- Every timed row checks that the layer it claims to measure served every call (the
  tier's hit/miss counters before and after); a row that did not is a FAIL.
- Values are put into the tier under test directly (the Tier protocol's `set_many`,
  encoded as the namespace encodes them), so the rows do not depend on what a write
  policy does on `set`.
- Round trips are counted on the tier's own redis-py client (every `execute_command` and
  every pipeline), so other users of a shared server cannot blur the count.
- Redis value: `{"name": "Ada", "n": list(range(10))}`. The baseline reads plain msgpack
  of the same value from the same server with a client configured like RedisTier's
  (`socket_timeout=0.1`, `Retry(NoBackoff(), 0)`). Keys live under a unique `bench<hex>`
  prefix and are removed with SCAN + UNLINK afterwards.
- Where tiercache's own time goes, free of network noise: `python -m benchmarks.breakdown`
  (Redis client stubbed, each read path next to its pieces).
- Async rows (`async_*`, `*_async_*`) time awaited calls inside one running event loop
  (`perf_counter_ns` read in the coroutine), rounds alternating or rotating as above.
- `peers_*` rows come from round-robin tables (`bench_peers`): every member of a table
  runs once per round, the order rotating, each with its own call count; each row is
  tiercache against one peer over the same rounds. They are context: the DESIGN.md bars on
  those paths are the pairwise rows named in their notes.
- Rows whose `ours` is a count (single flight, store writes, a latency in ms) have no
  ratio; their bar is a limit in that unit (`<= 1` call, `<= 100` writes, `<= 10` ms:
  the exact bar is the first words of the notes). Single flight: 50 threads (a barrier),
  50 coroutines (`gather`) or 2 processes (released by one line on stdin) call a function
  that sleeps 0.2 s on one fresh key, 3 trials; the row shows the largest count.
- Write policies (`bench_write_policies`): SQLite files in a temporary directory; the
  write-back bar (>= 20x throughput) is checked as time per `set` <= 0.05x write-through's.
  Every `set` changes its row (1,009 value revisions over 1,000 keys): SQLite neither
  writes nor syncs a commit that changes nothing, so rewriting one value would time empty
  commits. Write-back runs as many sets a round (up to 40x write-through's 150) as make
  its round last about as long, so both are sustained rates. With Redis in the stack a
  write-back `set` waits for its journal entry to reach Redis (issue 3's durability), so
  one round trip is its floor.
  `invalidate_all` compares a Versioned namespace with 1,000,000 keys in Redis (written,
  then removed with SCAN + UNLINK) against one with 1 key. Cross-process invalidation:
  a subprocess polls its L1 every 50 µs until a write made here is gone from it.
- The hit-ratio table (Zipf and the shared traces, LRU / W-TinyLFU / theine / Belady) is
  `bench_admission`'s: `python -m benchmarks.run --only hit_ratio` (alias of `admission`).
"""


def _report(command: str, machine: dict[str, str], rows: list[Row], elapsed: float,
            ctx: Context) -> str:
    failed = [r.name for r in rows if r.passed is False]
    verdict = f"**{len(failed)} FAILED**: {', '.join(failed)}" if failed else "all bars PASS"
    kind = "QUICK (smoke run, not a measurement)" if ctx.quick else "full"
    parts = [
        "# tiercache benchmarks: results",
        "",
        "Generated by `benchmarks/run.py`; do not edit by hand. Regenerate with:",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine.items()],
        f"- load average at end: {_loadavg()}",
        f"- run: {kind}, {elapsed:.0f} s",
        "",
        "## Results",
        "",
        f"Verdict: {verdict}.",
        "",
        _table(rows),
        "",
        "## Method",
        "",
        METHOD,
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
