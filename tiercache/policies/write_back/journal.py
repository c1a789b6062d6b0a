"""A namespace's write-back journal: the runtime state of WriteBack, and its writes and reads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..._engine.ops import Plan, perform, run
from ..._engine.views import JournalOps
from ..._types import MISSING, Key
from ...errors import CapacityError, SerializationError, StoreError, TierError
from ...keys import encode_key
from ...scheduler import Handle
from ..base import Target, WriteContext, WriteOutcome
from . import flusher
from .flusher import warn

if TYPE_CHECKING:
    from .policy import WriteBack

__all__ = ["TOMBSTONE", "WriteBackJournal"]

log = logging.getLogger("tiercache")

TOMBSTONE = b""
"""A pending delete: no serializer writes empty bytes."""

_FILL_LOCAL = WriteOutcome(fill_local=True)
_FILL_LOCAL_ANNOUNCED = WriteOutcome(fill_local=True, announced=True)


class WriteBackJournal:
    """One namespace's pending writes, as :class:`WriteBack` configured them.

    With a Redis tier the pending writes live in Redis (a journal hash, one
    field per key, so several writes to a key coalesce into the last),
    written in the same atomic step as the cached copy: a process killed
    after ``set`` returned loses nothing, and the next flush by any process
    that declares the namespace writes it. Flushes take a lease in Redis so
    two processes do not write one key's entries out of order, and
    acknowledge an entry only if it is unchanged since it was read, so a
    write that lands during a flush stays pending. A store that keeps
    failing sends an entry, after ``max_attempts``, to a dead-letter hash
    that code can inspect and replay (see :mod:`.flusher`).

    Without a Redis tier the journal is a dict in the process: fast, and
    lost with the process. That is the documented price of write-back
    without Redis.

    The journal is in the first tier that keeps one (``Journaling``: Redis),
    or else a dict here. Entries are ``seq|payload`` per canonical key
    (``field``), the payload empty for a delete.
    """

    def __init__(self, policy: WriteBack, target: Target) -> None:
        self.policy = policy
        self.index = next((t for t, v in enumerate(target.views) if v.journal is not None), -1)
        self.local: dict[str, bytes] = {}  # field -> seq|payload
        self.local_dead: dict[str, bytes] = {}
        self.seq = 0
        self.attempts: dict[str, int] = {}
        self.next_try: dict[str, float] = {}
        self.lock = threading.Lock()
        self.job: Handle | None = None
        self.flushed = 0
        self.store_errors = 0
        self.dead_lettered = 0

    def ops(self, target: Target) -> JournalOps:
        """The journal tier's operations, through the namespace's current face of it."""
        journal = target.views[self.index].journal
        assert journal is not None  # noqa: S101 - narrows the type: the index is of a journaling tier
        return journal

    # -- lifecycle ----------------------------------------------------------

    def background_flush(self, target: Target) -> None:
        """The scheduled flush; a store failure is logged and retried on the next tick."""
        try:
            run(self.flush(target))
        except StoreError as exc:
            log.warning("%s: write-back flush failed, will retry: %s", target.name, exc)

    def close(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.cancel()

    # -- writes -------------------------------------------------------------

    def write(self, ctx: WriteContext, target: Target) -> Plan[WriteOutcome]:
        fields = [encode_key(k) for k in ctx.keys]
        recorded, announced = yield from self.record(target, fields, list(ctx.data), ctx)
        if not recorded:  # the journal is unreachable: be safe, write through
            if target.store is not None:
                yield from target.save(ctx.items())
            yield from target.fill(ctx)
            return _FILL_LOCAL
        yield from target.fill(ctx, skip=self.index)
        return _FILL_LOCAL_ANNOUNCED if announced else _FILL_LOCAL

    def local_room(self, count: int) -> bool:
        """True when ``count`` more writes go into the in-process journal with no flush first.

        False with a Redis journal, or when the in-process journal would pass
        ``max_pending``: those writes take ``write``, which flushes or refuses.
        """
        return self.index < 0 and len(self.local) + count <= self.policy.max_pending

    def journal_one(self, field: str, payload: bytes) -> None:
        """Journal one write in the process, as ``record`` does, once ``local_room(1)`` said yes.

        The single-key form of ``write``'s journaling, for the namespace's
        in-process ``set`` shortcut: the namespace fills the tiers itself.
        """
        lock = self.lock
        lock.acquire()  # not ``with``, which doubles the cost of taking the lock
        try:
            self.seq += 1
            self.local[field] = b"%d|" % self.seq + payload
        finally:
            lock.release()

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        fields = [encode_key(k) for k in keys]
        recorded, _ = yield from self.record(target, fields, [TOMBSTONE] * len(fields), None)
        if not recorded and target.store is not None:
            yield from target.erase(keys)
        yield from target.drop(tier_keys)

    def record(
        self, target: Target, fields: list[str], payloads: list[bytes], ctx: WriteContext | None
    ) -> Plan[tuple[bool, bool]]:
        """Journal the entries (and, for sets, the journal tier's copies, atomically).

        Returns ``(recorded, announced)``: False when the journal is
        unreachable; ``announced`` when its script also added the bus entry.
        """
        max_pending = self.policy.max_pending
        if self.index < 0:
            if len(self.local) + len(fields) > max_pending:
                # Back-pressure: make room by writing the backlog now.
                yield from self.flush(target, force=True)
                if len(self.local) + len(fields) > max_pending:
                    raise CapacityError(
                        f"{target.name}: {len(self.local)} writes wait for the store "
                        f"(max_pending={max_pending}) and it does not take them"
                    )
            with self.lock:
                for field, payload in zip(fields, payloads, strict=True):
                    self.seq += 1
                    self.local[field] = b"%d|" % self.seq + payload
            return (True, False)
        announce = None
        if ctx is not None:
            entries = target.entries(ctx, self.index)
            # The bus entry goes in the same script: the change and its
            # announcement to other processes land together or not at all.
            announce = target.announcement(self.index, ctx.tier_keys)
        else:
            entries = [(f"{target.key_prefix}{f}", b"", None, 0) for f in fields]
        args: tuple[Any, ...] = (target.journal_key, target.journal_key + ":seq",
                                 list(zip(fields, payloads, strict=True)), entries, max_pending)
        if announce is not None:
            args += (announce,)
        # The namespace's current face of the journal tier: under Versioned
        # it stamps each copy with a new per-key version (see redis/versions.py).
        journal = self.ops(target)
        try:
            recorded = yield from perform(journal.put(*args))
            if recorded is False:
                # Back-pressure: the journal is full; write the backlog, then retry once.
                yield from self.flush(target, force=True)
                recorded = yield from perform(journal.put(*args))
                if recorded is False:
                    raise CapacityError(
                        f"{target.name}: the write-back journal holds max_pending="
                        f"{max_pending} keys and the store does not take them"
                    )
        except TierError as exc:
            warn("journal", "%s: write-back journal unreachable, writing through: %s",
                 target.name, exc)
            return (False, False)
        return (True, ctx is not None and announce is not None)

    # -- reads --------------------------------------------------------------

    def pending(self, fields: Sequence[str], target: Target) -> Plan[dict[int, Any]]:
        if self.index < 0:
            entries: list[bytes | None] = [self.local.get(f) for f in fields]
        else:
            try:
                entries = yield from perform(self.ops(target).get(target.journal_key, list(fields)))
            except TierError:
                return {}  # nothing to add; the store answers
        out: dict[int, Any] = {}
        for i, entry in enumerate(entries):
            if entry is None:
                continue
            payload = entry.split(b"|", 1)[1]
            if payload == TOMBSTONE:
                out[i] = MISSING
                continue
            try:
                out[i] = target.decode_field(payload, fields[i])
            except SerializationError:
                continue
        return out

    # -- flushing and dead letters (see flusher) ----------------------------

    def flush(self, target: Target, force: bool = False) -> Plan[tuple[bool, int]]:
        """Write pending entries to the store: ``(busy, failed)``; see :func:`flusher.flush`."""
        return flusher.flush(self, target, force)

    def dead_letters(self, target: Target) -> Plan[dict[Key, Any]]:
        """Entries given up on: ``{key: value}`` (``MISSING`` for a delete)."""
        return flusher.dead_letters(self, target)

    def replay_dead_letters(self, target: Target) -> Plan[int]:
        """Put dead letters back in the journal (unless a newer write is pending)."""
        return flusher.replay_dead_letters(self, target)

    def counters(self) -> dict[str, int]:
        """Flushed, failed and dead-lettered entries of this process."""
        return {
            "flushed": self.flushed,
            "store_errors": self.store_errors,
            "dead_lettered": self.dead_lettered,
            "pending_local": len(self.local),
        }
