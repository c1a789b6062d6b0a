"""W-TinyLFU: which keys an in-process tier keeps, decided by recency and frequency.

The policy follows Caffeine's (Einziger, Friedman and Manes, "TinyLFU: A
Highly Efficient Cache Admission Policy", 2017). New keys enter a small LRU
*window* (1% of the capacity), which absorbs bursts. A key pushed out of the
window becomes a *candidate* for the *main* region, a segmented LRU whose
*probation* segment holds keys seen once there and whose *protected* segment
(80% of main) holds keys hit again. When main is full the candidate competes
with probation's least recently used key, the *victim*: the one a count-min
sketch estimates as less frequent is evicted, the victim winning ties. A
one-time scan of cold keys therefore passes through the window without
displacing a frequently used working set, which plain LRU cannot do.

The window's share is then tuned by a hill climber (see :class:`TinyLFU`).

The policy only tracks keys; the entries themselves live with the tier
(storage never knows the policy, the policy never holds a value).
"""

from __future__ import annotations

import random
from collections import OrderedDict

__all__ = [
    "ADMIT_HASHDOS_THRESHOLD",
    "CLIMBER_MIN_STEP",
    "CLIMBER_RESTART_THRESHOLD",
    "CLIMBER_STEP",
    "CLIMBER_STEP_DECAY",
    "CLIMB_FACTOR",
    "GHOST_RATIO",
    "PROTECTED_RATIO",
    "SAMPLE_FACTOR",
    "WINDOW_RATIO",
    "FrequencySketch",
    "TinyLFU",
]

WINDOW_RATIO = 0.01
"""Share of the capacity given to the admission window (Caffeine's initial value)."""

PROTECTED_RATIO = 0.8
"""Share of the main region given to its protected segment."""

SAMPLE_FACTOR = 20
"""The sketch halves every counter after ``SAMPLE_FACTOR * capacity`` recorded events.
Caffeine halves after 10. Measured side by side (benchmarks/bench_admission.py, 5 hash
seeds), 20 hits as often or more on 18 of the 22 trace x size rows, ARC P3 at 10,000
entries 6.54% instead of 5.69% (theine 6.44%), LIRS loop at 101 8.95% instead of 7.35%;
it loses 0.28 points on ARC OLTP at 15,000, 0.35 on P3 at 100,000, 0.19 on LIRS multi2 at
568 and 1.09 on LIRS sprite at 708 (the last two under the bar either way)."""

ADMIT_HASHDOS_THRESHOLD = 6
"""A candidate this frequent that loses is still admitted 1 time in 128 (Caffeine's defence
against an attacker who keeps one victim's estimate high by colliding with it)."""

CLIMB_FACTOR = 10
"""The hill climber takes a step every ``CLIMB_FACTOR * capacity`` requests once the cache
is full (Caffeine's sample period: long enough that much of the cache turns over in one)."""

CLIMBER_STEP = 0.0625
"""The hill climber's largest step, as a share of the capacity moved between window and main."""

CLIMBER_MIN_STEP = 2
"""...and never fewer entries than this: a step that rounds to 0 entries never moves."""

CLIMBER_STEP_DECAY = 0.98
"""Each period's largest step is this much smaller than the last one's."""

CLIMBER_RESTART_THRESHOLD = 0.05
"""A hit-rate change this large between two periods (the workload changed) restores the
largest step to ``CLIMBER_STEP``."""

GHOST_RATIO = 0.0625
"""Keys each ghost list remembers, as a share of the capacity: the margin the climber weighs,
as large as its largest step."""

_MAX_COUNT = 15  # 4-bit counters, as in Caffeine's sketch: saturate instead of wrapping
_HALVE = bytes(b >> 1 for b in range(256))


