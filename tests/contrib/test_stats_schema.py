"""stats_schema's TypedDicts against what a real Cache's stats() returns."""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints

import tiercache as tc
from tiercache import stats_schema


def conforms(value: Any, annotation: Any, path: str) -> list[str]:
    """Every place ``value`` departs from ``annotation`` (a TypedDict, dict[str, T], a union)."""
    if typing.is_typeddict(annotation):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a dict"]
        hints = get_type_hints(annotation)
        problems = [f"{path}: missing {k!r}" for k in annotation.__required_keys__ - set(value)]
        problems += [f"{path}: unexpected {k!r}" for k in set(value) - set(hints)]
        for key in set(value) & set(hints):
            problems += conforms(value[key], hints[key], f"{path}.{key}")
        return problems
    origin = get_origin(annotation)
    if origin is dict:
        key_type, value_type = get_args(annotation)
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a dict"]
        problems = [f"{path}: key {k!r}" for k in value if not isinstance(k, key_type)]
        for key, item in value.items():
            problems += conforms(item, value_type, f"{path}[{key!r}]")
        return problems
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if any(not conforms(value, option, path) for option in options):
            return []
        return [f"{path}: {value!r} is none of {options}"]
    if annotation is type(None):
        return [] if value is None else [f"{path}: {value!r} is not None"]
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = type(value) is annotation
    return [] if ok else [f"{path}: {value!r} is not {annotation.__name__}"]


def test_stats_of_a_busy_cache_match_cache_stats(redis_url: str, prefix: str) -> None:
    """Every key of stats() (namespaces, layers, latency, write-back, tiers) is in CacheStats, with
    its type."""
    store = tc.MappingStore({"a": 1})
    with tc.Cache(
        tiers=[tc.MemoryTier(maxsize=100, maxbytes=10_000), tc.RedisTier(redis_url, timeout=1.0)],
        prefix=prefix,
    ) as cache:
        users = cache.namespace("users", store=store)
        users.get("a")
        users.get("a")
        users.get_many(["a", "b"])
        orders = cache.namespace(
            "orders", write=tc.WriteBack(flush_interval=3600), store=tc.MappingStore()
        )
        orders.set("x", 1)
        cache.flush()
        cache.namespace("pure")
        stats = cache.stats()
    assert stats["namespaces"]["orders"]["write_back"]["flushed"] == 1
    assert stats["namespaces"]["pure"]["store"] is None
    assert stats["tiers"]["L1:memory"]["currbytes"] is not None
    assert conforms(stats, stats_schema.CacheStats, "stats") == []


def test_the_schema_check_catches_a_departure() -> None:
    """A stats() with a renamed and a mistyped key is reported, so the check above can fail."""
    layer = {"requests": 1, "hits": 1, "misses": 0, "hit_rate": 1.0, "sets": 0, "deletes": 0,
             "errors": 0, "undecodable": 0,
             "latency": {"count": 1, "mean_us": 1.0, "p50_us": 1.0, "p99_us": "1"}}
    stats = {"namespaces": {"n": {"tiers": {"L1:memory": layer}, "store": None, "bus_errors": 0,
                                  "purges_pending": 0, "purge_replayed": 0}},
             "tiers": {"L1:memory": {"kind": "MemoryTier"}}}
    assert set(conforms(stats, stats_schema.CacheStats, "stats")) == {
        "stats.namespaces['n']: missing 'purges_replayed'",
        "stats.namespaces['n']: unexpected 'purge_replayed'",
        ("stats.namespaces['n'].tiers['L1:memory'].latency.p99_us: '1' is none of "
         "(<class 'float'>, <class 'NoneType'>)"),
    }
