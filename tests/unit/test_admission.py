"""W-TinyLFU: the frequency sketch, the policy, and MemoryTier(admission="tinylfu")."""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

import pytest

import tiercache as tc
from tiercache.errors import ConfigurationError
from tiercache.testing.clock import FakeClock
from tiercache.tiers.admission import FrequencySketch, TinyLFU
from tiercache.tiers.memory import ADMISSIONS, READ_BUFFER_SIZE


def put(tier: tc.MemoryTier, key: str, value: Any = None, ttl: float | None = None,
        size: int = 1, now: float = 0.0) -> None:
    tier.set_many([(key, key if value is None else value, ttl, size)], now)


def held(tier: tc.MemoryTier, keys: list[str], now: float = 0.0) -> set[str]:
    """The keys the tier answers for (expired ones count as absent)."""
    return {k for k, a in zip(keys, tier.get_many(keys, now), strict=True) if a is not None}


def policy(tier: tc.MemoryTier) -> TinyLFU:
    """The W-TinyLFU policy behind a tinylfu tier."""
    return tier._data.policy  # type: ignore[union-attr]


def check_consistent(tier: tc.MemoryTier) -> None:
    """The policy tracks exactly the stored keys, and every region is within its bound."""
    p = policy(tier)
    assert len(p) == len(tier) <= tier.maxsize
    assert all(k in p for k in tier._data)
    assert len(p._window) <= p.window_max
    assert len(p._probation) + len(p._protected) <= p.main_max
    assert len(p._protected) <= p.protected_max
    assert p.window_max + p.main_max == tier.maxsize


# -- the frequency sketch --------------------------------------------------------


def test_sketch_estimate_grows_with_each_occurrence_up_to_15() -> None:
    """Each increment raises a key's estimate by one until the counters saturate at 15."""
    sketch = FrequencySketch(1_000)
    estimates = [sketch.frequency("hot")]
    for _ in range(20):
        sketch.increment("hot")
        estimates.append(sketch.frequency("hot"))
    assert estimates[:16] == list(range(16))
    assert estimates[16:] == [15] * 5


def test_sketch_never_underestimates_and_ranks_hot_above_cold() -> None:
    """Among 2,000 keys, every estimate is at least the true count; hot keys outrank cold ones."""
    sketch = FrequencySketch(1_000)
    rng = random.Random(1)
    truth: dict[str, int] = {}
    for key in [f"hot{i}" for i in range(50)] * 8 + [f"cold{i}" for i in range(2_000)]:
        truth[key] = truth.get(key, 0) + 1
    stream = [k for k, n in truth.items() for _ in range(n)]
    rng.shuffle(stream)
    for key in stream:
        sketch.increment(key)
    assert sketch.additions < sketch.sample_size  # no halving in between
    assert all(sketch.frequency(k) >= n for k, n in truth.items())
    cold_high = sum(sketch.frequency(f"cold{i}") >= 8 for i in range(2_000))
    assert cold_high <= 20  # collisions make a few cold keys look hot, not many


def test_sketch_halves_every_counter_after_a_sample() -> None:
    """After sample_size increments every estimate is halved, and so is the addition count."""
    sketch = FrequencySketch(16)
    for _ in range(12):
        sketch.increment("a")
    for _ in range(6):
        sketch.increment("b")
    assert (sketch.frequency("a"), sketch.frequency("b")) == (12, 6)
    before = sketch.additions
    sketch.reset()
    assert (sketch.frequency("a"), sketch.frequency("b")) == (6, 3)
    assert sketch.additions == before // 2


def test_sketch_resets_on_its_own_at_the_sample_size() -> None:
    """Incrementing past sample_size triggers the halving without being asked."""
    sketch = FrequencySketch(10)  # sample size 10 x SAMPLE_FACTOR
    for _ in range(15):
        sketch.increment("hot")
    i = 0
    while sketch.additions < sketch.sample_size - 1 and i < 10_000:
        sketch.increment(f"filler{i}")
        i += 1
    assert sketch.frequency("hot") == 15
    sketch.increment("one-more")
    assert sketch.frequency("hot") == 7
    assert sketch.additions < sketch.sample_size