class FrequencySketch:
    """Count-min sketch of recent access counts: 4 rows of counters saturating at 15.

    Each key maps to one counter per row by double hashing over two 30-bit
    slices of ``hash(key)`` (SipHash for the tier's str keys, so well spread),
    ``a`` and an odd ``b``: row ``r`` counts it at ``(a + r * b) mod width``. The
    estimate is the smallest of the four. Every ``sample_size`` increments all
    counters are halved ("reset" in the TinyLFU paper), so the sketch follows a
    workload whose popular keys change. Rows are ``4 * capacity`` counters wide
    (rounded up to a power of two): the 16 counters per entry Caffeine uses, at a
    byte each rather than its 4 bits (a bytearray indexes faster than packed nibbles).

    With ``doorkeeper=True`` a key's first occurrence in a sample period only
    sets a flag in a small Bloom-style filter; the counters see its second
    occurrence on. It keeps one-hit wonders out of the counters.

    Args:
        capacity: entries of the cache the sketch serves (at least 1).
        doorkeeper: put a doorkeeper filter in front of the counters.
        sample_factor: increments between halvings, per entry of capacity.
    """

    __slots__ = ("_door", "_door_mask", "_mask", "_rows", "additions", "sample_size")

    def __init__(
        self, capacity: int, *, doorkeeper: bool = False, sample_factor: int = SAMPLE_FACTOR
    ) -> None:
        capacity = max(1, capacity)
        # Rows of at most 2**30 counters: indexes come from 30-bit slices of the hash.
        width = 1 << min(30, max(4, (4 * capacity - 1).bit_length()))
        self._mask = width - 1
        # One array per row: an index needs no row offset added (one int fewer to make).
        self._rows = (bytearray(width), bytearray(width), bytearray(width), bytearray(width))
        self._door: bytearray | None = bytearray(4 * width) if doorkeeper else None
        self._door_mask = 4 * width - 1
        self.sample_size = sample_factor * capacity
        self.additions = 0

    def increment(self, key: object) -> None:
        """Record one occurrence of ``key``; halves every counter at the end of a sample."""
        # Inlined, no helper calls, small ints: this runs for every recorded hit and new key.
        h = hash(key)
        door = self._door
        if door is not None:
            d0 = h & self._door_mask
            d1 = (h >> 29) & self._door_mask
            if not (door[d0] and door[d1]):
                door[d0] = door[d1] = 1
                self.additions += 1
                if self.additions >= self.sample_size:
                    self.reset()
                return
        # The width divides 2**30, so both slices are taken mod the width
        # straight from the hash, and each row's index is the last one's plus
        # b (mod the width): the same counters, with fewer ints to make.
        mask = self._mask
        r0, r1, r2, r3 = self._rows
        i = h & mask
        step = ((h >> 30) | 1) & mask
        added = False
        c = r0[i]
        if c < _MAX_COUNT:
            r0[i] = c + 1
            added = True
        i = (i + step) & mask
        c = r1[i]
        if c < _MAX_COUNT:
            r1[i] = c + 1
            added = True
        i = (i + step) & mask
        c = r2[i]
        if c < _MAX_COUNT:
            r2[i] = c + 1
            added = True
        i = (i + step) & mask
        c = r3[i]
        if c < _MAX_COUNT:
            r3[i] = c + 1
            added = True
        if added:
            self.additions += 1
            if self.additions >= self.sample_size:
                self.reset()

    def frequency(self, key: object) -> int:
        """Estimated occurrences of ``key`` in the recent past (never an underestimate
        before a halving; at most 15, or 16 with the doorkeeper)."""
        h = hash(key)
        mask = self._mask
        r0, r1, r2, r3 = self._rows
        i0 = h & mask
        step = ((h >> 30) | 1) & mask
        i1 = (i0 + step) & mask
        i2 = (i1 + step) & mask
        count = min(r0[i0], r1[i1], r2[i2], r3[(i2 + step) & mask])
        door = self._door
        if door is not None and door[h & self._door_mask] and door[(h >> 29) & self._door_mask]:
            count += 1
        return count

    def reset(self) -> None:
        """Halve every counter (ageing), and empty the doorkeeper."""
        for row in self._rows:
            row[:] = row.translate(_HALVE)
        self.additions //= 2
        if self._door is not None:
            self._door[:] = bytes(len(self._door))

    def clear(self) -> None:
        """Forget everything."""
        for row in self._rows:
            row[:] = bytes(len(row))
        if self._door is not None:
            self._door[:] = bytes(len(self._door))
        self.additions = 0


