"""The report of ``tiercache bench``: the cascade as a dict, a table and a plot."""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .. import __version__
from .workloads import belady_hit_ratio, lru_hit_ratio

if TYPE_CHECKING:
    from .cli import Options, Run

__all__ = ["build_report", "draw_plot", "print_table"]

_LAYERS = ("L1", "L2", "store")


def _percentile(samples: list[int], q: float) -> float | None:
    """The q-quantile of nanosecond samples, in microseconds (as stats.Latency computes it)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def build_report(
    opts: Options, stats: Mapping[str, Any], run: Run, l2_label: str,
    store_info: dict[str, Any], prefix: str,
) -> dict[str, Any]:
    tiers = list(stats["tiers"].values())
    sources = {"L1": tiers[0], "L2": tiers[1], "store": stats["store"]}
    reads = len(opts.stream) - len(run.writes)
    layers: dict[str, Any] = {}
    for name in _LAYERS:
        s = sources[name]
        samples = run.served[name]
        layers[name] = {
            "requests": s["requests"],
            "hits": s["hits"],
            "misses": s["misses"],
            "hit_rate": s["hit_rate"],
            "absorbed": s["hits"] / reads if reads else None,
            "sets": s["sets"],
            "errors": s["errors"],
            "served": len(samples),
            "served_p50_us": _percentile(samples, 0.50),
            "served_p99_us": _percentile(samples, 0.99),
            "op_p50_us": s["latency"]["p50_us"],
            "op_p99_us": s["latency"]["p99_us"],
        }
    store_loads = sources["store"]["requests"]
    return {
        "tiercache": __version__,
        "workload": {"spec": opts.workload, "keys": opts.keys,
                     "distinct_keys": len(set(opts.stream)), "seed": opts.seed},
        "requests": len(opts.stream),
        "reads": reads,
        "writes": len(run.writes),
        "write_p50_us": _percentile(run.writes, 0.50),
        "write_p99_us": _percentile(run.writes, 0.99),
        "seconds": run.seconds,
        "requests_per_second": len(opts.stream) / run.seconds if run.seconds else None,
        "layers": layers,
        "absent": len(run.served["absent"]),
        "store_loads": store_loads,
        "store_loads_avoided": reads - store_loads,
        "store_loads_avoided_ratio": (reads - store_loads) / reads if reads else None,
        "reference": {
            "l1_size": opts.l1_size,
            "lru_hit_ratio": lru_hit_ratio(opts.stream, opts.l1_size),
            "belady_hit_ratio": belady_hit_ratio(opts.stream, opts.l1_size),
        },
        "config": {"l1_size": opts.l1_size, "l2": l2_label, "l2_ttl": opts.l2_ttl,
                   "prefix": prefix, "store": store_info},
    }


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    return f"{value:.1f} µs" if value >= 10 else f"{value:.2f} µs"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def print_table(console: Console, report: dict[str, Any]) -> None:
    if not console.is_terminal:
        console.width = max(console.width, 110)  # a pipe or a file: no need to squeeze
    work, config = report["workload"], report["config"]
    keys = f"{work['keys']:,} keys" if work["keys"] else f"{work['distinct_keys']:,} distinct keys"
    table = Table(
        title=f"tiercache bench: {work['spec']}, {keys}, {report['requests']:,} requests "
        f"({report['writes']:,} writes) in {report['seconds']:.1f} s "
        f"({report['requests_per_second'] or 0:,.0f}/s)",
    )
    for header in ("layer", "reaching", "hits", "hit rate", "absorbed"):
        table.add_column(header, justify="left" if header == "layer" else "right")
    for header in ("served p50", "served p99", "call p50", "call p99"):
        table.add_column(header, justify="right")
    for name, layer in report["layers"].items():
        table.add_row(
            name, f"{layer['requests']:,}", f"{layer['hits']:,}", _pct(layer["hit_rate"]),
            _pct(layer["absorbed"]), _us(layer["served_p50_us"]), _us(layer["served_p99_us"]),
            _us(layer["op_p50_us"]), _us(layer["op_p99_us"]),
        )
    console.print(table)
    store = config["store"]
    ttl = "" if config["l2_ttl"] is None else f" (ttl {config['l2_ttl']:g} s)"
    console.print(
        f"L1 MemoryTier({config['l1_size']:,} entries) -> L2 {config['l2']}{ttl}"
        f" -> store {store['kind']} {store['url']}", highlight=False,
    )
    console.print("served: reads that layer answered, end to end; call: the layer's own call, "
                  "per cache.stats()", style="dim", highlight=False)
    reads, ref = report["reads"], report["reference"]
    console.print(
        f"store loads avoided: [bold]{report['store_loads_avoided']:,}[/] of {reads:,} reads "
        f"({_pct(report['store_loads_avoided_ratio'])})", highlight=False,
    )
    console.print(
        f"L1 hit rate {_pct(report['layers']['L1']['hit_rate'])}; on this stream an LRU of "
        f"{ref['l1_size']:,} entries: {_pct(ref['lru_hit_ratio'])}, the offline optimum "
        f"(Belady): {_pct(ref['belady_hit_ratio'])}", highlight=False,
    )
    if report["writes"]:
        console.print(f"writes (write-through): {report['writes']:,}, p50 "
                      f"{_us(report['write_p50_us'])}, p99 {_us(report['write_p99_us'])}",
                      highlight=False)
    for name, layer in report["layers"].items():
        if layer["errors"]:
            console.print(f"[yellow]{name}: {layer['errors']:,} errors (read around)[/]")


def draw_plot(report: dict[str, Any], path: str) -> None:
    """Two panels: where the reads were answered, and how long each layer took."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    layers = report["layers"]
    names = list(layers)
    figure, (load, latency) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    positions = range(len(names))
    load.bar([p - 0.2 for p in positions], [layers[n]["requests"] for n in names], 0.4,
             label="requests reaching")
    load.bar([p + 0.2 for p in positions], [layers[n]["hits"] for n in names], 0.4, label="hits")
    load.set_xticks(list(positions), names)
    load.set_title("what each layer absorbs")
    load.legend()
    for q, offset in (("p50", -0.2), ("p99", 0.2)):
        values = [layers[n][f"served_{q}_us"] or math.nan for n in names]  # nan: no bar
        latency.bar([p + offset for p in positions], values, 0.4, label=f"served {q}")
    latency.set_yscale("log")
    latency.set_ylabel("µs")
    latency.set_xticks(list(positions), names)
    latency.set_title("latency of the reads each layer answered")
    latency.legend()
    figure.suptitle(f"tiercache bench: {report['workload']['spec']}, "
                    f"{report['requests']:,} requests")
    figure.tight_layout()
    figure.savefig(Path(path))
    pyplot.close(figure)