def test_doorkeeper_takes_the_first_occurrence() -> None:
    """With a doorkeeper, a first occurrence only sets the filter; counting starts at the second."""
    sketch = FrequencySketch(1_000, doorkeeper=True)
    assert sketch.frequency("k") == 0
    sketch.increment("k")
    assert sketch.frequency("k") == 1
    sketch.increment("k")
    sketch.increment("k")
    assert sketch.frequency("k") == 3
    sketch.reset()
    assert sketch.frequency("k") == 1  # counters halved (2 -> 1), doorkeeper emptied


def test_sketch_clear_forgets_everything() -> None:
    """clear() puts every estimate back to zero."""
    sketch = FrequencySketch(100, doorkeeper=True)
    for _ in range(5):
        sketch.increment("k")
    sketch.clear()
    assert sketch.frequency("k") == 0 and sketch.additions == 0


# -- the policy ------------------------------------------------------------------


def test_policy_regions_have_caffeine_proportions() -> None:
    """A 1,000-key policy starts with a 10-key window and a protected segment of 80% of main."""
    p = TinyLFU(1_000)
    assert (p.window_max, p.main_max, p.protected_max) == (10, 990, 792)
    tiny = TinyLFU(1)
    assert (tiny.window_max, tiny.main_max) == (1, 0)


def test_policy_candidate_must_beat_the_victim() -> None:
    """A key pushed out of the window replaces main's victim only if it is more frequent."""
    p = TinyLFU(100, adaptive=False)  # a one-key window
    for i in range(100):
        assert p.add(f"k{i}") == []
    assert len(p) == 100 and p.region("k99") == "window"
    victim = next(iter(p._probation))
    for _ in range(3):
        p.sketch.increment(victim)  # seen 4 times
    assert p.add("cold") == ["k99"]  # candidate k99, seen once, loses
    for _ in range(10):
        p.sketch.increment("popular")  # seen before, while not cached
    assert p.add("popular") == ["cold"]
    assert p.add("push") == [victim]  # candidate "popular" wins
    assert p.region("popular") == "probation"
    assert len(p) == 100


def test_policy_hit_promotes_probation_to_protected() -> None:
    """A hit on a probation key moves it to protected; protected overflow is demoted, kept."""
    p = TinyLFU(10, protected_ratio=0.5, adaptive=False)
    for i in range(10):
        p.add(f"k{i}")
    assert p.region("k0") == "probation"
    p.record("k0")
    assert p.region("k0") == "protected"
    for i in range(1, 9):
        p.record(f"k{i}")
    assert len(p._protected) == p.protected_max
    assert len(p) == 10


def test_policy_climber_resizes_the_window_within_capacity() -> None:
    """The hill climber moves capacity between window and main; the total stays maxsize."""
    p = TinyLFU(1_000)
    for i in range(1_000):
        p.add(f"k{i}")
    sizes = []
    # Evidence for one side, then the other: the climber reverses course.
    for window, main in ((5, 0), (9, 1), (0, 5), (3, 1), (0, 9), (7, 0), (1, 8)):
        p._window_evidence, p._main_evidence = window, main
        p._hits, p._misses = 50, 50
        p._climb()
        sizes.append(p.window_max)
        assert p.window_max + p.main_max == 1_000
        assert p.window_max >= 1 and 0 <= p.protected_max <= p.main_max
        assert len(p._window) <= p.window_max
        assert len(p._probation) + len(p._protected) <= p.main_max
        assert len(p) == 1_000
    assert max(sizes) > 10  # it grew the window at some point


def _fill(p: TinyLFU) -> int:
    """Add new keys until the policy first evicts (it is full); returns how many were added."""
    n = 0
    while not p.add(f"fill{n}"):
        n += 1
    return n + 1


def _request(p: TinyLFU, key: str) -> None:
    """One request as the tier makes it: a hit is recorded, a miss added."""
    if key in p:
        p.record(key)
    else:
        p.add(key)


