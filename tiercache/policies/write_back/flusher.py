"""Writing a write-back journal to the store: batches, retries with backoff, dead letters."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..._engine.ops import Plan, perform
from ..._log import RateLimitedWarning
from ..._types import MISSING, Key
from ...errors import StoreError, TiercacheError, TierError
from ...keys import decode_key
from ..base import Target

if TYPE_CHECKING:
    from .journal import WriteBackJournal

__all__ = ["dead_letters", "flush", "replay_dead_letters", "warn"]

log = logging.getLogger("tiercache")
warn = RateLimitedWarning(log).warn
"""A rate-limited warning: an outage must not write one line per call."""

_TOMBSTONE = b""  # a pending delete (as journal.TOMBSTONE)


def flush(journal: WriteBackJournal, target: Target, force: bool = False) -> Plan[tuple[bool, int]]:
    """Write pending entries to the store.

    Returns ``(busy, failed)``: ``busy`` when another process holds the
    flush lease (it is writing the same journal), ``failed`` the entries
    that could not be written in this pass and stay pending. The
    background job respects each failed entry's retry delay; an explicit
    flush (``force``) tries every entry now.
    """
    if target.store is None:
        return (False, 0)
    if journal.index < 0:
        with journal.lock:
            snapshot = dict(journal.local)
        _done, failed = yield from _write_out(journal, target, snapshot, force)
        return (False, failed)
    ops = journal.ops(target)
    token = uuid.uuid4().hex
    lock_key = target.journal_key + ":lock"
    try:
        if not (yield from perform(ops.try_lock(lock_key, token, journal.policy.lock_lease))):
            return (True, 0)
    except TierError as exc:
        warn("flush", "%s: write-back flush skipped, Redis unreachable: %s", target.name, exc)
        return (False, 0)
    failed = 0
    try:
        for _round in range(10_000):  # bounded: each round acknowledges or stops
            entries = yield from perform(ops.read(target.journal_key, journal.policy.max_batch))
            if not entries:
                break
            done, failed = yield from _write_out(journal, target, entries, force)
            if not done:
                break
    finally:
        try:
            yield ops.unlock(lock_key, token)
        except TierError:
            pass  # the lease expires by itself
    return (False, failed)


def _write_out(
    journal: WriteBackJournal, target: Target, entries: dict[str, bytes], force: bool = False
) -> Plan[tuple[int, int]]:
    """One batch to the store: ``(entries acknowledged, entries still failing)``."""
    now = time.monotonic()
    saves: dict[str, tuple[Key, Any]] = {}
    deletes: dict[str, Key] = {}
    poisoned: dict[str, bytes] = {}
    waiting = 0
    for field, entry in list(entries.items())[: journal.policy.max_batch]:
        if not force and journal.next_try.get(field, 0.0) > now:
            waiting += 1
            continue
        try:
            key = decode_key(field)
            payload = entry.split(b"|", 1)[1]
            if payload == _TOMBSTONE:
                deletes[field] = key
            else:
                saves[field] = (key, target.decode_field(payload, field))
        except (ValueError, IndexError, TiercacheError) as exc:
            log.error("%s: write-back entry %r cannot be decoded: %s", target.name, field, exc)
            poisoned[field] = entry
    if poisoned:
        yield from _dead_letter(journal, target, poisoned)
    failed: dict[str, bytes] = {}
    if (yield from _store_batch(journal, target, saves, deletes)):
        done = {f: entries[f] for f in [*saves, *deletes]}
    else:
        # The batch failed: try entry by entry, so one bad entry blocks no other.
        done = {}
        for field in [*saves, *deletes]:
            one_save = {field: saves[field]} if field in saves else {}
            one_delete = {field: deletes[field]} if field in deletes else {}
            if (yield from _store_batch(journal, target, one_save, one_delete)):
                done[field] = entries[field]
            else:
                failed[field] = entries[field]
        yield from _note_failures(journal, target, failed)
    yield from _ack(journal, target, done)
    still = sum(1 for f in failed if f not in poisoned and journal.attempts.get(f))
    return (len(done), waiting + still)


def _store_batch(
    journal: WriteBackJournal, target: Target,
    saves: dict[str, tuple[Key, Any]], deletes: dict[str, Key],
) -> Plan[bool]:
    try:
        if saves:
            yield from target.save(dict(saves.values()))
        if deletes:
            yield from target.erase(list(deletes.values()))
    except StoreError as exc:
        journal.store_errors += 1
        log.warning("%s: write-back store write failed: %s", target.name, exc)
        return False
    return True


def _note_failures(
    journal: WriteBackJournal, target: Target, failed: dict[str, bytes]
) -> Plan[None]:
    now = time.monotonic()
    policy = journal.policy
    dead: dict[str, bytes] = {}
    for field, entry in failed.items():
        attempts = journal.attempts.get(field, 0) + 1
        journal.attempts[field] = attempts
        journal.next_try[field] = now + float(policy.retry_backoff) * 2 ** (attempts - 1)
        if attempts >= policy.max_attempts:
            dead[field] = entry
    if dead:
        yield from _dead_letter(journal, target, dead)


def _dead_letter(
    journal: WriteBackJournal, target: Target, entries: dict[str, bytes]
) -> Plan[None]:
    journal.dead_lettered += len(entries)
    log.error("%s: %d write-back entries dead-lettered after failures: %s",
              target.name, len(entries), sorted(entries)[:10])
    yield from _ack(journal, target, entries, dead=True)


def _ack(
    journal: WriteBackJournal, target: Target, entries: dict[str, bytes], dead: bool = False
) -> Plan[None]:
    """Remove entries still unchanged since read (into the dead letters if ``dead``)."""
    if not entries:
        return
    for field in entries:
        journal.attempts.pop(field, None)
        journal.next_try.pop(field, None)
    if not dead:
        journal.flushed += len(entries)
    if journal.index < 0:
        with journal.lock:
            for field, entry in entries.items():
                if journal.local.get(field) == entry:
                    del journal.local[field]
                    if dead:
                        journal.local_dead[field] = entry
        return
    move_to = target.journal_key + ":dead" if dead else None
    try:
        yield journal.ops(target).ack(target.journal_key, entries, move_to)
    except TierError as exc:  # replaying an entry later is harmless
        log.warning("%s: write-back acknowledgement failed: %s", target.name, exc)


def dead_letters(journal: WriteBackJournal, target: Target) -> Plan[dict[Key, Any]]:
    """Entries given up on: ``{key: value}`` (``MISSING`` for a delete)."""
    if journal.index < 0:
        raw = dict(journal.local_dead)
    else:
        raw = yield from perform(journal.ops(target).read(target.journal_key + ":dead", 100_000))
    out: dict[Key, Any] = {}
    for field, entry in raw.items():
        payload = entry.split(b"|", 1)[1]
        try:
            out[decode_key(field)] = (
                MISSING if payload == _TOMBSTONE else target.decode_field(payload, field)
            )
        except (ValueError, TiercacheError):
            out[field] = payload  # undecodable: shown as its bytes, under its field
    return out


def replay_dead_letters(journal: WriteBackJournal, target: Target) -> Plan[int]:
    """Put dead letters back in the journal (unless a newer write is pending)."""
    if journal.index < 0:
        with journal.lock:
            moved = 0
            for field, entry in journal.local_dead.items():
                if field not in journal.local:
                    journal.local[field] = entry
                    moved += 1
            journal.local_dead.clear()
        return moved
    ops = journal.ops(target)
    raw = yield from perform(ops.read(target.journal_key + ":dead", 100_000))
    moved = yield from perform(
        ops.restore(target.journal_key, target.journal_key + ":dead", list(raw)))
    return int(moved)
