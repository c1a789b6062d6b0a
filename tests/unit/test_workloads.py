"""Key streams (Zipf, ARC and LIRS traces) and the LRU and Belady hit-ratio simulators."""

from __future__ import annotations

import functools
import gzip
import itertools
import lzma
import math
import random
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_trace

from tiercache.bench.workloads import belady_hit_ratio, lru_hit_ratio, trace, zipf
from tiercache.errors import ConfigurationError

# ARC paper (Megiddo & Modha, FAST 2003), Table IV: LRU hit ratios (%) on OLTP.
PUBLISHED_OLTP_LRU = {1000: 32.83, 2000: 42.47, 5000: 53.65, 10000: 60.70, 15000: 64.63}


# -- zipf ------------------------------------------------------------------------


def test_zipf_same_seed_gives_the_same_stream() -> None:
    """A seed fixes the stream; another seed gives another one."""
    first = list(zipf(1.0, 1000, 5000, seed=7))
    assert first == list(zipf(1.0, 1000, 5000, seed=7))
    assert first != list(zipf(1.0, 1000, 5000, seed=8))


def test_zipf_yields_the_requested_number_of_keys_in_range() -> None:
    """n_requests keys, each in range(n_keys); zero requests is an empty stream."""
    stream = list(zipf(0.8, 50, 3000, seed=1))
    assert len(stream) == 3000
    assert set(stream) <= set(range(50))
    assert list(zipf(1.0, 50, 0)) == []


def test_zipf_frequencies_follow_one_over_rank() -> None:
    """The r-th most requested key gets about (1/r) / H_n of the requests at alpha 1."""
    n_keys, n_requests = 100, 200_000
    counts = Counter(zipf(1.0, n_keys, n_requests, seed=3))
    harmonic = sum(1 / r for r in range(1, n_keys + 1))
    ranked = [count for _key, count in counts.most_common()]
    for rank in (1, 2, 3, 10):
        expected = n_requests / rank / harmonic
        assert abs(ranked[rank - 1] - expected) < 0.05 * expected, rank


def test_zipf_higher_alpha_is_more_skewed() -> None:
    """The most popular key's share grows with alpha."""
    shares = []
    for alpha in (0.5, 1.0, 1.5):
        top = Counter(zipf(alpha, 1000, 20_000, seed=2)).most_common(1)[0][1]
        shares.append(top / 20_000)
    assert shares == sorted(shares) and shares[0] < shares[-1] / 5


def test_zipf_popular_keys_are_shuffled_not_the_smallest() -> None:
    """Popularity rank is not key order: the top keys are spread over the key space."""
    top = [key for key, _ in Counter(zipf(1.0, 10_000, 20_000, seed=0)).most_common(10)]
    assert top != list(range(10))
    assert max(top) > 1000


@pytest.mark.parametrize(
    "args",
    [(0, 10, 10), (-1.0, 10, 10), (math.nan, 10, 10), (math.inf, 10, 10), ("1", 10, 10),
     (True, 10, 10), (1.0, 0, 10), (1.0, -5, 10), (1.0, 10, -1), (1.0, 2.5, 10)],
)
def test_zipf_refuses_bad_arguments(args: tuple[Any, Any, Any]) -> None:
    """alpha must be a finite number > 0, n_keys >= 1 and n_requests >= 0 (integers)."""
    with pytest.raises(ConfigurationError):
        zipf(*args)


# -- traces ----------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".xz":
        with lzma.open(path, "wt") as out:
            out.write(text)
    elif path.suffix == ".gz":
        with gzip.open(path, "wt") as out:
            out.write(text)
    else:
        path.write_text(text)
    return path


ARC_TEXT = "10 3 0 0\n5 1 0 1\n\n20 0 0 2\n7 2 0 3\n"
ARC_KEYS = [10, 11, 12, 5, 7, 8]
LIRS_TEXT = "4\n2\n*\n4\n\n9\n*\n"
LIRS_KEYS = [4, 2, 4, 9]


@pytest.mark.parametrize("name", ["t.lis", "t.lis.xz", "t.lis.gz", "arc-no-suffix", "arc.xz"])
def test_arc_lines_expand_to_runs_of_keys(tmp_path: Path, name: str) -> None:
    """Each ARC line 'start count ignore reqno' stands for keys start..start+count-1."""
    path = _write(tmp_path / name, ARC_TEXT)
    assert list(trace(path)) == ARC_KEYS


