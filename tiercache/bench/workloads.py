"""Key streams for benchmarks (Zipf, recorded traces) and the hit ratios they allow.

``zipf`` draws keys from an exact Zipf distribution; ``trace`` replays the
ARC (``start count ignore reqno``) and LIRS (one key per line) trace formats.
``lru_hit_ratio`` and ``belady_hit_ratio`` simulate a cache of a given
capacity on a stream: what an LRU achieves, and the offline optimum no
policy can beat. ``tiercache bench`` and ``benchmarks/`` compare the tiers
against both.
"""

from __future__ import annotations

import bisect
import gzip
import heapq
import itertools
import lzma
import math
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import IO

from ..errors import ConfigurationError

__all__ = ["belady_hit_ratio", "lru_hit_ratio", "trace", "zipf"]

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_Opener = Callable[[], IO[str]]
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError)


def zipf(alpha: float, n_keys: int, n_requests: int, seed: int = 0) -> Iterator[int]:
    """Yield ``n_requests`` keys in ``range(n_keys)`` drawn from a Zipf distribution.

    The key of popularity rank ``r`` (1 = most popular) has probability
    proportional to ``1 / r**alpha``, exactly (no approximation for large
    ``n_keys``): each draw is a bisection of the cumulative distribution.
    Ranks are assigned to keys by a seeded shuffle, so the popular keys are
    spread over the key space rather than being ``0, 1, 2, ...``. The same
    arguments give the same stream on every run and platform.

    Raises:
        ConfigurationError: ``alpha`` is not a finite number > 0, ``n_keys``
            is not >= 1, or ``n_requests`` is not >= 0.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ConfigurationError(f"zipf alpha must be a number, got {alpha!r}")
    if not 0 < alpha < math.inf:
        raise ConfigurationError(f"zipf alpha must be > 0 and finite, got {alpha!r}")
    _check_count("n_keys", n_keys, minimum=1)
    _check_count("n_requests", n_requests, minimum=0)
    rng = random.Random(seed)
    cdf = list(itertools.accumulate(rank ** -float(alpha) for rank in range(1, n_keys + 1)))
    key_of_rank = list(range(n_keys))
    rng.shuffle(key_of_rank)
    return _draw(rng, cdf, key_of_rank, n_requests)


def _draw(rng: random.Random, cdf: list[float], key_of_rank: list[int], n: int) -> Iterator[int]:
    total = cdf[-1]
    last = len(cdf) - 1
    uniform = rng.random
    find = bisect.bisect_right
    for _ in range(n):
        # min(): rounding can put u * total a hair above the last cumulative sum.
        yield key_of_rank[min(find(cdf, uniform() * total), last)]


def trace(
    path: str | os.PathLike[str], limit: int | None = None, *, fmt: str | None = None
) -> Iterator[int]:
    """Yield the keys of a recorded trace, in order (at most ``limit`` of them).

    Formats, detected from the file name (``.lis``: ARC; ``.trace``,
    ``.trc``: LIRS) or else from the first line:

    - ARC: lines ``start count ignore reqno``; each stands for the keys
      ``start, start+1, ..., start+count-1``.
    - LIRS: one integer key per line; lines holding ``*`` (checkpoints of the
      LIRS simulator) are skipped.

    ``.xz`` and ``.gz`` files (recognised by their first bytes) are read
    compressed. The file is opened and its format checked when this is
    called; the keys are read lazily.

    Args:
        path: the trace file.
        limit: stop after this many keys (``None``: the whole trace).
        fmt: ``"arc"`` or ``"lirs"`` to skip detection.

    Raises:
        ConfigurationError: the file cannot be read, is in neither format,
            or ``limit``/``fmt`` is invalid. A malformed line later in the
            file raises it while iterating, naming the line.
    """
    if limit is not None:
        _check_count("limit", limit, minimum=0)
    if fmt not in (None, "arc", "lirs"):
        raise ConfigurationError(f"trace format must be 'arc' or 'lirs', got {fmt!r}")
    name = os.fspath(path)
    opener = _opener(name)
    kind = fmt or _detect(name, opener)
    keys = _arc(name, opener) if kind == "arc" else _lirs(name, opener)
    return keys if limit is None else itertools.islice(keys, limit)


def _opener(name: str) -> _Opener:
    """A function opening ``name`` as text, decompressing by its magic bytes."""
    try:
        with open(name, "rb") as raw:
            head = raw.read(6)
    except OSError as exc:
        raise ConfigurationError(f"cannot read trace {name!r}: {exc.strerror or exc}") from exc
    if head.startswith(_XZ_MAGIC):
        return lambda: lzma.open(name, "rt", encoding="ascii")
    if head.startswith(_GZIP_MAGIC):
        return lambda: gzip.open(name, "rt", encoding="ascii")
    return lambda: open(name, encoding="ascii")


def _detect(name: str, opener: _Opener) -> str:
    base = os.path.basename(name).lower()
    for suffix in (".xz", ".gz"):
        base = base.removesuffix(suffix)
    if base.endswith(".lis"):
        return "arc"
    if base.endswith((".trace", ".trc")):
        return "lirs"
    try:
        with opener() as lines:
            for line in itertools.islice(lines, 1000):
                fields = line.split()
                if fields == ["*"] or not fields:
                    continue
                if len(fields) == 4 and all(_is_int(f) for f in fields):
                    return "arc"
                if len(fields) == 1 and _is_int(fields[0]):
                    return "lirs"
                break
    except _READ_ERRORS as exc:
        raise ConfigurationError(f"cannot read trace {name!r}: {exc}") from exc
    raise ConfigurationError(
        f"{name!r} is not a trace: expected ARC lines 'start count ignore reqno' "
        "or LIRS lines holding one integer"
    )


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _arc(name: str, opener: _Opener) -> Iterator[int]:
    number = 0
    try:
        with opener() as lines:
            for number, line in enumerate(lines, 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    start, count = int(fields[0]), int(fields[1])
                except (ValueError, IndexError):
                    raise ConfigurationError(
                        f"{name!r} line {number}: expected 'start count ignore reqno', "
                        f"got {line.strip()!r}"
                    ) from None
                if count == 1:  # most lines: skip building a range
                    yield start
                elif count > 1:
                    yield from range(start, start + count)
                elif count < 0:
                    raise ConfigurationError(f"{name!r} line {number}: negative count {count}")
    except _READ_ERRORS as exc:
        raise ConfigurationError(f"cannot read trace {name!r} after line {number}: {exc}") from exc


def _lirs(name: str, opener: _Opener) -> Iterator[int]:
    number = 0
    try:
        with opener() as lines:
            for number, line in enumerate(lines, 1):
                try:
                    key = int(line)
                except ValueError:
                    text = line.strip()
                    if text in ("*", ""):
                        continue
                    raise ConfigurationError(
                        f"{name!r} line {number}: expected one integer key, got {text!r}"
                    ) from None
                yield key
    except _READ_ERRORS as exc:
        raise ConfigurationError(f"cannot read trace {name!r} after line {number}: {exc}") from exc


def lru_hit_ratio(stream: Iterable[Hashable], capacity: int) -> float:
    """The fraction of requests an LRU cache of ``capacity`` entries serves, cold start.

    Every request is a read that fills the cache on a miss. 0.0 for an
    empty stream.

    Raises:
        ConfigurationError: ``capacity`` is not an int >= 0.
    """
    _check_count("capacity", capacity, minimum=0)
    cache: OrderedDict[Hashable, None] = OrderedDict()
    touch = cache.move_to_end
    hits = requests = 0
    for key in stream:
        requests += 1
        if key in cache:
            hits += 1
            touch(key)
        elif capacity:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / requests if requests else 0.0


def belady_hit_ratio(stream: Iterable[Hashable], capacity: int) -> float:
    """The best hit ratio any cache of ``capacity`` entries can reach on ``stream``.

    Belady's offline optimum, cold start: on a miss with the cache full, the
    entry (the requested one included, which is then not admitted) whose
    next request is farthest away is the one left out. O(n log n): the next
    use of every position is computed backwards, and a max-heap keyed by
    next use (stale entries skipped lazily) finds the farthest one.

    Raises:
        ConfigurationError: ``capacity`` is not an int >= 0.
    """
    _check_count("capacity", capacity, minimum=0)
    keys: Sequence[Hashable] = stream if isinstance(stream, Sequence) else list(stream)
    n = len(keys)
    if n == 0 or capacity == 0:
        return 0.0
    next_use = _next_uses(keys)
    cached: dict[Hashable, int] = {}  # key -> position of its next request (n: never)
    heap: list[tuple[int, int]] = []  # (-next use, position that pushed it)
    hits = 0
    for i, key in enumerate(keys):
        upcoming = next_use[i]
        if key in cached:
            hits += 1
        elif len(cached) >= capacity:
            # The farthest next use among the cached, skipping superseded entries.
            while cached.get(keys[heap[0][1]]) != -heap[0][0]:
                heapq.heappop(heap)
            if upcoming >= -heap[0][0]:
                continue  # the requested key is needed last: do not admit it
            del cached[keys[heapq.heappop(heap)[1]]]
        cached[key] = upcoming
        heapq.heappush(heap, (-upcoming, i))
    return hits / n


def _next_uses(keys: Sequence[Hashable]) -> list[int]:
    """For each position, the position of the same key's next request (``len``: none)."""
    n = len(keys)
    following = [n] * n
    seen: dict[Hashable, int] = {}
    for i in range(n - 1, -1, -1):
        key = keys[i]
        following[i] = seen.get(key, n)
        seen[key] = i
    return following


def _check_count(what: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an integer >= {minimum}, got {value!r}")