def _evidence(p: TinyLFU, window: int, main: int, hit_rate: float = 0.5) -> int:
    """End a sample period with this many misses on each ghost list; the window's change."""
    before = p.window_max
    p._window_evidence, p._main_evidence = window, main
    p._hits, p._misses = int(hit_rate * 1000), 1000 - int(hit_rate * 1000)
    p._climb()
    assert p.window_max + p.main_max == p.maxsize
    return p.window_max - before


def test_climber_grows_the_window_when_rejected_candidates_come_back() -> None:
    """Keys re-requested soon after the duel rejected them (recency) make the window grow."""
    p = TinyLFU(1_000)
    for _ in range(3):  # a frequent working set fills main: new keys lose their duels
        for j in range(1_000):
            _request(p, f"hot{j}")
    assert p.window_max == 10
    for i in range(10_000):
        _request(p, f"new{i}")
        if i >= 20:
            _request(p, f"new{i - 20}")  # back after leaving the 10-key window
    assert p.window_max >= 10 + 62  # at least one full step of 6.25% of the capacity
    assert len(p) == 1_000


def test_climber_samples_ten_times_the_capacity_once_full() -> None:
    """A small cache climbs after 10 x capacity requests counted from when it filled, not 10,000."""
    p = TinyLFU(100)
    added = _fill(p)
    assert added > 100  # the window overflows into an empty main first
    initial = p.window_max
    p._window_evidence = 5  # what the period's misses on rejected candidates would leave
    for i in range(999):
        p.add(f"new{i}")
    assert p.window_max == initial  # the warm-up's requests are not part of the sample
    p.add("one more")
    assert p.window_max > initial


def test_climber_moves_by_the_share_of_the_evidence_and_decays() -> None:
    """A step is the full step times (window - main) / (window + main); steps shrink by 2%."""
    p = TinyLFU(10_000)
    _fill(p)
    assert _evidence(p, 10, 0) == 625
    assert _evidence(p, 10, 0) == 612  # 625 x 0.98
    assert _evidence(p, 3, 1) == 300  # 612.5 x 0.98 x (3 - 1) / 4
    assert _evidence(p, 0, 0) == 0  # no evidence: no move
    assert _evidence(p, 1, 1) == 0


def test_climber_never_more_than_halves_the_window_in_a_period() -> None:
    """Evidence for main shrinks the window, at most by half a period: the first step cannot
    collapse it to one key."""
    p = TinyLFU(10_000)
    _fill(p)
    assert p.window_max == 100
    assert _evidence(p, 0, 50) == -50
    assert _evidence(p, 0, 50) == -25
    while p.window_max > 1:
        _evidence(p, 0, 50)
    assert _evidence(p, 0, 50) == 0
    assert p.window_max == 1


def test_climber_restarts_with_a_full_step_when_the_hit_rate_jumps() -> None:
    """A change of 5 points or more restores the step to 6.25% of the capacity."""
    p = TinyLFU(10_000)
    _fill(p)
    for _ in range(5):
        _evidence(p, 10, 0, hit_rate=0.40)
    assert _evidence(p, 10, 0, hit_rate=0.41) < 625
    assert _evidence(p, 10, 0, hit_rate=0.47) == 625


# -- MemoryTier(admission="tinylfu") ---------------------------------------------


