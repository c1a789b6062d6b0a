"""What each Redis tier operation sends: plans of Redis operations, one for both drivers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._engine.ops import Plan, perform
from . import scripts
from .commands import HMGet, HScan, MGet, Pipeline, RunScript, Scan, Send, SetNX, Unlink
from .connection import Connection
from .names import glob_escape, lease_key, version_key

__all__ = [
    "SCAN_BATCH",
    "Announcement",
    "Sealed",
    "delete_copies",
    "delete_prefix",
    "delete_versioned",
    "fill_leased",
    "journal_ack",
    "journal_get",
    "journal_put",
    "journal_read",
    "journal_restore",
    "lease_many",
    "read",
    "release",
    "run_script",
    "set_copies",
    "try_lock",
]

SCAN_BATCH = 1000
"""Keys asked for per SCAN step, and unlinked per UNLINK, by ``delete_prefix``."""

Announcement = tuple[str, bytes, int]
"""A bus entry a write script adds to its stream: ``(stream, message, maxlen)``."""

Sealed = Sequence[tuple[str, bytes, int]]
"""Copies ready to store: ``(redis key, envelope, px)``, px 0 meaning no expiry."""


def read(conn: Connection, keys: Sequence[str]) -> Plan[list[Any]]:
    """The value at each key, None where absent: one MGET."""
    raws = yield Send(conn, MGet(keys))
    return list(raws)


def set_copies(conn: Connection, sealed: Sealed, versioned: bool = False) -> Plan[None]:
    """Store the copies and take away any reader's lease on them, in one script.

    A read that loaded before this write can then no longer fill over it
    (see ``fill_leased``). Versioned copies take a new version each.
    """
    keys: list[str] = []
    args: list[Any] = []
    for rkey, blob, px in sealed:
        keys += [lease_key(rkey), rkey, version_key(rkey)] if versioned else [lease_key(rkey), rkey]
        args += [blob, px]
    yield RunScript(conn, scripts.SET_VERSIONED if versioned else scripts.SET, keys, args)


def delete_copies(conn: Connection, rkeys: Sequence[str]) -> Plan[None]:
    """UNLINK the copies and their leases (a deleted key takes away any reader's lease)."""
    yield Send(conn, Unlink((*rkeys, *map(lease_key, rkeys))))


def delete_versioned(conn: Connection, rkeys: Sequence[str], version_px: int) -> Plan[None]:
    """Remove the copies and give each key a new version, kept ``version_px`` ms."""
    # An empty copy tells the script to remove it; the new version stays behind.
    yield from set_copies(conn, [(rkey, b"", version_px) for rkey in rkeys], versioned=True)


def delete_prefix(conn: Connection, prefix: str) -> Plan[None]:
    """SCAN in batches and UNLINK what matches: never KEYS, never a long block."""
    pattern = glob_escape(prefix) + "*"
    cursor = 0
    for _step in range(10_000_000):  # bounded by the keyspace; SCAN ends at cursor 0
        cursor, keys = yield Send(conn, Scan(cursor, pattern, SCAN_BATCH))
        if keys:
            yield Send(conn, Unlink(keys))
        if int(cursor) == 0:
            return


def journal_put(
    conn: Connection,
    journal: str,
    seq_key: str,
    records: Sequence[tuple[str, bytes]],
    sealed: Sealed,
    deletes: Sequence[bool],
    limit: int,
    announce: Announcement | None,
    versioned: bool,
) -> Plan[bool]:
    """Record pending writes and set their copies in one script; False if over ``limit``.

    ``deletes`` marks the records whose copy is removed rather than set.
    """
    keys = [journal, seq_key]
    args: list[Any] = []
    for (field_, payload), (rkey, blob, px), delete in zip(records, sealed, deletes, strict=True):
        keys.append(rkey)
        args += [field_, payload, b"" if delete else blob, px]
    copies = keys[2:]
    keys += [lease_key(k) for k in copies]
    if versioned:  # the script sees the version keys and stamps each copy
        keys += [version_key(k) for k in copies]
    args.append(limit)
    if announce is not None:
        stream, message, maxlen = announce
        keys.append(stream)
        args += [message, maxlen]
    done = yield from perform(RunScript(conn, scripts.JOURNAL_PUT, keys, args))
    return int(done) >= 0


def journal_get(conn: Connection, journal: str, fields: Sequence[str]) -> Plan[list[bytes | None]]:
    """The journal's pending entries for ``fields`` (None where none is pending)."""
    found = yield Send(conn, HMGet(journal, fields))
    return list(found)


def journal_read(conn: Connection, journal: str, count: int) -> Plan[dict[str, bytes]]:
    """Up to about ``count`` pending entries, ``{field: entry}`` (HSCAN, non-blocking)."""
    out: dict[str, bytes] = {}
    cursor = 0
    for _step in range(10_000_000):  # bounded by the hash; HSCAN ends at cursor 0
        cursor, chunk = yield Send(conn, HScan(journal, cursor, count))
        for field_, entry in chunk.items():
            out[field_.decode() if isinstance(field_, bytes) else field_] = entry
        if int(cursor) == 0 or len(out) >= count:
            break
    return out


def journal_ack(
    conn: Connection, journal: str, entries: Mapping[str, bytes], move_to: str | None
) -> Plan[int]:
    """Remove entries still equal to what was read; optionally keep them in ``move_to``."""
    if not entries:
        return 0
    args: list[Any] = []
    for field_, entry in entries.items():
        args += [field_, entry]
    keys = [journal] if move_to is None else [journal, move_to]
    done = yield RunScript(conn, scripts.ACK, keys, args)
    return int(done)


def journal_restore(conn: Connection, journal: str, dead: str, fields: Sequence[str]) -> Plan[int]:
    """Move entries from ``dead`` back into ``journal`` unless a newer one is pending there."""
    moved = yield RunScript(conn, scripts.RESTORE, [journal, dead], list(fields))
    return int(moved)


def lease_many(conn: Connection, rkeys: Sequence[str], token: str, px: int) -> Plan[list[bool]]:
    """Take a fill lease on each key nobody holds one on; True where taken."""
    leases = [SetNX(lease_key(rkey), token, px) for rkey in rkeys]
    if len(leases) == 1:
        got = yield Send(conn, leases[0])
        return [bool(got)]
    got_many = yield Pipeline(conn, leases)
    return [bool(g) for g in got_many]


def fill_leased(conn: Connection, sealed: Sealed, token: str, versioned: bool = False) -> Plan[int]:
    """Set each copy only while the reader's lease on it is intact; how many were set."""
    keys: list[str] = []
    args: list[Any] = [token]
    for rkey, blob, px in sealed:
        keys += [lease_key(rkey), rkey, version_key(rkey)] if versioned else [lease_key(rkey), rkey]
        args += [blob, px]
    script = scripts.FILL_VERSIONED if versioned else scripts.FILL
    filled = yield RunScript(conn, script, keys, args)
    return int(filled)


def release(conn: Connection, rkeys: Sequence[str], token: str) -> Plan[None]:
    """Give back the leases still held with ``token``."""
    yield RunScript(conn, scripts.RELEASE, [lease_key(rkey) for rkey in rkeys], [token])


def run_script(conn: Connection, script: scripts.LuaScript, keys: Sequence[str],
               args: Sequence[Any]) -> Plan[int]:
    """One script whose reply is an integer (a version, a count)."""
    reply = yield RunScript(conn, script, keys, args)
    return int(reply)


def try_lock(conn: Connection, key: str, token: str, px: int) -> Plan[bool]:
    """Take ``key`` for ``px`` milliseconds unless someone holds it."""
    got = yield Send(conn, SetNX(key, token, px))
    return bool(got)