class TinyLFU:
    """The W-TinyLFU policy over keys: window LRU, segmented main LRU, frequency admission.

    The window starts at ``window_ratio`` of the capacity and is then sized by
    a hill climber. Every sample period (``climb_factor`` times the capacity in
    requests, counted once the cache is full) it moves up to a step of capacity
    between window and main, toward the side whose margin would have hit more
    in that period, by the share of the evidence that favours it. The evidence
    is two ghost lists of the most recent keys each side lost: candidates the
    admission duel rejected (a larger window would have kept them a while
    longer) and victims it evicted from main (a larger main would have kept
    them). A miss on a ghost is a hit the other split would have had. The
    step shrinks by ``CLIMBER_STEP_DECAY`` every period and returns to
    ``CLIMBER_STEP`` when the hit rate jumps by ``CLIMBER_RESTART_THRESHOLD``.

    Caffeine's climber instead compares a period's hit rate with the last
    one's and keeps the direction while it rose. On recorded traces the hit
    rate moves between periods with the workload far more than with the
    window (ARC OLTP at 10,000 entries: 49.5%, 59.1%, 62.9%, 59.0%, 73.0%
    over its first periods), so that climber follows the workload's phases;
    both ghost lists see the same period, so phases cancel out of their
    comparison. One period's evidence never more than halves the window, so
    the first step cannot collapse it. Recency-heavy workloads so get a large
    window (LRU-like), frequency-heavy ones a small one.

    Not thread-safe: the tier calls it under its write lock. ``len()`` never
    exceeds ``maxsize``; :meth:`add` reports the keys it pushed out, which the
    tier then drops from its storage.

    Args:
        maxsize: most keys held.
        window_ratio: initial share of ``maxsize`` for the window (at least one key).
        protected_ratio: initial share of the main region for its protected segment.
        doorkeeper: see :class:`FrequencySketch`.
        adaptive: let the hill climber resize the window (Caffeine does).
        sample_factor: see :class:`FrequencySketch`.
        climb_factor: the climber's period, in requests per entry of capacity.
        seed: seeds the 1-in-128 admission of frequent losers, for reproducible runs.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        window_ratio: float = WINDOW_RATIO,
        protected_ratio: float = PROTECTED_RATIO,
        doorkeeper: bool = False,
        adaptive: bool = True,
        sample_factor: int = SAMPLE_FACTOR,
        climb_factor: int = CLIMB_FACTOR,
        seed: int = 0,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.window_max = min(maxsize, max(1, round(maxsize * window_ratio)))
        self.main_max = maxsize - self.window_max  # probation + protected
        self.protected_max = int(self.main_max * protected_ratio)
        self.sketch = FrequencySketch(maxsize, doorkeeper=doorkeeper, sample_factor=sample_factor)
        self._window: OrderedDict[str, None] = OrderedDict()
        self._probation: OrderedDict[str, None] = OrderedDict()
        self._protected: OrderedDict[str, None] = OrderedDict()
        self._random = random.Random(seed)
        self._adaptive = adaptive
        self._initial = (self.window_max, self.protected_max)
        self._sample_size = climb_factor * maxsize
        self._full_step = max(CLIMBER_STEP * maxsize, CLIMBER_MIN_STEP)
        self._ghost_max = max(CLIMBER_MIN_STEP, int(GHOST_RATIO * maxsize))
        self._rejected: OrderedDict[str, None] = OrderedDict()  # ghosts of lost candidates
        self._victims: OrderedDict[str, None] = OrderedDict()  # ghosts of evicted victims
        self._start_climber()

    def _start_climber(self) -> None:
        """The climber's state before the cache first fills."""
        self._filled = False  # sampling starts at the first eviction
        self._hits = 0
        self._misses = 0
        self._window_evidence = 0  # misses on rejected candidates this period
        self._main_evidence = 0  # misses on evicted victims this period
        self._rejected.clear()
        self._victims.clear()
        self._previous_hit_rate = 0.0
        self._step = self._full_step

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    def __contains__(self, key: object) -> bool:
        return key in self._window or key in self._probation or key in self._protected

    def region(self, key: str) -> str | None:
        """``"window"``, ``"probation"``, ``"protected"``, or ``None`` for a key not held."""
        for name, keys in (("window", self._window), ("probation", self._probation),
                           ("protected", self._protected)):
            if key in keys:
                return name
        return None

    def record(self, key: str) -> None:
        """A hit on ``key``: count it, and move it up its region (probation -> protected)."""
        self.sketch.increment(key)
        self._hits += 1
        protected, probation = self._protected, self._probation
        if key in protected:  # first: where most hits land
            protected.move_to_end(key)
        elif key in probation:
            del probation[key]
            protected[key] = None
            if len(protected) > self.protected_max:
                probation[protected.popitem(last=False)[0]] = None
        elif key in self._window:
            self._window.move_to_end(key)

    def add(self, key: str) -> list[str]:
        """A new key (not held): count it, put it in the window; return the keys evicted.

        The list may hold ``key`` itself: with a one-key window, the new key is
        at once the candidate, and it loses to a victim that is used more.
        """
        self.sketch.increment(key)
        self._misses += 1
        if self._rejected.pop(key, 0) is None:  # ghosts map to None
            self._window_evidence += 1
        elif self._victims.pop(key, 0) is None:
            self._main_evidence += 1
        window = self._window
        window[key] = None
        evicted: list[str] = []
        if len(window) > self.window_max:
            probation, protected = self._probation, self._protected
            while len(window) > self.window_max:
                candidate = window.popitem(last=False)[0]
                if len(probation) + len(protected) < self.main_max:
                    probation[candidate] = None  # room in main: no contest
                else:
                    evicted.append(self._duel(candidate))
            if evicted and not self._filled:
                self._filled = True  # full: the climber's first sample starts now
                self._hits = self._misses = self._window_evidence = self._main_evidence = 0
        if self._adaptive and self._filled and self._hits + self._misses >= self._sample_size:
            self._climb()
        return evicted

    def evict(self) -> str | None:
        """Evict one key as the policy would (for a second bound, e.g. bytes); ``None`` if empty."""
        if self._window and (self._probation or self._protected):
            return self._duel(self._window.popitem(last=False)[0])
        for keys in (self._probation, self._protected, self._window):
            if keys:
                return keys.popitem(last=False)[0]
        return None

    def remove(self, key: str) -> None:
        """Forget ``key`` (deleted or expired); absent keys are ignored."""
        for keys in (self._window, self._probation, self._protected):
            if keys.pop(key, 0) is None:  # held keys map to None
                return

    def clear(self) -> None:
        """Forget every key and every count; the regions return to their initial sizes."""
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self.sketch.clear()
        self.window_max, self.protected_max = self._initial
        self.main_max = self.maxsize - self.window_max
        self._start_climber()

    def _duel(self, candidate: str) -> str:
        """Candidate (already out of the window) against main's victim; returns the loser."""
        victims = self._probation or self._protected
        if not victims:
            return candidate
        victim = next(iter(victims))
        frequency = self.sketch.frequency
        candidate_freq = frequency(candidate)
        if candidate_freq > frequency(victim) or (
            candidate_freq >= ADMIT_HASHDOS_THRESHOLD and self._random.getrandbits(7) == 0
        ):
            del victims[victim]
            self._probation[candidate] = None
            self._remember(self._victims, victim)
            return victim
        self._remember(self._rejected, candidate)
        return candidate

    def _remember(self, ghosts: OrderedDict[str, None], key: str) -> None:
        ghosts[key] = None
        if len(ghosts) > self._ghost_max:
            ghosts.popitem(last=False)

    # -- the hill climber ------------------------------------------------------------

    def _climb(self) -> None:
        """End of a sample period: move capacity toward the side whose ghosts were missed more."""
        hit_rate = self._hits / (self._hits + self._misses)
        if abs(hit_rate - self._previous_hit_rate) >= CLIMBER_RESTART_THRESHOLD:
            self._step = self._full_step  # the workload changed: explore again
        self._previous_hit_rate = hit_rate
        window_side, main_side = self._window_evidence, self._main_evidence
        self._hits = self._misses = self._window_evidence = self._main_evidence = 0
        evidence = window_side + main_side
        amount = self._step * (window_side - main_side) / evidence if evidence else 0.0
        self._step *= CLIMBER_STEP_DECAY
        quota = int(amount)
        if quota > 0:
            self._grow_window(quota)
        elif quota < 0:
            self._shrink_window(min(-quota, self.window_max // 2))

    def _grow_window(self, quota: int) -> None:
        quota = min(quota, self.protected_max)
        self.protected_max -= quota
        self.window_max += quota
        self._demote_protected()
        for _ in range(quota):
            source = self._probation or self._protected
            if not source:
                break
            self._window[source.popitem(last=False)[0]] = None
            quota -= 1
        self.protected_max += quota  # what main could not hand over goes back
        self.window_max -= quota
        self.main_max = self.maxsize - self.window_max

    def _shrink_window(self, quota: int) -> None:
        quota = min(quota, self.window_max - 1)
        self.protected_max += quota
        self.window_max -= quota
        for _ in range(quota):
            if not self._window:
                break
            self._probation[self._window.popitem(last=False)[0]] = None
            quota -= 1
        self.protected_max -= quota
        self.window_max += quota
        self.main_max = self.maxsize - self.window_max

    def _demote_protected(self) -> None:
        protected, probation = self._protected, self._probation
        while len(protected) > self.protected_max:
            probation[protected.popitem(last=False)[0]] = None