@pytest.mark.parametrize("name", ["t.trace", "t.trace.gz", "t.trc", "lirs.txt", "lirs.xz"])
def test_lirs_lines_are_keys_and_stars_are_skipped(tmp_path: Path, name: str) -> None:
    """A LIRS trace has one integer per line; '*' checkpoint lines and blank lines are skipped."""
    path = _write(tmp_path / name, LIRS_TEXT)
    assert list(trace(path)) == LIRS_KEYS


def test_trace_limit_stops_early_even_inside_an_arc_run(tmp_path: Path) -> None:
    """limit counts keys, not lines: it can cut an ARC run short."""
    path = _write(tmp_path / "t.lis", ARC_TEXT)
    assert list(trace(path, limit=2)) == [10, 11]
    assert list(trace(path, limit=0)) == []
    assert list(trace(path, limit=100)) == ARC_KEYS


def test_trace_fmt_overrides_detection(tmp_path: Path) -> None:
    """fmt='lirs' reads a file named like an ARC trace as LIRS."""
    path = _write(tmp_path / "odd.lis", "3\n1\n")
    assert list(trace(path, fmt="lirs")) == [3, 1]


@pytest.mark.parametrize("kwargs", [{"limit": -1}, {"limit": 1.5}, {"fmt": "csv"}])
def test_trace_refuses_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    """A negative or fractional limit and an unknown format are refused."""
    path = _write(tmp_path / "t.trace", LIRS_TEXT)
    with pytest.raises(ConfigurationError):
        trace(path, **kwargs)


def test_trace_of_a_missing_file_fails_when_called(tmp_path: Path) -> None:
    """An unreadable file raises ConfigurationError at once, not on first iteration."""
    with pytest.raises(ConfigurationError, match="cannot read trace"):
        trace(tmp_path / "absent.trace")


