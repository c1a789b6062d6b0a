"""The history of a consistency check: operations recorded from threads and processes."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import IO, Any, Literal, TypeVar

from .._types import MISSING

__all__ = ["KINDS", "History", "Kind", "Op", "Pending"]

Kind = Literal["read", "write", "delete"]
KINDS: tuple[Kind, ...] = ("read", "write", "delete")
"""The kinds of operation a history holds."""

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
            docstring of :mod:`tiercache.testing.checker`), or ``time.time``
            for histories from several hosts.

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