@pytest.mark.parametrize("bad", ["lfu", "", "TinyLFU", "LRU", None, 1, True])
def test_bad_admission_raises_configuration_error(bad: Any) -> None:
    """An admission other than "lru" or "tinylfu" raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        tc.MemoryTier(admission=bad)


def test_admission_is_reported() -> None:
    """The chosen policy is an attribute and shows in repr."""
    tier = tc.MemoryTier(admission="tinylfu")
    assert tier.admission == "tinylfu"
    assert "tinylfu" in repr(tier)


def test_lookup_returns_the_entry_or_raises_key_error() -> None:
    """lookup(key) gives (value, expires_at, size) on a hit and raises KeyError on a miss."""
    tier = tc.MemoryTier(admission="tinylfu")
    obj = object()
    put(tier, "k", obj, ttl=10.0, size=7, now=100.0)
    value, expires_at, size = tier.lookup("k")
    assert value is obj and expires_at == 110.0 and size == 7
    with pytest.raises(KeyError):
        tier.lookup("absent")


def test_hits_via_lookup_count_once_the_buffer_drains() -> None:
    """Hits through lookup are buffered, and reach the sketch at the next write."""
    tier = tc.MemoryTier(maxsize=100, admission="tinylfu")
    put(tier, "k")
    sketch = policy(tier).sketch
    before = sketch.frequency("k")
    for _ in range(5):
        tier.lookup("k")
    assert sketch.frequency("k") == before  # buffered, not yet counted
    put(tier, "other")
    assert sketch.frequency("k") == before + 5


def test_read_buffer_is_bounded() -> None:
    """Without writes, the read buffer keeps at most READ_BUFFER_SIZE hits."""
    tier = tc.MemoryTier(admission="tinylfu")
    put(tier, "k")
    for _ in range(READ_BUFFER_SIZE * 3):
        tier.lookup("k")
    assert len(tier._data.reads) == READ_BUFFER_SIZE  # type: ignore[union-attr]


def test_scan_does_not_flush_a_hot_working_set() -> None:
    """A one-time scan of 2,000 cold keys leaves a hot set in a tinylfu tier, not in an lru one."""
    hot = [f"hot{i}" for i in range(50)]
    scan = [f"scan{i}" for i in range(2_000)]
    kept = {}
    for admission in ADMISSIONS:
        tier = tc.MemoryTier(maxsize=100, admission=admission)
        for k in hot:
            put(tier, k)
        for r in range(10):
            for k in hot:
                tier.lookup(k)  # hits
            put(tier, f"warm{r}")  # a write drains the hits into the policy
        for k in scan:  # the namespace's path: a miss, then a fill
            assert tier.get_many([k], 0.0) == [None]
            put(tier, k)
        kept[admission] = len(held(tier, hot))
        assert len(tier) <= 100
    assert kept["lru"] == 0
    assert kept["tinylfu"] >= 45


def test_maxsize_bounds_entries() -> None:
    """However many entries are written, len never exceeds maxsize, and evictions add up."""
    tier = tc.MemoryTier(maxsize=10, admission="tinylfu")
    for i in range(500):
        put(tier, f"k{i}")
        assert len(tier) <= 10
    assert len(tier) == 10
    assert tier.evictions == 490
    check_consistent(tier)


def test_maxsize_one_keeps_the_newest() -> None:
    """With room for a single entry, the tier holds exactly one entry after every write."""
    tier = tc.MemoryTier(maxsize=1, admission="tinylfu")
    for i in range(20):
        put(tier, f"k{i}")
        assert len(tier) == 1
    check_consistent(tier)


def test_maxbytes_bounds_the_sum_of_sizes() -> None:
    """With maxbytes, the sum of the charges held stays within it after every write."""
    tier = tc.MemoryTier(maxsize=100, maxbytes=100, admission="tinylfu")
    rng = random.Random(3)
    for _ in range(500):
        put(tier, f"k{rng.randrange(300)}", size=rng.randrange(1, 40))
        assert tier.currbytes is not None and tier.currbytes <= 100
        assert tier.currbytes == sum(len(k) + tier.lookup(k)[2] for k in list(tier._data))
    check_consistent(tier)


def test_maxbytes_and_maxsize_both_apply() -> None:
    """The tighter of entry count and bytes wins."""
    tier = tc.MemoryTier(maxsize=3, maxbytes=1_000, admission="tinylfu")
    for i in range(10):
        put(tier, f"k{i}", size=1)
    assert len(tier) == 3 and tier.currbytes == 3 * (2 + 1)  # 2-byte keys, 1-byte values


def test_entry_bigger_than_maxbytes_is_refused_and_drops_older_copy() -> None:
    """An entry larger than maxbytes is not stored, and an older copy of its key goes too."""
    tier = tc.MemoryTier(maxbytes=100, admission="tinylfu")
    put(tier, "k", "small", size=10)
    put(tier, "k", "huge", size=500)
    assert held(tier, ["k"]) == set()
    assert tier.currbytes == 0
    check_consistent(tier)


def test_overwrite_replaces_value_and_size() -> None:
    """A second write to a key replaces value and size without growing the tier."""
    tier = tc.MemoryTier(maxbytes=1_000, admission="tinylfu")
    put(tier, "a", 1, size=10)
    put(tier, "a", 2, size=5)
    assert tier.lookup("a")[0] == 2
    assert len(tier) == 1 and tier.currbytes == 1 + 5


def test_entry_ttl_is_honoured_on_a_fake_clock() -> None:
    """An entry is served with its remaining TTL until it expires, then is a miss and is dropped."""
    clock = FakeClock()
    tier = tc.MemoryTier(admission="tinylfu")
    put(tier, "k", "v", ttl=5.0, now=clock())
    clock.advance(4)
    [hit] = tier.get_many(["k"], clock())
    assert isinstance(hit, tuple) and hit[0] == "v" and hit[1] == pytest.approx(1.0)
    clock.advance(1.001)
    assert tier.get_many(["k"], clock()) == [None]
    assert len(tier) == 0
    check_consistent(tier)


def test_tier_ttl_is_a_ceiling() -> None:
    """The tier's ttl caps entries written with a longer TTL or none."""
    clock = FakeClock()
    tier = tc.MemoryTier(ttl=10, admission="tinylfu")
    put(tier, "none", ttl=None, now=clock())
    put(tier, "long", ttl=60.0, now=clock())
    put(tier, "short", ttl=3.0, now=clock())
    hits = tier.get_many(["none", "long", "short"], clock())
    assert [h[1] if isinstance(h, tuple) else None for h in hits] == [10.0, 10.0, 3.0]
    clock.advance(10)
    assert tier.get_many(["none", "long", "short"], clock()) == [None, None, None]


