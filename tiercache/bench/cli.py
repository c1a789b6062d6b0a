"""``tiercache bench``: run a workload through the tiers and show what each layer absorbs."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import __version__
from .._redact import redact
from ..cache import Cache
from ..errors import ConfigurationError, StoreError, TiercacheError, TierUnavailable
from ..namespace import Namespace
from ..redis import RedisTier
from ..stores.base import Store
from ..stores.sqlite import SQLiteStore
from ..tiers.memory import MemoryTier
from .report import build_report, draw_plot, print_table
from .workloads import trace, zipf

__all__ = ["main"]

DEFAULT_REQUESTS = 50_000
DEFAULT_KEYS = 10_000
DEFAULT_L1_SIZE = 1_000
DEFAULT_WORKLOAD = "zipf:1.0"
PLOT_HINT = "--plot needs matplotlib: pip install 'tiercache[bench]'"
CONNECT_TIMEOUT = 10
"""Seconds a PostgreSQL connection attempt may take (added to URLs that set none)."""

_LAYERS = ("L1", "L2", "store")
_NAMESPACE = "bench"


class _UsageError(Exception):
    """A bad option: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``tiercache: error: ...``, instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tiercache`` command with ``argv`` (default: the process's arguments).

    Returns the exit status: 0 on success, 2 for a bad option (a usage error,
    an unreadable trace, a malformed URL), 1 when the run fails (a server that
    does not answer, a store error). Errors are one line on stderr,
    ``tiercache: error: ...``, never a traceback.
    """
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            raise _UsageError("no command given (try 'tiercache bench --help')")
        return _bench(_options(args))
    except (_UsageError, ConfigurationError) as exc:
        return _fail(2, str(exc))
    except (TiercacheError, OSError) as exc:
        return _fail(1, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")


def _fail(status: int, message: str) -> int:
    print("tiercache: error: " + " ".join(message.split()), file=sys.stderr)
    return status


def _parser() -> _Parser:
    parser = _Parser(prog="tiercache", description="L1 memory, L2 Redis and a store, as one cache.")
    parser.add_argument("--version", action="version", version=f"tiercache {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser(
        "bench",
        help="run a workload through the tiers and show what each layer absorbs",
        description="Run a key stream through L1 (memory) -> L2 (Redis) -> store and show, per "
        "layer, the requests reaching it, its hits, the share of load it absorbs and latency. "
        "Defaults: embedded Redis, SQLite in a temporary directory, zipf:1.0 over 10,000 keys.",
    )
    bench.add_argument("--redis", metavar="URL", help="a real Redis (keys under a unique prefix, "
                       "removed at the end); default: the embedded in-process Redis")
    bench.add_argument("--store", metavar="URL", help="SQLite path or sqlite:///PATH, or any "
                       "SQLAlchemy URL (postgresql+psycopg://...); a table of its own, dropped at "
                       "the end; default: SQLite in a temporary directory")
    bench.add_argument("--workload", default=DEFAULT_WORKLOAD, metavar="SPEC",
                       help="zipf:ALPHA or trace:PATH (ARC .lis[.xz] or LIRS .trace[.gz]); "
                       f"default {DEFAULT_WORKLOAD}")
    bench.add_argument("--requests", type=_positive, default=DEFAULT_REQUESTS, metavar="N",
                       help="requests to run (of a trace: its first N); "
                       f"default {DEFAULT_REQUESTS:,}")
    bench.add_argument("--keys", type=_positive, metavar="N",
                       help=f"distinct keys of a zipf workload; default {DEFAULT_KEYS:,}")
    bench.add_argument("--l1-size", type=_positive, default=DEFAULT_L1_SIZE, metavar="N",
                       help=f"entries L1 holds; default {DEFAULT_L1_SIZE:,}")
    bench.add_argument("--l1-admission", choices=("tinylfu", "lru"), default=None,
                       help="L1 admission policy (default: MemoryTier's, W-TinyLFU)")
    bench.add_argument("--l2-ttl", type=_seconds, metavar="S",
                       help="L2 time to live in seconds; default none")
    bench.add_argument("--write-ratio", type=_fraction, default=0.0, metavar="R",
                       help="fraction of requests that are writes (write-through); default 0")
    bench.add_argument("--seed", type=int, default=0, help="random seed of the workload; default 0")
    bench.add_argument("--json", action="store_true", help="print one JSON object, no progress bar")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also draw the cascade (needs matplotlib: tiercache[bench])")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


@dataclass
class Options:
    """The checked options of one run and its key stream (what the report describes)."""

    workload: str
    stream: list[int]
    writes: list[bool]
    keys: int | None
    l1_size: int
    l2_ttl: float | None
    redis: str | None
    store: str | None
    seed: int
    json: bool
    plot: str | None
    l1_admission: str | None = None


def _options(args: argparse.Namespace) -> Options:
    """Check the options that argparse cannot and build the key stream.

    Raises:
        _UsageError, ConfigurationError: a bad option (exit status 2).
    """
    if args.plot is not None:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise _UsageError(PLOT_HINT) from None
    kind, _, arg = args.workload.partition(":")
    if kind == "zipf":
        try:
            alpha = float(arg)
        except ValueError:
            raise _UsageError(f"zipf needs a number, as zipf:1.0, got {args.workload!r}") from None
        if not 0 < alpha < math.inf:
            raise _UsageError(f"zipf alpha must be > 0, got {args.workload!r}")
        keys = args.keys if args.keys is not None else DEFAULT_KEYS
        stream = list(zipf(alpha, keys, args.requests, args.seed))
    elif kind == "trace" and arg:
        if args.keys is not None:
            raise _UsageError("--keys applies to zipf workloads; a trace brings its own keys")
        keys = None
        stream = list(trace(arg, limit=args.requests))
        if not stream:
            raise _UsageError(f"trace {arg!r} holds no requests")
    else:
        raise _UsageError(f"--workload must be zipf:ALPHA or trace:PATH, got {args.workload!r}")
    rng = random.Random(args.seed + 1)  # its own stream: the keys do not shift with the ratio
    ratio = args.write_ratio
    writes = [rng.random() < ratio for _ in stream] if ratio else [False] * len(stream)
    return Options(args.workload, stream, writes, keys, args.l1_size, args.l2_ttl, args.redis,
                   args.store, args.seed, args.json, args.plot, args.l1_admission)


@dataclass
class Run:
    """What one bench run measured: per layer, nanoseconds of the reads it answered."""

    served: dict[str, list[int]] = field(
        default_factory=lambda: {k: [] for k in (*_LAYERS, "absent")}
    )
    writes: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _bench(opts: Options) -> int:
    err = Console(stderr=True)
    warnings: list[str] = []
    prefix = f"tcbench-{uuid.uuid4().hex[:12]}"
    with ExitStack() as cleanup:
        _route_logs(err, warnings, cleanup)
        l2, l2_label = _redis_tier(opts, cleanup, warnings, prefix)
        store, store_info = _store(opts, cleanup, warnings)
        l1 = (MemoryTier(maxsize=opts.l1_size) if opts.l1_admission is None
              else MemoryTier(maxsize=opts.l1_size, admission=opts.l1_admission))  # type: ignore[arg-type]  # argparse choices
        cache = Cache(tiers=[l1, l2], prefix=prefix)
        cleanup.callback(_quietly, warnings, "closing the cache", cache.close)
        ns = cache.namespace(_NAMESPACE, store=store)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=opts.json,
        ) as progress:
            _populate(store, opts.stream, progress)
            run = _drive(ns, opts, progress)
        stats = cache.stats()["namespaces"][_NAMESPACE]
    report = build_report(opts, stats, run, l2_label, store_info, prefix)
    report["warnings"] = warnings
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(Console(), report)
    if opts.plot is not None:
        draw_plot(report, opts.plot)
        err.print(f"plot written to {opts.plot}")
    failed = [m for m in warnings if m.startswith("cleanup")]
    for message in failed:  # the rest were shown as they happened
        _fail(1, message)
    return 1 if failed else 0


def _route_logs(console: Console, warnings: list[str], cleanup: ExitStack) -> None:
    """Show tiercache's warnings as they happen (above the progress bar) and keep them."""

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            warnings.append(message)
            console.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)

    logger = logging.getLogger("tiercache")
    handler, propagate = Handler(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    cleanup.callback(setattr, logger, "propagate", propagate)
    cleanup.callback(logger.removeHandler, handler)


def _quietly(warnings: list[str], what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run a cleanup step; a failure becomes a warning, never hides the run's own error."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure: report it, finish the cleanup
        warnings.append(f"cleanup: {what} failed: {exc}")


def _redis_tier(
    opts: Options, cleanup: ExitStack, warnings: list[str], prefix: str
) -> tuple[RedisTier, str]:
    if opts.redis is None:
        return RedisTier.embedded(ttl=opts.l2_ttl), "embedded Redis"
    tier = RedisTier(opts.redis, ttl=opts.l2_ttl)
    label = redact(opts.redis)
    cleanup.callback(_quietly, warnings, "closing Redis", tier.close)
    # RedisTier reads around a dead server without a word; a bench on one would measure nothing.
    if not tier.ping():
        raise TierUnavailable(
            f"cannot reach Redis at {label} (no answer to PING within {tier.timeout:g} s)"
        )
    cleanup.callback(_quietly, warnings, f"removing the Redis keys under {prefix}:",
                     _remove_keys, opts.redis, prefix)
    return tier, label


def _remove_keys(url: str, prefix: str) -> None:
    """Remove every key the run left under its prefix (entries, leases, the bus stream)."""
    sweeper = RedisTier(url, timeout=5.0)
    try:
        sweeper.delete_prefix(prefix + ":")
    finally:
        sweeper.close()


def _store(opts: Options, cleanup: ExitStack, warnings: list[str]) -> tuple[Store, dict[str, Any]]:
    """The run's store on a table of its own, and its cleanup (closed, table dropped)."""
    table = "tiercache_bench_" + uuid.uuid4().hex[:12]
    url = opts.store
    if url is None:
        directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tiercache-bench-"))
        store = SQLiteStore(os.path.join(directory, "bench.db"), table=table)
        cleanup.callback(_quietly, warnings, "closing the store", store.close)
        return store, {"kind": "SQLiteStore", "url": "(temporary directory)", "table": table}
    path = _sqlite_path(url)
    if path is not None:
        existed = path == ":memory:" or os.path.exists(path)
        store = SQLiteStore(path, table=table)
        cleanup.callback(_quietly, warnings, f"dropping table {table}", _drop_sqlite, path, table,
                         existed)
        cleanup.callback(_quietly, warnings, "closing the store", store.close)
        return store, {"kind": "SQLiteStore", "url": path, "table": table, "dropped": True}
    from ..stores.sql import SQLStore

    target, shown = _sql_url(url)
    try:
        sql = SQLStore(target, table=table)
    except StoreError as exc:
        raise StoreError(f"store {shown}: {exc}") from exc
    cleanup.callback(_quietly, warnings, f"dropping table {table}", _drop_sql, sql, table)
    cleanup.callback(_quietly, warnings, "closing the store", sql.close)
    return sql, {"kind": "SQLStore", "url": shown, "table": table, "dropped": True}


def _sqlite_path(url: str) -> str | None:
    """The file of a plain path or ``sqlite:///PATH`` URL; None for other URLs."""
    if "://" not in url:
        return url
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        if rest in ("", "/", "/:memory:"):
            return ":memory:"
        return rest.removeprefix("/")
    return None


def _drop_sqlite(path: str, table: str, existed: bool) -> None:
    if path == ":memory:":
        return
    if not existed:  # the bench made the file: leave nothing behind
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    conn = sqlite3.connect(path)
    try:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')  # our own name: no quoting issue
        conn.commit()
    finally:
        conn.close()


def _sql_url(url: str) -> tuple[Any, str]:
    """The URL to connect to and the one to show (password hidden).

    A PostgreSQL URL gets a ``connect_timeout``, so an unreachable host fails in time.
    """
    try:
        import sqlalchemy as sa
    except ImportError:
        return url, redact(url)  # SQLStore explains how to install SQLAlchemy
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise ConfigurationError(f"--store: not a database URL: {redact(url)!r}") from exc
    # hide_password masks the userinfo only; redact masks ?password= too.
    shown = redact(parsed.render_as_string(hide_password=True))
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
    return parsed, shown


def _drop_sql(store: Any, table: str) -> None:
    import sqlalchemy as sa

    engine = store.engine  # disposed by the store's close(), and usable again
    try:
        sa.Table(table, sa.MetaData()).drop(engine, checkfirst=True)
    finally:
        engine.dispose()


def _value(key: str, version: int) -> dict[str, Any]:
    return {"id": key, "version": version, "payload": "x" * 64}


def _populate(store: Store, stream: list[int], progress: Progress) -> None:
    """Give the store every key of the stream (the tiers start cold)."""
    unique = [str(k) for k in dict.fromkeys(stream)]
    task = progress.add_task("loading store", total=len(unique))
    for start in range(0, len(unique), 1000):
        chunk = unique[start:start + 1000]
        store.save_many({k: _value(k, 0) for k in chunk})
        progress.advance(task, len(chunk))


def _drive(ns: Namespace, opts: Options, progress: Progress) -> Run:
    """Run the requests; each read is timed and classified by the layer that answered it.

    The layer is the one whose hit counter moved during the read: a few
    attribute reads per request, cheap next to the read itself.
    """
    run = Run()
    names = {k: str(k) for k in set(opts.stream)}
    l1, l2, st = ns.tier_stats[0], ns.tier_stats[1], ns.store_stats
    served_l1, served_l2, served_store, absent = (run.served[k] for k in (*_LAYERS, "absent"))
    get, put, clock = ns.get, ns.set, time.perf_counter_ns
    total = len(opts.stream)
    step = max(1, total // 200)
    task = progress.add_task("requests", total=total)
    started = time.perf_counter()
    for i, (raw, write) in enumerate(zip(opts.stream, opts.writes, strict=True)):
        key = names[raw]
        if write:
            t0 = clock()
            put(key, _value(key, i + 1))
            run.writes.append(clock() - t0)
        else:
            h1, h2, h3 = l1.hits, l2.hits, st.hits
            t0 = clock()
            get(key)
            elapsed = clock() - t0
            if l1.hits != h1:
                served_l1.append(elapsed)
            elif l2.hits != h2:
                served_l2.append(elapsed)
            elif st.hits != h3:
                served_store.append(elapsed)
            else:
                absent.append(elapsed)
        if i % step == 0:
            progress.update(task, completed=i + 1)
    run.seconds = time.perf_counter() - started
    progress.update(task, completed=total)
    return run


if __name__ == "__main__":
    raise SystemExit(main())
