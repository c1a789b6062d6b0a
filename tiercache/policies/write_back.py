"""WriteBack: the tiers at once, the store later, in coalesced batches.

With a Redis tier the pending writes live in Redis (a journal hash, one
field per key, so several writes to a key coalesce into the last), written
in the same atomic step as the cached copy: a process killed after ``set``
returned loses nothing, and the next flush by any process that declares the
namespace writes it. Flushes take a lease in Redis so two processes do not
write one key's entries out of order, and acknowledge an entry only if it
is unchanged since it was read, so a write that lands during a flush stays
pending. A store that keeps failing sends an entry, after ``max_attempts``,
to a dead-letter hash that code can inspect and replay.

Without a Redis tier the journal is a dict in the process: fast, and lost
with the process. That is the documented price of write-back without Redis.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._engine.ops import Plan, perform, run
from .._engine.views import JournalOps
from .._types import MISSING, Key, seconds
from ..errors import (
    CapacityError,
    ConfigurationError,
    SerializationError,
    StoreError,
    TiercacheError,
    TierError,
)
from ..keys import decode_key, encode_key
from ..scheduler import Handle, Scheduler
from ..stats import RateLimitedLog
from .base import Target, WriteBatch

__all__ = ["WriteBack"]

log = logging.getLogger("tiercache")
_quiet = RateLimitedLog(10.0)


def _warn(topic: str, message: str, *args: Any) -> None:
    """A rate-limited warning: an outage must not write one line per call."""
    suppressed = _quiet.should_log(topic, time.monotonic())
    if suppressed is not None:
        log.warning(message + (f" ({suppressed} similar suppressed)" if suppressed else ""), *args)

_TOMBSTONE = b""  # a pending delete: no serializer writes empty bytes


@dataclass
class _State:
    """Per-namespace runtime state of a WriteBack policy."""

    journal_index: int = -1  # the tier that keeps the journal (RedisTier), or -1: a dict here
    local: dict[str, bytes] = field(default_factory=dict)  # field -> seq|payload
    local_dead: dict[str, bytes] = field(default_factory=dict)
    seq: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    next_try: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    job: Handle | None = None
    flushed: int = 0
    store_errors: int = 0
    dead_lettered: int = 0


@dataclass(eq=False)
class WriteBack:
    """Fast writes: the tiers now, the store in the background, in batches.

    Args:
        flush_interval: seconds between background flushes.
        max_batch: most entries written to the store in one ``save_many``.
        max_attempts: failed store writes of one entry before it is
            dead-lettered (see ``Namespace.dead_letters``).
        retry_backoff: seconds before retrying a failed entry, doubled on
            each further failure.
        lock_lease: seconds a flusher's lease in Redis lasts; a flush must
            finish well within it.
        max_pending: most keys waiting for the store. A write that would
            exceed it first flushes; if the store cannot take them, it is
            refused with :class:`CapacityError` (nothing written).

    Raises:
        ConfigurationError: a non-positive interval, batch or attempt count.
    """

    flush_interval: float = 1.0
    max_batch: int = 1000
    max_attempts: int = 5
    retry_backoff: float = 0.5
    lock_lease: float = 30.0
    max_pending: int = 100_000
    _state: _State = field(default_factory=_State, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.flush_interval = seconds(self.flush_interval, "flush_interval")  # type: ignore[assignment]
        self.retry_backoff = seconds(self.retry_backoff, "retry_backoff")  # type: ignore[assignment]
        self.lock_lease = seconds(self.lock_lease, "lock_lease")  # type: ignore[assignment]
        for name in ("max_batch", "max_attempts", "max_pending"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WriteBack) and self._config() == other._config()

    def __hash__(self) -> int:
        return hash(self._config())

    def _config(self) -> tuple[Any, ...]:
        return (self.flush_interval, self.max_batch, self.max_attempts,
                self.retry_backoff, self.lock_lease, self.max_pending)

    # -- lifecycle ----------------------------------------------------------

    def start(self, target: Target, scheduler: Scheduler) -> None:
        self._state = state = _State()
        for index, view in enumerate(target.views):
            if view.journal is not None:
                state.journal_index = index
                break
        state.job = scheduler.every(
            float(self.flush_interval),
            lambda: self._background_flush(target),
            name=f"tiercache-writeback-{target.name}",
        )

    def _background_flush(self, target: Target) -> None:
        try:
            run(self.flush(target))
        except StoreError as exc:  # counted, retried on the next tick
            log.warning("%s: write-back flush failed, will retry: %s", target.name, exc)

    def close(self) -> None:
        job, self._state.job = self._state.job, None
        if job is not None:
            job.cancel()

    # -- writes -------------------------------------------------------------

    def write(self, batch: WriteBatch, target: Target) -> Plan[None]:
        fields = [encode_key(k) for k in batch.keys]
        recorded = yield from self._record(target, fields, list(batch.data), batch)
        if not recorded:  # the journal is unreachable: be safe, write through
            if target.store is not None:
                yield from target.save(batch.items())
            yield from target.fill(batch)
            return
        yield from target.fill(batch, skip=self._state.journal_index)

    def local_room(self, count: int) -> bool:
        """True when ``count`` more writes go into the in-process journal with no flush first.

        False with a Redis journal, or when the in-process journal would pass
        ``max_pending``: those writes take ``write``, which flushes or refuses.
        """
        state = self._state
        return state.journal_index < 0 and len(state.local) + count <= self.max_pending

    def journal_one(self, field_: str, payload: bytes) -> None:
        """Journal one write in the process, as ``_record`` does, once ``local_room(1)`` said yes.

        The single-key form of ``write``'s journaling, for ``Namespace.set``
        when every tier is in the process: the namespace fills the tiers itself.
        """
        state = self._state
        lock = state.lock
        lock.acquire()  # not ``with``, which doubles the cost of taking the lock
        try:
            state.seq += 1
            state.local[field_] = b"%d|" % state.seq + payload
        finally:
            lock.release()

    def delete(self, keys: Sequence[Key], tier_keys: Sequence[str], target: Target) -> Plan[None]:
        fields = [encode_key(k) for k in keys]
        recorded = yield from self._record(target, fields, [_TOMBSTONE] * len(fields), None)
        if not recorded and target.store is not None:
            yield from target.erase(keys)
        yield from target.drop(tier_keys)

    def _record(
        self, target: Target, fields: list[str], payloads: list[bytes], batch: WriteBatch | None
    ) -> Plan[bool]:
        """Journal the entries (and, for sets, the journal tier's copies, atomically)."""
        state = self._state
        if state.journal_index < 0:
            if len(state.local) + len(fields) > self.max_pending:
                # Back-pressure: make room by writing the backlog now.
                yield from self.flush(target, force=True)
                if len(state.local) + len(fields) > self.max_pending:
                    raise CapacityError(
                        f"{target.name}: {len(state.local)} writes wait for the store "
                        f"(max_pending={self.max_pending}) and it does not take them"
                    )
            with state.lock:
                for field_, payload in zip(fields, payloads):
                    state.seq += 1
                    state.local[field_] = b"%d|" % state.seq + payload
            return True
        announce = None
        if batch is not None:
            entries = target.entries(batch, state.journal_index)
            # The bus entry goes in the same script: the change and its
            # announcement to other processes land together or not at all.
            announce = target.announcement(state.journal_index, batch.tier_keys)
        else:
            entries = [(f"{target.key_prefix}{f}", b"", None, 0) for f in fields]
        journal_args: tuple[Any, ...] = (target.journal_key, target.journal_key + ":seq",
                                         list(zip(fields, payloads)), entries, self.max_pending)
        if announce is not None:
            journal_args += (announce,)
        # The namespace's current face of the journal tier: under Versioned
        # it stamps each copy with a new per-key version (see _versioned.py).
        journal = _journal(target, state.journal_index)
        try:
            recorded = yield from perform(journal.put(*journal_args))
            if recorded is False:
                # Back-pressure: the journal is full; write the backlog, then retry once.
                yield from self.flush(target, force=True)
                recorded = yield from perform(journal.put(*journal_args))
                if recorded is False:
                    raise CapacityError(
                        f"{target.name}: the write-back journal holds max_pending="
                        f"{self.max_pending} keys and the store does not take them"
                    )
        except TierError as exc:
            _warn("journal", "%s: write-back journal unreachable, writing through: %s",
                  target.name, exc)
            return False
        if batch is not None and announce is not None:
            batch.announced = True
        return True

    # -- reads --------------------------------------------------------------

    def pending(self, fields: Sequence[str], target: Target) -> Plan[dict[int, Any]]:
        state = self._state
        if state.journal_index < 0:
            entries: list[bytes | None] = [state.local.get(f) for f in fields]
        else:
            journal = _journal(target, state.journal_index)
            try:
                entries = yield from perform(journal.get(target.journal_key, list(fields)))
            except TierError:
                return {}  # nothing to add; the store answers
        out: dict[int, Any] = {}
        for i, entry in enumerate(entries):
            if entry is None:
                continue
            payload = entry.split(b"|", 1)[1]
            if payload == _TOMBSTONE:
                out[i] = MISSING
                continue
            try:
                out[i] = target.decode_field(payload, fields[i])
            except SerializationError:
                continue
        return out

    # -- flushing -----------------------------------------------------------

    def flush(self, target: Target, force: bool = False) -> Plan[tuple[bool, int]]:
        """Write pending entries to the store.

        Returns ``(busy, failed)``: ``busy`` when another process holds the
        flush lease (it is writing the same journal), ``failed`` the entries
        that could not be written in this pass and stay pending. The
        background job respects each failed entry's retry delay; an explicit
        flush (``force``) tries every entry now.
        """
        state = self._state
        if target.store is None:
            return (False, 0)
        if state.journal_index < 0:
            with state.lock:
                snapshot = dict(state.local)
            _done, failed = yield from self._write_out(target, snapshot, force)
            return (False, failed)
        journal = _journal(target, state.journal_index)
        token = uuid.uuid4().hex
        lock_key = target.journal_key + ":lock"
        try:
            if not (yield from perform(journal.try_lock(lock_key, token, self.lock_lease))):
                return (True, 0)
        except TierError as exc:
            _warn("flush", "%s: write-back flush skipped, Redis unreachable: %s", target.name, exc)
            return (False, 0)
        failed = 0
        try:
            for _round in range(10_000):  # bounded: each round acknowledges or stops
                entries = yield from perform(journal.read(target.journal_key, self.max_batch))
                if not entries:
                    break
                done, failed = yield from self._write_out(target, entries, force)
                if not done:
                    break
        finally:
            try:
                yield journal.unlock(lock_key, token)
            except TierError:
                pass  # the lease expires by itself
        return (False, failed)

    def _write_out(
        self, target: Target, entries: dict[str, bytes], force: bool = False
    ) -> Plan[tuple[int, int]]:
        """One batch to the store: ``(entries acknowledged, entries still failing)``."""
        state = self._state
        now = time.monotonic()
        saves: dict[str, tuple[Key, Any]] = {}
        deletes: dict[str, Key] = {}
        poisoned: dict[str, bytes] = {}
        waiting = 0
        for field_, entry in list(entries.items())[: self.max_batch]:
            if not force and state.next_try.get(field_, 0.0) > now:
                waiting += 1
                continue
            try:
                key = decode_key(field_)
                payload = entry.split(b"|", 1)[1]
                if payload == _TOMBSTONE:
                    deletes[field_] = key
                else:
                    saves[field_] = (key, target.decode_field(payload, field_))
            except (ValueError, IndexError, TiercacheError) as exc:
                log.error("%s: write-back entry %r cannot be decoded: %s", target.name, field_, exc)
                poisoned[field_] = entry
        if poisoned:
            yield from self._dead_letter(target, poisoned)
        failed: dict[str, bytes] = {}
        if (yield from self._store_batch(target, saves, deletes)):
            done = {f: entries[f] for f in [*saves, *deletes]}
        else:
            # The batch failed: try entry by entry, so one bad entry blocks no other.
            done = {}
            for field_ in [*saves, *deletes]:
                one_save = {field_: saves[field_]} if field_ in saves else {}
                one_delete = {field_: deletes[field_]} if field_ in deletes else {}
                if (yield from self._store_batch(target, one_save, one_delete)):
                    done[field_] = entries[field_]
                else:
                    failed[field_] = entries[field_]
            yield from self._note_failures(target, failed)
        yield from self._ack(target, done)
        still = sum(1 for f in failed if f not in poisoned and state.attempts.get(f))
        return (len(done), waiting + still)

    def _store_batch(
        self, target: Target, saves: dict[str, tuple[Key, Any]], deletes: dict[str, Key]
    ) -> Plan[bool]:
        try:
            if saves:
                yield from target.save(dict(saves.values()))
            if deletes:
                yield from target.erase(list(deletes.values()))
        except StoreError as exc:
            self._state.store_errors += 1
            log.warning("%s: write-back store write failed: %s", target.name, exc)
            return False
        return True

    def _note_failures(self, target: Target, failed: dict[str, bytes]) -> Plan[None]:
        state = self._state
        now = time.monotonic()
        dead: dict[str, bytes] = {}
        for field_, entry in failed.items():
            attempts = state.attempts.get(field_, 0) + 1
            state.attempts[field_] = attempts
            state.next_try[field_] = now + float(self.retry_backoff) * 2 ** (attempts - 1)
            if attempts >= self.max_attempts:
                dead[field_] = entry
        if dead:
            yield from self._dead_letter(target, dead)

    def _dead_letter(self, target: Target, entries: dict[str, bytes]) -> Plan[None]:
        state = self._state
        state.dead_lettered += len(entries)
        log.error("%s: %d write-back entries dead-lettered after failures: %s",
                  target.name, len(entries), sorted(entries)[:10])
        yield from self._ack(target, entries, dead=True)

    def _ack(self, target: Target, entries: dict[str, bytes], dead: bool = False) -> Plan[None]:
        """Remove entries still unchanged since read (into the dead letters if ``dead``)."""
        if not entries:
            return
        state = self._state
        for field_ in entries:
            state.attempts.pop(field_, None)
            state.next_try.pop(field_, None)
        if not dead:
            state.flushed += len(entries)
        if state.journal_index < 0:
            with state.lock:
                for field_, entry in entries.items():
                    if state.local.get(field_) == entry:
                        del state.local[field_]
                        if dead:
                            state.local_dead[field_] = entry
            return
        move_to = target.journal_key + ":dead" if dead else None
        try:
            yield _journal(target, state.journal_index).ack(target.journal_key, entries, move_to)
        except TierError as exc:  # replaying an entry later is harmless
            log.warning("%s: write-back acknowledgement failed: %s", target.name, exc)

    # -- dead letters -------------------------------------------------------

    def dead_letters(self, target: Target) -> Plan[dict[Key, Any]]:
        """Entries given up on: ``{key: value}`` (``MISSING`` for a delete)."""
        state = self._state
        if state.journal_index < 0:
            raw = dict(state.local_dead)
        else:
            journal = _journal(target, state.journal_index)
            raw = yield from perform(journal.read(target.journal_key + ":dead", 100_000))
        out: dict[Key, Any] = {}
        for field_, entry in raw.items():
            payload = entry.split(b"|", 1)[1]
            try:
                out[decode_key(field_)] = (
                    MISSING if payload == _TOMBSTONE else target.decode_field(payload, field_)
                )
            except (ValueError, TiercacheError):
                out[field_] = payload  # undecodable: shown as its bytes, under its field
        return out

    def replay_dead_letters(self, target: Target) -> Plan[int]:
        """Put dead letters back in the journal (unless a newer write is pending)."""
        state = self._state
        if state.journal_index < 0:
            with state.lock:
                moved = 0
                for field_, entry in state.local_dead.items():
                    if field_ not in state.local:
                        state.local[field_] = entry
                        moved += 1
                state.local_dead.clear()
            return moved
        journal = _journal(target, state.journal_index)
        raw = yield from perform(journal.read(target.journal_key + ":dead", 100_000))
        moved = yield from perform(
            journal.restore(target.journal_key, target.journal_key + ":dead", list(raw)))
        return int(moved)

    def counters(self) -> dict[str, int]:
        """Flushed, failed and dead-lettered entries of this process."""
        state = self._state
        return {
            "flushed": state.flushed,
            "store_errors": state.store_errors,
            "dead_lettered": state.dead_lettered,
            "pending_local": len(state.local),
        }



def _journal(target: Target, index: int) -> JournalOps:
    """The journal operations of ``target``'s tier ``index`` (its current face)."""
    journal = target.views[index].journal
    assert journal is not None  # ``start`` chose the index for its journal
    return journal
