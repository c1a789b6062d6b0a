"""Consistency checker: record a history of reads and writes, then check every read against it.

A :class:`History` records operations from any number of threads (and, via
JSON lines, processes): who did it, on which key, what kind (``read``,
``write``, ``delete``), the value written or read, and when it was invoked
and when it completed. :func:`check` then asks, per key, whether each read
returned a value some write could have produced:

- ``mode="strict"`` (linearizable reads of a register): a read may return
  the value of any write that was not invoked after the read completed and
  that was not *certainly overwritten* before the read began, i.e. not
  followed (invoked after it completed) by another write that completed
  before the read was invoked. The initial value is allowed while no write
  had completed before the read began.
- ``mode="bounded"``: as strict, and a read may also return a value that
  was certainly overwritten at most ``window`` seconds before it began
  (the staleness the cache promises for copies in other processes).

This is the per-read check (every read is explained by a write that was
current at some point of the read's interval, give or take the window). It
is necessary for linearizability, not sufficient: it does not look for two
reads that see an older value after a newer one (new-old inversion) when
both values were legitimately current during the reads. That is the check
Jepsen's and Caffeine's simple register checks make, and the one that
catches a stale value put back into a tier.

Clock. Times come from ``time.monotonic`` by default. On Linux that is
``CLOCK_MONOTONIC``, one clock for the whole system, so histories recorded
by several processes on one host can be merged and compared directly (the
same holds on macOS and Windows, whose monotonic clocks are system-wide
too). It is not comparable across hosts: pass ``clock=time.time`` there,
and widen the window by the hosts' clock skew.

Values are compared by their canonical JSON form (so a tuple equals a
list, as it does after a round trip through JSON); ``tiercache.MISSING``
stands for "absent", which is what a ``delete`` writes and what a read of
an absent key returns.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._types import MISSING
from ._history import KINDS, History, Op, Pending
from ._history import Kind as Kind

__all__ = [
    "KINDS",
    "CheckReport",
    "History",
    "Op",
    "Pending",
    "Violation",
    "check",
]

Mode = Literal["strict", "bounded"]


@dataclass(frozen=True)
class Violation:
    """A read no write explains.

    Attributes:
        key: the key read.
        read: the offending read.
        allowed: the values the read could have returned (``MISSING`` for absent).
        stale_by: when the value read was once written and later certainly
            overwritten: how many seconds before the read began it was
            overwritten (``None`` if no write of the key ever wrote it).
    """

    key: str
    read: Op
    allowed: list[Any]
    stale_by: float | None

    def __str__(self) -> str:
        got = "MISSING" if self.read.value is MISSING else repr(self.read.value)
        allowed = ", ".join("MISSING" if v is MISSING else repr(v) for v in self.allowed)
        stale = (
            "never written"
            if self.stale_by is None
            else f"overwritten {self.stale_by:.4f}s before"
        )
        return (
            f"key {self.key!r}: {self.read.process} read {got} "
            f"[{self.read.invoke:.6f}, {self.read.complete:.6f}] ({stale}); allowed: {{{allowed}}}"
        )


@dataclass
class CheckReport:
    """What :func:`check` found.

    Attributes:
        mode, window: as given to :func:`check`.
        violations: every read no write explains, in key then time order.
        reads, writes, keys: how many completed reads were checked, how many
            writes and deletes (completed or not) there were, over how many keys.
        max_staleness: how stale the stalest read was, allowed or not: the
            largest, over reads of a value some write wrote, of how long
            before the read began that value was certainly overwritten (0.0
            when every read saw a value current during the read).
    """

    mode: Mode
    window: float
    violations: list[Violation] = field(default_factory=list)
    reads: int = 0
    writes: int = 0
    keys: int = 0
    max_staleness: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no read violates the mode."""
        return not self.violations

    def stale_keys(self) -> list[str]:
        """The keys with at least one violation."""
        return sorted({v.key for v in self.violations})

    def __str__(self) -> str:
        head = (
            f"{self.mode} check (window {self.window}s): {self.reads} reads, {self.writes} "
            f"writes over {self.keys} keys: {len(self.violations)} violations, "
            f"max staleness {self.max_staleness:.4f}s"
        )
        shown = [f"  {v}" for v in self.violations[:20]]
        if len(self.violations) > 20:
            shown.append(f"  ... and {len(self.violations) - 20} more")
        return "\n".join([head, *shown])


