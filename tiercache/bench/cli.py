"""``tiercache bench``: run a workload through the tiers and show what each layer absorbs."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..cache import Cache
from ..errors import ConfigurationError, TiercacheError
from ..namespace import Namespace
from ..stores.base import Store
from ..tiers.memory import MemoryTier
from .options import DEFAULT_KEYS as DEFAULT_KEYS
from .options import DEFAULT_L1_SIZE as DEFAULT_L1_SIZE
from .options import DEFAULT_REQUESTS as DEFAULT_REQUESTS
from .options import DEFAULT_WORKLOAD as DEFAULT_WORKLOAD
from .options import PLOT_HINT as PLOT_HINT
from .options import Options as Options
from .options import UsageError, build_parser, parse_options
from .report import build_report, draw_plot, print_table
from .stack import CONNECT_TIMEOUT as CONNECT_TIMEOUT
from .stack import open_store, quietly, redis_tier, route_logs

__all__ = ["main"]

_LAYERS = ("L1", "L2", "store")
_NAMESPACE = "bench"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tiercache`` command with ``argv`` (default: the process's arguments).

    Returns the exit status: 0 on success, 2 for a bad option (a usage error,
    an unreadable trace, a malformed URL), 1 when the run fails (a server that
    does not answer, a store error). Errors are one line on stderr,
    ``tiercache: error: ...``, never a traceback.
    """
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            raise UsageError("no command given (try 'tiercache bench --help')")
        return _bench(parse_options(args))
    except (UsageError, ConfigurationError) as exc:
        return _fail(2, str(exc))
    except (TiercacheError, OSError) as exc:
        return _fail(1, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")


def _fail(status: int, message: str) -> int:
    print("tiercache: error: " + " ".join(message.split()), file=sys.stderr)
    return status


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
        route_logs(err, warnings, cleanup)
        l2, l2_label = redis_tier(opts, cleanup, warnings, prefix)
        store, store_info = open_store(opts, cleanup, warnings)
        l1 = (MemoryTier(maxsize=opts.l1_size) if opts.l1_admission is None
              else MemoryTier(maxsize=opts.l1_size, admission=opts.l1_admission))  # type: ignore[arg-type]  # argparse choices
        cache = Cache(tiers=[l1, l2], prefix=prefix)
        cleanup.callback(quietly, warnings, "closing the cache", cache.close)
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
