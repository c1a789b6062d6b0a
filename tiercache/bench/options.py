"""The options of ``tiercache bench``: the parser, its checks and the key stream they build."""

from __future__ import annotations

import argparse
import importlib
import math
import random
from dataclasses import dataclass
from typing import NoReturn

from .. import __version__
from ..errors import ConfigurationError
from .workloads import trace, zipf

__all__ = ["Options", "UsageError", "build_parser", "parse_options"]

DEFAULT_REQUESTS = 50_000
DEFAULT_KEYS = 10_000
DEFAULT_L1_SIZE = 1_000
DEFAULT_WORKLOAD = "zipf:1.0"
PLOT_HINT = "--plot needs matplotlib: pip install 'tiercache[bench]'"


class UsageError(ConfigurationError):
    """A bad option: reported on one line, exit status 2 (as any ConfigurationError)."""


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``tiercache: error: ...``, instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``tiercache`` command line; its errors raise `UsageError` instead of exiting."""
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


def parse_options(args: argparse.Namespace) -> Options:
    """Check the options that argparse cannot and build the key stream.

    Raises:
        UsageError, ConfigurationError: a bad option (exit status 2).
    """
    if args.plot is not None:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise UsageError(PLOT_HINT) from None
    kind, _, arg = args.workload.partition(":")
    if kind == "zipf":
        try:
            alpha = float(arg)
        except ValueError:
            raise UsageError(f"zipf needs a number, as zipf:1.0, got {args.workload!r}") from None
        if not 0 < alpha < math.inf:
            raise UsageError(f"zipf alpha must be > 0, got {args.workload!r}")
        keys = args.keys if args.keys is not None else DEFAULT_KEYS
        stream = list(zipf(alpha, keys, args.requests, args.seed))
    elif kind == "trace" and arg:
        if args.keys is not None:
            raise UsageError("--keys applies to zipf workloads; a trace brings its own keys")
        keys = None
        stream = list(trace(arg, limit=args.requests))
        if not stream:
            raise UsageError(f"trace {arg!r} holds no requests")
    else:
        raise UsageError(f"--workload must be zipf:ALPHA or trace:PATH, got {args.workload!r}")
    rng = random.Random(args.seed + 1)  # its own stream: the keys do not shift with the ratio
    ratio = args.write_ratio
    writes = [rng.random() < ratio for _ in stream] if ratio else [False] * len(stream)
    return Options(args.workload, stream, writes, keys, args.l1_size, args.l2_ttl, args.redis,
                   args.store, args.seed, args.json, args.plot, args.l1_admission)