def test_trace_of_a_file_in_neither_format_fails_when_called(tmp_path: Path) -> None:
    """A file whose first line is neither format is refused."""
    path = _write(tmp_path / "notes.txt", "hello world\n")
    with pytest.raises(ConfigurationError, match="not a trace"):
        trace(path)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [("t.trace", "1\n2\nabc\n", 3), ("t.trace", "1\n2 3\n", 2), ("t.lis", "1 1 0 0\nx 1 0 1\n", 2),
     ("t.lis", "1 1 0 0\n5\n", 2), ("t.lis", "1 -2 0 0\n", 1)],
)
def test_malformed_line_is_reported_with_its_number(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    """A bad line later in the file raises ConfigurationError naming that line."""
    keys = trace(_write(tmp_path / name, text))
    with pytest.raises(ConfigurationError, match=f"line {line}"):
        list(keys)


def test_truncated_compressed_trace_is_a_clear_error(tmp_path: Path) -> None:
    """A cut-off .xz file raises ConfigurationError, not an lzma or EOF error."""
    whole = _write(tmp_path / "whole.trace.xz", "1\n" * 50_000).read_bytes()
    cut = tmp_path / "cut.trace.xz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ConfigurationError, match="cannot read trace"):
        list(trace(cut))


# -- hit ratio simulators ----------------------------------------------------------


def test_lru_hand_worked_example() -> None:
    """1 2 1 3 1 2 with two slots: 3 evicts 2, so only the second and third 1 hit."""
    assert lru_hit_ratio([1, 2, 1, 3, 1, 2], 2) == pytest.approx(2 / 6)


def test_belady_hand_worked_example() -> None:
    """1 2 3 1 2 with two slots: the optimum skips caching 3 and hits 1 and 2."""
    assert belady_hit_ratio([1, 2, 3, 1, 2], 2) == pytest.approx(2 / 5)
    assert lru_hit_ratio([1, 2, 3, 1, 2], 2) == 0.0


@pytest.mark.parametrize("simulate", [lru_hit_ratio, belady_hit_ratio])
def test_simulators_edge_cases(simulate: Any) -> None:
    """Empty stream and zero capacity give 0; a cache holding every key misses only first uses."""
    assert simulate([], 10) == 0.0
    assert simulate([1, 1, 1], 0) == 0.0
    stream = [1, 2, 3, 1, 2, 3, 3]
    assert simulate(stream, 3) == pytest.approx(4 / 7)
    assert simulate(iter(stream), 100) == pytest.approx(4 / 7)


@pytest.mark.parametrize("simulate", [lru_hit_ratio, belady_hit_ratio])
@pytest.mark.parametrize("capacity", [-1, 1.5, True])
def test_simulators_refuse_bad_capacity(simulate: Any, capacity: Any) -> None:
    """Capacity must be an integer >= 0."""
    with pytest.raises(ConfigurationError):
        simulate([1, 2], capacity)


def test_belady_is_never_below_lru_on_small_random_streams() -> None:
    """The offline optimum is an upper bound: on every stream, at every size, >= LRU."""
    rng = random.Random(11)
    for _case in range(300):
        length, alphabet = rng.randint(1, 60), rng.randint(1, 12)
        stream = [rng.randrange(alphabet) for _ in range(length)]
        capacity = rng.randint(0, alphabet + 1)
        assert belady_hit_ratio(stream, capacity) >= lru_hit_ratio(stream, capacity), (
            stream, capacity,
        )


def _brute_force_optimum(stream: Sequence[Hashable], capacity: int) -> int:
    """Most hits of any offline policy: after each request keep any subset that fits."""

    @functools.cache
    def best(i: int, held: frozenset[Hashable]) -> int:
        if i == len(stream):
            return 0
        key = stream[i]
        hit = 1 if key in held else 0
        pool = sorted(held | {key}, key=repr)
        choices = (
            frozenset(kept)
            for size in range(min(capacity, len(pool)) + 1)
            for kept in itertools.combinations(pool, size)
        )
        return hit + max(best(i + 1, kept) for kept in choices)

    return best(0, frozenset())


def test_belady_equals_the_brute_force_optimum_on_tiny_streams() -> None:
    """On every tiny case tried, Belady's hits equal an exhaustive search over cache contents."""
    rng = random.Random(5)
    for _case in range(150):
        length, alphabet = rng.randint(1, 9), rng.randint(1, 5)
        stream = [rng.randrange(alphabet) for _ in range(length)]
        capacity = rng.randint(0, 3)
        expected = _brute_force_optimum(stream, capacity) / len(stream)
        assert belady_hit_ratio(stream, capacity) == pytest.approx(expected), (stream, capacity)


def test_belady_accepts_keys_of_mixed_types() -> None:
    """Keys are only hashed, never compared, so ints and strings may share a stream."""
    assert belady_hit_ratio([1, "1", 1, "1", b"1"], 1) == pytest.approx(1 / 5)


# -- real traces -----------------------------------------------------------------


@pytest.fixture(scope="module")
def oltp() -> list[int]:
    """The ARC paper's OLTP trace, read once for the module."""
    return list(trace(shared_trace("arc_OLTP.lis.xz")))


def test_oltp_trace_has_the_published_size(oltp: list[int]) -> None:
    """914,145 requests over 186,880 distinct pages, as the ARC paper's Table III says."""
    assert len(oltp) == 914_145
    assert len(set(oltp)) == 186_880


@pytest.mark.parametrize(("capacity", "published"), sorted(PUBLISHED_OLTP_LRU.items()))
def test_lru_replay_matches_the_arc_paper_on_oltp(
    oltp: list[int], capacity: int, published: float
) -> None:
    """Our LRU replay gives the ARC paper's Table IV hit ratio to two decimals."""
    assert round(lru_hit_ratio(oltp, capacity) * 100, 2) == published


def test_belady_bounds_lru_on_oltp(oltp: list[int]) -> None:
    """On the real trace the offline optimum is well above LRU (53.6% vs 32.8% at 1,000)."""
    optimum = belady_hit_ratio(oltp, 1000)
    assert PUBLISHED_OLTP_LRU[1000] / 100 < optimum < 1.0


def test_lirs_trace_reads_every_key() -> None:
    """The LIRS 'loop' trace reads as 505,500 lines minus its '*' lines, all integers."""
    keys = list(trace(shared_trace("lirs_loop.trace.gz")))
    assert 500_000 < len(keys) <= 505_500
    assert all(type(k) is int for k in keys[:1000])
