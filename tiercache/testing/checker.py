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
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal, TypeVar

from .._types import MISSING

__all__ = [
    "KINDS",
    "CheckReport",
    "History",
    "Op",
    "Pending",
    "Violation",
    "check",
]

Kind = Literal["read", "write", "delete"]
KINDS: tuple[Kind, ...] = ("read", "write", "delete")
"""The kinds of operation a history holds."""

Mode = Literal["strict", "bounded"]

T = TypeVar("T")

_ABSENT_JSON = {"$tiercache": "missing"}  # how MISSING travels in JSON lines


@dataclass(frozen=True)
class Op:
    """One recorded operation.

    Attributes:
        process: who performed it (a process, client or thread label).
        key: the key, as a string (histories are checked per key).
        kind: ``"read"``, ``"write"`` or ``"delete"``.
        value: what a write wrote or a read returned; ``MISSING`` for absence
            (a delete's value is always ``MISSING``).
        invoke: clock time when the call began.
        complete: clock time when it returned; ``None`` if it raised or never
            returned. A write that did not complete may or may not have taken
            effect; a read that did not complete is not checked.
        id: order of recording within its history (diagnostics only).
    """

    process: str
    key: str
    kind: Kind
    value: Any
    invoke: float
    complete: float | None
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``MISSING`` encoded as a marker object)."""
        out = asdict(self)
        out["value"] = _ABSENT_JSON if self.value is MISSING else self.value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Op:
        """The inverse of :meth:`to_json`."""
        value = data.get("value")
        if value == _ABSENT_JSON:
            value = MISSING
        kind = data["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}")
        complete = data.get("complete")
        return cls(
            process=str(data["process"]),
            key=str(data["key"]),
            kind=kind,
            value=MISSING if kind == "delete" else value,
            invoke=float(data["invoke"]),
            complete=None if complete is None else float(complete),
            id=int(data.get("id", 0)),
        )


class Pending:
    """An operation invoked and not yet completed; finish it with ``ok`` or ``fail``."""

    __slots__ = ("_done", "_history", "_invoke", "_key", "_kind", "_process", "_value")

    def __init__(
        self, history: History, process: str, key: str, kind: Kind, value: Any, invoke: float
    ) -> None:
        self._history = history
        self._process = process
        self._key = key
        self._kind = kind
        self._value = value
        self._invoke = invoke
        self._done = False

    def ok(self, value: Any = MISSING) -> Op:
        """The call returned; a read passes the value it returned (``MISSING`` for absent)."""
        complete = self._history.clock()
        if self._kind == "read":
            result = value
        elif self._kind == "delete":
            result = MISSING
        else:
            result = self._value
        return self._finish(result, complete)

    def fail(self) -> Op:
        """The call raised: a write's effect is unknown, a read is left unchecked."""
        return self._finish(self._value, None)

    def _finish(self, value: Any, complete: float | None) -> Op:
        if self._done:
            raise RuntimeError("this operation was already completed")
        self._done = True
        return self._history._append(
            self._process, self._key, self._kind, value, self._invoke, complete
        )