def check(
    history: History | Iterable[Op],
    mode: Mode = "bounded",
    window: float = 1.0,
    *,
    initial: Any = MISSING,
) -> CheckReport:
    """Check every completed read of ``history`` against the writes of its key.

    Args:
        history: a :class:`History` (or its operations), possibly merged from
            several processes; all times from one clock.
        mode: ``"strict"`` (linearizable reads; ``window`` is ignored) or
            ``"bounded"`` (a read may also return a value overwritten at most
            ``window`` seconds before it began).
        window: seconds of staleness ``"bounded"`` allows.
        initial: each key's value before the first write: ``MISSING``
            (absent) by default, or a mapping ``{key: value}`` (keys missing
            from it start absent).

    Returns:
        A :class:`CheckReport`; ``report.ok`` is True when no read violates.

    Raises:
        ValueError: an unknown mode, or a negative window.
    """
    if mode not in ("strict", "bounded"):
        raise ValueError(f"mode must be 'strict' or 'bounded', got {mode!r}")
    if mode == "bounded" and (not math.isfinite(window) or window < 0):
        raise ValueError(f"window must be a finite number of seconds >= 0, got {window!r}")
    slack = window if mode == "bounded" else 0.0
    report = CheckReport(mode=mode, window=slack)
    by_key: dict[str, tuple[list[Op], list[Op]]] = {}
    ops = history.ops if isinstance(history, History) else list(history)
    for op in ops:
        reads, writes = by_key.setdefault(op.key, ([], []))
        if op.kind == "read":
            if op.complete is not None:
                reads.append(op)
        else:
            writes.append(op)
    report.keys = len(by_key)
    for key in sorted(by_key):
        reads, writes = by_key[key]
        report.reads += len(reads)
        report.writes += len(writes)
        start = initial.get(key, MISSING) if isinstance(initial, Mapping) else initial
        _check_key(key, reads, writes, start, slack, report)
    return report


def _check_key(
    key: str, reads: list[Op], writes: list[Op], initial: Any, slack: float, report: CheckReport
) -> None:
    """Check one key's reads (see :func:`check`); appends to ``report``."""
    inf = math.inf
    ends = [inf if w.complete is None else w.complete for w in writes]
    # When each write was certainly overwritten: the earliest completion of a
    # write invoked after it completed (inf: never). Writes sorted by invoke
    # time, with a suffix minimum of completion times, answer it by bisection.
    order = sorted(range(len(writes)), key=lambda i: writes[i].invoke)
    invokes = [writes[i].invoke for i in order]
    suffix_min = [inf] * (len(order) + 1)
    for n in range(len(order) - 1, -1, -1):
        suffix_min[n] = min(suffix_min[n + 1], ends[order[n]])
    overwritten = [suffix_min[bisect.bisect_right(invokes, ends[i])] for i in range(len(writes))]
    first_complete = min(ends, default=inf)
    # The initial value is overwritten once any write has completed.
    by_value: dict[str, list[int]] = {}
    for i, w in enumerate(writes):
        by_value.setdefault(_canon(w.value), []).append(i)
    initial_canon = _canon(initial)

    for r in reads:
        assert r.complete is not None
        horizon = r.invoke - slack  # overwritten before this: not allowed
        canon = _canon(r.value)
        # How stale the read is: the least, over the writes that wrote its
        # value, of how long before the read began that write was certainly
        # overwritten (0 when it was current at some point of the read).
        stale_by: float | None = None
        for i in by_value.get(canon, ()):
            if writes[i].invoke > r.complete:
                continue  # written after the read returned
            gap = max(0.0, r.invoke - overwritten[i])
            stale_by = gap if stale_by is None else min(stale_by, gap)
            if gap == 0.0:
                break
        if canon == initial_canon and stale_by != 0.0:
            gap = max(0.0, r.invoke - first_complete)
            stale_by = gap if stale_by is None else min(stale_by, gap)
        if stale_by is not None:
            report.max_staleness = max(report.max_staleness, stale_by)
            if stale_by <= slack:
                continue
        allowed: list[Any] = []
        seen: set[str] = set()
        if first_complete >= horizon:
            allowed.append(initial)
            seen.add(initial_canon)
        for i in order:
            w = writes[i]
            if w.invoke <= r.complete and overwritten[i] >= horizon:
                c = _canon(w.value)
                if c not in seen:
                    seen.add(c)
                    allowed.append(w.value)
        report.violations.append(Violation(key, r, allowed, stale_by))


def _canon(value: Any) -> str:
    """A value's identity for comparison: canonical JSON; MISSING apart from every value."""
    if value is MISSING:
        return "\x00missing"
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