def test_deletes_prefix_drops_and_clear_keep_policy_in_step() -> None:
    """delete_many, delete_prefix and clear leave the policy tracking exactly the stored keys."""
    tier = tc.MemoryTier(maxsize=50, admission="tinylfu")
    for i in range(80):
        put(tier, f"{'a' if i % 2 else 'b'}:{i}")
    tier.delete_many(["a:79", "b:78", "absent"])
    check_consistent(tier)
    tier.delete_prefix("a:")
    assert all(not k.startswith("a:") for k in tier._data)
    check_consistent(tier)
    tier.clear()
    assert len(tier) == 0 and len(policy(tier)) == 0
    put(tier, "again")
    assert tier.lookup("again")[0] == "again"
    check_consistent(tier)


def test_namespace_reads_through_a_tinylfu_tier() -> None:
    """A namespace over a tinylfu L1 serves its hits from L1 and its misses from the store."""
    store = tc.MappingStore({"a": 1, "b": 2})
    with tc.Cache(tiers=[tc.MemoryTier(maxsize=10, admission="tinylfu")], store=store) as cache:
        ns = cache.namespace("n")
        assert ns.get("a") == 1 and ns.get("b") == 2
        assert ns.get("a") == 1
        assert ns.tier_stats[0].hits >= 1
        assert ns.get("absent") is None


def test_concurrent_use_stays_within_bounds() -> None:
    """8 threads mixing writes, reads, lookups and deletes: no exception, bounds and policy hold."""
    tier = tc.MemoryTier(maxsize=64, maxbytes=2_000, admission="tinylfu")
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads as much as possible

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for i in range(2_000):
                key = f"k{rng.randrange(200)}"
                op = rng.random()
                if op < 0.4:
                    put(tier, key, i, ttl=rng.choice([None, 0.001, 100.0]),
                        size=rng.randrange(1, 60), now=float(i))
                elif op < 0.7:
                    for answer in tier.get_many([key, f"k{rng.randrange(200)}"], float(i)):
                        assert answer is None or isinstance(answer, tuple)
                elif op < 0.95:
                    try:
                        tier.lookup(key)
                    except KeyError:
                        pass
                elif op < 0.99:
                    tier.delete_many([key])
                else:
                    tier.delete_prefix(f"k{rng.randrange(10)}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(tier) <= 64
    assert tier.currbytes is not None and tier.currbytes <= 2_000
    check_consistent(tier)
    put(tier, "after")  # still usable
    check_consistent(tier)