class History:
    """A thread-safe record of operations, mergeable across processes as JSON lines.

    Args:
        process: the default ``process`` label of operations recorded here
            (``"pid-<os.getpid()>"`` when omitted).
        clock: seconds; ``time.monotonic`` (system-wide on Linux, see the
            module docstring), or ``time.time`` for histories from several hosts.

    Use :meth:`read`, :meth:`write` and :meth:`delete` to time and record a
    call, :meth:`invoke` to record one by hand, or :meth:`add` to build a
    history from known times (unit tests).
    """

    def __init__(
        self, process: str | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.process = process if process is not None else f"pid-{os.getpid()}"
        self.clock = clock
        self._ops: list[Op] = []
        self._lock = threading.Lock()
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    @property
    def ops(self) -> list[Op]:
        """A snapshot of the operations recorded so far, in recording order."""
        with self._lock:
            return list(self._ops)

    # -- recording ------------------------------------------------------------

    def invoke(
        self, kind: Kind, key: Any, value: Any = MISSING, *, process: str | None = None
    ) -> Pending:
        """Note that an operation begins now; complete it with the returned ``Pending``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        label = process if process is not None else self.process
        return Pending(self, label, str(key), kind, value, self.clock())

    def read(self, key: Any, call: Callable[[], T], *, process: str | None = None) -> T:
        """Run ``call`` (which reads ``key``), record it as a read, return its result.

        ``call`` returns the value read, ``MISSING`` for absent. If it raises,
        the read is recorded as incomplete and the exception propagates.
        """
        pending = self.invoke("read", key, process=process)
        try:
            result = call()
        except BaseException:
            pending.fail()
            raise
        pending.ok(result)
        return result

    def write(
        self, key: Any, value: Any, call: Callable[[], T], *, process: str | None = None
    ) -> T:
        """Run ``call`` (which writes ``value`` to ``key``) and record it as a write."""
        pending = self.invoke("write", key, value, process=process)
        try:
            result = call()
        except BaseException:
            pending.fail()
            raise
        pending.ok()
        return result

    def delete(self, key: Any, call: Callable[[], T], *, process: str | None = None) -> T:
        """Run ``call`` (which deletes ``key``) and record it as a delete."""
        pending = self.invoke("delete", key, process=process)
        try:
            result = call()
        except BaseException:
            pending.fail()
            raise
        pending.ok()
        return result

    def add(
        self,
        kind: Kind,
        key: Any,
        value: Any,
        invoke: float,
        complete: float | None,
        *,
        process: str | None = None,
    ) -> Op:
        """Record an operation with known times (hand-made histories)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if complete is not None and complete < invoke:
            raise ValueError(
                f"an operation cannot complete ({complete}) before it began ({invoke})"
            )
        return self._append(
            process if process is not None else self.process,
            str(key),
            kind,
            MISSING if kind == "delete" else value,
            invoke,
            complete,
        )

    def _append(
        self, process: str, key: str, kind: Kind, value: Any, invoke: float, complete: float | None
    ) -> Op:
        with self._lock:
            op = Op(process, key, kind, value, invoke, complete, next(self._ids))
            self._ops.append(op)
        return op

    # -- JSON lines -------------------------------------------------------------

    def dump(self, out: IO[str]) -> None:
        """Write the history as JSON lines (one operation a line)."""
        for op in self.ops:
            out.write(json.dumps(op.to_json(), sort_keys=True, default=repr) + "\n")

    def dumps(self) -> str:
        """The history as JSON lines."""
        return "".join(
            json.dumps(op.to_json(), sort_keys=True, default=repr) + "\n" for op in self.ops
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the history to ``path`` as JSON lines."""
        with open(path, "w", encoding="utf-8") as out:
            self.dump(out)

    @classmethod
    def loads(cls, text: str, *, process: str | None = None) -> History:
        """A history from JSON lines (blank lines ignored)."""
        history = cls(process)
        for line in text.splitlines():
            if line.strip():
                history._extend([Op.from_json(json.loads(line))])
        return history

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """A history from a JSON-lines file written by :meth:`save`."""
        with open(path, encoding="utf-8") as src:
            return cls.loads(src.read())

    @classmethod
    def merge(cls, *histories: History) -> History:
        """One history holding every operation of ``histories`` (same clock assumed)."""
        merged = cls("merged")
        for history in histories:
            merged._extend(history.ops)
        return merged

    def _extend(self, ops: Iterable[Op]) -> None:
        with self._lock:
            for op in ops:
                self._ops.append(
                    Op(op.process, op.key, op.kind, op.value, op.invoke, op.complete,
                       next(self._ids))
                )


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
            "never written" if self.stale_by is None else f"overwritten {self.stale_by:.4f}s before"
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
