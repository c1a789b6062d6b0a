"""SQLiteStore: a table tiercache owns in an SQLite database (stdlib sqlite3)."""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .._types import Key
from ..errors import ConfigurationError, StoreError
from ..keys import encode_key
from ..serialization import MsgpackSerializer, Serializer
from ._table import DEFAULT_TABLE, check_table, namespace_table
from .base import BaseStore, Store

__all__ = ["CHUNK_SIZE", "DEFAULT_TABLE", "SQLiteStore"]

CHUNK_SIZE = 500
"""Keys per ``IN (...)`` list: well under every database's bound-parameter limit."""

DEFAULT_TIMEOUT = 5.0
"""Seconds an SQLite call waits for another connection's lock before failing."""

_SQLITE_BUSY = 5  # sqlite3.SQLITE_BUSY, which Python 3.10 does not define

T = TypeVar("T")


def check_serializer(serializer: Serializer | None) -> Serializer:
    """Return ``serializer``, or the msgpack default when it is ``None``.

    Raises:
        ConfigurationError: ``serializer`` lacks ``dumps``, ``loads`` or ``format_id``.
    """
    if serializer is None:
        return MsgpackSerializer()
    if not isinstance(serializer, Serializer):
        raise ConfigurationError(
            f"serializer must have dumps(), loads() and format_id: {serializer!r}"
        )
    return serializer


def chunked(items: Sequence[T], size: int = CHUNK_SIZE) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Shared:
    """The connection, lock and siblings that a store and its bound siblings share."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self.lock = threading.Lock()
        self.closed = False
        self.siblings: dict[str, SQLiteStore] = {}


class SQLiteStore(BaseStore):
    """A two-column table in an SQLite database: canonical key, serialized value.

    The table (``key TEXT PRIMARY KEY``, ``value BLOB``) is created when
    absent. Keys are stored as :func:`~tiercache.keys.encode_key` gives them
    and come back as the caller's own key objects; values are the
    serializer's bytes. One connection serves every thread, behind a lock; a
    file database runs in WAL mode, so other processes may read while this
    one writes. A batch is one transaction.

    When ``table`` is omitted the store uses ``tiercache``, and
    :meth:`bind` gives each namespace a sibling on a table of its own that
    shares the connection (closing any of them closes them all). With an
    explicit ``table``, every namespace that shares the store shares the table.

    Args:
        path: The database file, or ``":memory:"`` (private to this store and
            its siblings).
        table: The table to own; see above for the default.
        serializer: Encodes values; :class:`~tiercache.serialization.MsgpackSerializer`
            when omitted.
        timeout: Seconds to wait for another connection's lock before failing.

    Raises:
        ConfigurationError: a bad table name, serializer or timeout (nothing is
            created), or the table exists without ``key`` and ``value`` columns.
        StoreError: the database cannot be opened or the table created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str | None = None,
        serializer: Serializer | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.table = check_table(DEFAULT_TABLE if table is None else table)
        self.serializer = check_serializer(serializer)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ConfigurationError(f"timeout must be a number of seconds, got {timeout!r}")
        if not 0 <= timeout < math.inf:  # NaN fails too
            raise ConfigurationError(f"timeout must be finite seconds >= 0, got {timeout!r}")
        self._explicit = table is not None
        self._shared = _Shared(_connect(os.fspath(path), float(timeout)), os.fspath(path))
        try:
            with self._connection("create table") as conn:
                _create_table(conn, self.table)
        except BaseException:
            self._shared.conn.close()
            raise
        self._compile()

    def _compile(self) -> None:
        # An identifier cannot be a bound parameter. check_table admits only
        # [A-Za-z0-9_], so the quoted name cannot end the string (S608 checked).
        quoted = f'"{self.table}"'
        self._select = f"SELECT key, value FROM {quoted} WHERE key IN "  # noqa: S608
        self._delete = f"DELETE FROM {quoted} WHERE key IN "  # noqa: S608
        self._upsert = (
            f"INSERT INTO {quoted} (key, value) VALUES (?, ?) "  # noqa: S608
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        )

    @property
    def path(self) -> str:
        """The database path the store was opened on."""
        return self._shared.path

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, table={self.table!r})"

    @contextmanager
    def _connection(self, what: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock and yield the connection; translate sqlite3 errors."""
        shared = self._shared
        with shared.lock:
            if shared.closed:
                raise StoreError(f"{self!r} is closed")
            try:
                yield shared.conn
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite {what} on table {self.table!r} failed: {exc}") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back on any error."""
        with self._connection(what) as conn:
            # IMMEDIATE takes the write lock up front, waiting up to `timeout`,
            # instead of failing at once when a read lock cannot be upgraded.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def _check_open(self) -> None:
        if self._shared.closed:
            raise StoreError(f"{self!r} is closed")

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys in the table; absent keys are left out.

        Raises:
            InvalidKeyError: a key is not a valid tiercache key.
            StoreError: SQLite failed, or the store is closed.
            SerializationError: a stored value cannot be decoded.
        """
        originals = {encode_key(key): key for key in keys}
        if not originals:
            self._check_open()
            return {}
        encoded = list(originals)
        rows: list[tuple[str, bytes]] = []
        with self._connection("load") as conn:
            if len(encoded) <= CHUNK_SIZE:
                rows = conn.execute(_in_list(self._select, len(encoded)), encoded).fetchall()
            else:
                conn.execute("BEGIN")  # one snapshot across the chunks
                try:
                    for chunk in chunked(encoded):
                        rows += conn.execute(_in_list(self._select, len(chunk)), chunk).fetchall()
                finally:
                    if conn.in_transaction:
                        conn.rollback()
        loads = self.serializer.loads
        return {originals[key]: loads(value) for key, value in rows}

    def save_many(self, items: Mapping[Key, Any]) -> None:
        """Insert or replace every item in one transaction.

        Every key and value is encoded before the database is touched, so a
        bad one changes nothing.

        Raises:
            InvalidKeyError: a key is not a valid tiercache key.
            SerializationError: a value cannot be encoded.
            StoreError: SQLite failed (nothing is written), or the store is closed.
        """
        dumps = self.serializer.dumps
        rows = [(encode_key(key), dumps(value)) for key, value in items.items()]
        if not rows:
            self._check_open()
            return
        with self._transaction("save") as conn:
            conn.executemany(self._upsert, rows)

    def delete_many(self, keys: Sequence[Key]) -> None:
        """Delete the keys in one transaction; absent keys are ignored.

        Raises:
            InvalidKeyError: a key is not a valid tiercache key.
            StoreError: SQLite failed (nothing is deleted), or the store is closed.
        """
        encoded = list({encode_key(key): None for key in keys})
        if not encoded:
            self._check_open()
            return
        with self._transaction("delete") as conn:
            for chunk in chunked(encoded):
                conn.execute(_in_list(self._delete, len(chunk)), chunk)

    def bind(self, namespace: str) -> Store:
        """Return ``namespace``'s sibling store, or this store when ``table=`` was given.

        The sibling shares this store's connection and serializer and owns
        the table :func:`namespace_table` names, created when absent; binding
        one namespace twice returns the same sibling.

        Raises:
            ConfigurationError: ``namespace`` is not a valid namespace name.
            StoreError: the table cannot be created, or the store is closed.
        """
        if self._explicit:
            return self
        table = namespace_table(namespace)
        with self._connection("create table") as conn:
            sibling = self._shared.siblings.get(table)
            if sibling is None:
                _create_table(conn, table)
                sibling = object.__new__(SQLiteStore)
                sibling.table = table
                sibling.serializer = self.serializer
                sibling._explicit = False
                sibling._shared = self._shared
                sibling._compile()
                self._shared.siblings[table] = sibling
        return sibling

    def close(self) -> None:
        """Close the connection (this store's and its siblings'); idempotent.

        Raises:
            StoreError: SQLite failed to close the connection.
        """
        shared = self._shared
        with shared.lock:
            if shared.closed:
                return
            shared.closed = True
            try:
                shared.conn.close()
            except sqlite3.Error as exc:
                raise StoreError(f"closing SQLite database {shared.path!r} failed: {exc}") from exc


def _in_list(prefix: str, count: int) -> str:
    return prefix + "(" + ",".join("?" * count) + ")"


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    """Open ``path`` for use from any thread (callers hold the lock)."""
    try:
        # isolation_level=None: no implicit BEGIN; transactions are explicit.
        conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
    try:
        if path not in ("", ":memory:"):
            _enable_wal(conn, timeout)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
    return conn


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the database to WAL, waiting up to ``timeout`` for other processes' locks.

    SQLite does not always run its busy handler for this switch: a process
    opening a new file while another process switches (or closes) it gets
    "database is locked" at once, whatever ``timeout`` says. So a busy
    answer is retried here, with a short backoff, until ``timeout`` has
    passed. The deadline is wall-clock connection setup, not cache time, so
    it reads the monotonic clock itself.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY (another connection holds the lock)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code & 0xFF == _SQLITE_BUSY)  # extended codes keep it in the low byte
    return "database is locked" in str(exc)


def _create_table(conn: sqlite3.Connection, table: str) -> None:
    """Create ``table`` when absent; refuse an existing table of another shape."""
    conn.execute(
        f'CREATE TABLE IF NOT EXISTS "{table}" '
        "(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID"
    )
    columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
    if not {"key", "value"} <= columns:
        raise ConfigurationError(
            f"table {table!r} exists without 'key' and 'value' columns; "
            "name another table, or serve this one with FunctionStore"
        )
