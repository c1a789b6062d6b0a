"""SQLStore: a table tiercache owns in any SQLAlchemy database (PostgreSQL, MySQL, SQLite).

SQLAlchemy is an optional dependency (``pip install 'tiercache[sql]'``): it
is imported when a store is built, never when this module is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from .._redact import redact
from .._types import Key
from ..errors import ConfigurationError, StoreError
from ..keys import encode_key
from ..serialization import Serializer
from ._table import DEFAULT_TABLE, check_table, namespace_table
from .base import BaseStore, Store
from .sqlite import check_serializer, chunked

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine, Table
    from sqlalchemy.engine import Connection

__all__ = ["SQLStore"]

INSTALL_HINT = "SQLStore needs SQLAlchemy: pip install 'tiercache[sql]'"

_Rows = list[dict[str, Any]]
_Upsert = Callable[["Connection", _Rows], None]


class _Shared:
    """The engine and state that a store and its bound siblings share."""

    def __init__(self, engine: Engine, owns_engine: bool, serial: bool) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        self.lock = threading.Lock()  # guards `closed`, `siblings` and table creation
        # An in-memory SQLite database lives in one connection, which threads
        # must take turns on; every other engine has a pool and needs no turns.
        self.serial: AbstractContextManager[Any] = threading.Lock() if serial else nullcontext()
        self.closed = False
        self.siblings: dict[str, SQLStore] = {}


class SQLStore(BaseStore):
    """A two-column table in an SQL database, through SQLAlchemy Core.

    Same table shape and naming as :class:`~tiercache.stores.SQLiteStore`:
    ``key`` (text, primary key) holds :func:`~tiercache.keys.encode_key`'s
    form, ``value`` (binary) the serializer's bytes; the table is created when
    absent. Writes are upserts (``ON CONFLICT DO UPDATE`` on PostgreSQL and
    SQLite, ``ON DUPLICATE KEY UPDATE`` on MySQL, delete-then-insert
    elsewhere), one transaction per batch, in key order so that concurrent
    batches cannot deadlock. On MySQL keys are limited to 700 characters.

    Without ``table=`` the store uses ``tiercache`` and :meth:`bind` gives
    each namespace a sibling on ``tiercache_<namespace>`` sharing the engine
    (closing any of them closes them all); with ``table=`` every namespace
    sharing the store shares the table.

    Args:
        url_or_engine: A database URL, whose engine the store creates and
            disposes in :meth:`close`, or an ``Engine``, which it never disposes.
            For in-memory SQLite pass the URL (``"sqlite://"``): an engine
            made with SQLAlchemy's defaults gives each thread its own database.
        table: The table to own; see above for the default.
        serializer: Encodes values; msgpack when omitted.

    Raises:
        ConfigurationError: SQLAlchemy is missing; a bad URL, table name or
            serializer (nothing is created); or the table exists without
            ``key`` and ``value`` columns.
        StoreError: the database cannot be reached or the table created.
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine,
        *,
        table: str | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        _require_sqlalchemy()
        import sqlalchemy as sa

        self.table = check_table(DEFAULT_TABLE if table is None else table)
        self.serializer = check_serializer(serializer)
        self._explicit = table is not None
        self._error: type[Exception] = sa.exc.SQLAlchemyError
        if isinstance(url_or_engine, sa.Engine):
            engine, owns = url_or_engine, False
        else:
            engine, owns = _create_engine(url_or_engine), True
        url = engine.url
        memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        self._shared = _Shared(engine, owns, serial=memory)
        try:
            self._setup()
        except BaseException:
            if owns:
                engine.dispose()
            raise

    def _setup(self) -> None:
        """Create the table when absent and build the statements on it."""
        import sqlalchemy as sa

        table = self._sa_table = _define_table(self.table)
        keys = table.c.key.in_(sa.bindparam("keys", expanding=True))
        self._select = sa.select(table.c.key, table.c.value).where(keys)
        self._delete = table.delete().where(keys)
        self._upsert = _upsert_for(self._shared.engine.dialect.name, table)
        with self._shared.serial:
            _create_table(self._shared.engine, table, self._error)

    @property
    def engine(self) -> Engine:
        """The engine the store runs on."""
        return self._shared.engine

    def __repr__(self) -> str:
        # hide_password masks the userinfo only; redact masks ?password= too.
        url = redact(self._shared.engine.url.render_as_string(hide_password=True))
        return f"SQLStore({url!r}, table={self.table!r})"

    @contextmanager
    def _connection(self, what: str, *, write: bool) -> Iterator[Connection]:
        """Yield a connection (in a committed transaction when ``write``); translate errors."""
        shared = self._shared
        if shared.closed:
            raise StoreError(f"{self!r} is closed")
        try:
            with shared.serial:
                if write:
                    with shared.engine.begin() as conn:
                        yield conn
                else:
                    with shared.engine.connect() as conn:
                        yield conn
        except self._error as exc:
            raise StoreError(f"SQL {what} on table {self.table!r} failed: {_brief(exc)}") from exc

    def _check_open(self) -> None:
        if self._shared.closed:
            raise StoreError(f"{self!r} is closed")

    def load_many(self, keys: Sequence[Key]) -> dict[Key, Any]:
        """Return ``{key: value}`` for the keys in the table; absent keys are left out.

        Raises:
            InvalidKeyError: a key is not a valid tiercache key.
            StoreError: the database failed, or the store is closed.
            SerializationError: a stored value cannot be decoded.
        """
        originals = {encode_key(key): key for key in keys}
        if not originals:
            self._check_open()
            return {}
        rows: list[Any] = []
        with self._connection("load", write=False) as conn:
            for chunk in chunked(list(originals)):
                rows += conn.execute(self._select, {"keys": chunk}).all()
        loads = self.serializer.loads
        return {originals[key]: loads(value) for key, value in rows}

    def save_many(self, items: Mapping[Key, Any]) -> None:
        """Insert or replace every item in one transaction.

        Every key and value is encoded before the database is touched, so a
        bad one changes nothing.

        Raises:
            InvalidKeyError: a key is not a valid tiercache key.
            SerializationError: a value cannot be encoded.
            StoreError: the database failed (nothing is written), or the store is closed.
        """
        dumps = self.serializer.dumps
        # Key order is one lock order for every writer: batches cannot deadlock.
        pairs = sorted((encode_key(key), dumps(value)) for key, value in items.items())
        rows: _Rows = [{"key": key, "value": value} for key, value in pairs]
        if not rows:
            self._check_open()
            return
        with self._connection("save", write=True) as conn:
            for chunk in chunked(rows):
                self._upsert(conn, list(chunk))

    def delete_many(self, keys: Sequence[Key]) -> None:
        """Delete the keys in one transaction; absent keys are ignored.

        Raises:
            InvalidKeyError: a key is not a valid tiercache key.
            StoreError: the database failed (nothing is deleted), or the store is closed.
        """
        encoded = sorted({encode_key(key) for key in keys})
        if not encoded:
            self._check_open()
            return
        with self._connection("delete", write=True) as conn:
            for chunk in chunked(encoded):
                conn.execute(self._delete, {"keys": list(chunk)})

    def bind(self, namespace: str) -> Store:
        """Return ``namespace``'s sibling store, or this store when ``table=`` was given.

        The sibling shares this store's engine and serializer and owns the
        table :func:`~tiercache.stores._table.namespace_table` names, created
        when absent; binding one namespace twice returns the same sibling.

        Raises:
            ConfigurationError: ``namespace`` is not a valid namespace name.
            StoreError: the table cannot be created, or the store is closed.
        """
        if self._explicit:
            return self
        table = namespace_table(namespace)
        shared = self._shared
        with shared.lock:
            self._check_open()
            sibling = shared.siblings.get(table)
            if sibling is None:
                sibling = object.__new__(SQLStore)
                sibling.table = table
                sibling.serializer = self.serializer
                sibling._explicit = False
                sibling._error = self._error
                sibling._shared = shared
                sibling._setup()
                shared.siblings[table] = sibling
        return sibling

    def close(self) -> None:
        """Dispose of the engine if the store created it; idempotent.

        Closes this store's siblings too. An engine passed in is left open.
        """
        shared = self._shared
        with shared.lock:
            if shared.closed:
                return
            shared.closed = True
        if shared.owns_engine:
            shared.engine.dispose()


def _require_sqlalchemy() -> None:
    """Import SQLAlchemy, or explain how to install it."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(INSTALL_HINT) from exc


def _brief(exc: Exception) -> str:
    """The driver's own message, without the SQL and parameters SQLAlchemy appends."""
    return str(getattr(exc, "orig", None) or exc).strip()


def _create_engine(url: str | URL) -> Engine:
    """Create an engine for ``url``; an in-memory SQLite one serves every thread."""
    import sqlalchemy as sa
    from sqlalchemy.pool import StaticPool

    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            # The default pool gives each thread its own, empty, database.
            return sa.create_engine(
                parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        return sa.create_engine(parsed)
    except (sa.exc.ArgumentError, ValueError, ImportError) as exc:
        # ValueError: a port that is no number. SQLAlchemy's messages repeat the URL.
        shown = redact(url if isinstance(url, str) else url.render_as_string(hide_password=True))
        raise ConfigurationError(f"SQLStore cannot use {shown!r}: {redact(str(exc))}") from exc


def _define_table(name: str) -> Table:
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    # MySQL cannot index TEXT, and compares VARCHAR case-insensitively by
    # default; canonical keys need exact comparison.
    key_type = sa.Text().with_variant(
        mysql.VARCHAR(700, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )
    value_type = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("key", key_type, primary_key=True),
        sa.Column("value", value_type, nullable=False),
    )


def _create_table(engine: Engine, table: Table, error: type[Exception]) -> None:
    """Create ``table`` when absent; refuse an existing table of another shape."""
    import sqlalchemy as sa

    try:
        try:
            table.create(engine, checkfirst=True)
        except error:
            # Another process may have created it between the check and the
            # CREATE; only a table that is still absent is a failure.
            if not sa.inspect(engine).has_table(table.name):
                raise
        columns = {column["name"] for column in sa.inspect(engine).get_columns(table.name)}
    except error as exc:
        raise StoreError(f"cannot create table {table.name!r}: {_brief(exc)}") from exc
    if not {"key", "value"} <= columns:
        raise ConfigurationError(
            f"table {table.name!r} exists without 'key' and 'value' columns; "
            "name another table, or serve this one with FunctionStore"
        )


def _upsert_for(dialect: str, table: Table) -> _Upsert:
    """The dialect's native upsert, or delete-then-insert in the caller's transaction."""
    upsert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pstmt = pg_insert(table)
        upsert = pstmt.on_conflict_do_update(
            index_elements=[table.c.key], set_={"value": pstmt.excluded.value}
        )
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sstmt = sqlite_insert(table)
        upsert = sstmt.on_conflict_do_update(
            index_elements=[table.c.key], set_={"value": sstmt.excluded.value}
        )
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        mstmt = mysql_insert(table)
        upsert = mstmt.on_duplicate_key_update(value=mstmt.inserted.value)
    else:
        return _generic_upsert(table)

    def native(conn: Connection, rows: _Rows) -> None:
        conn.execute(upsert, rows)

    return native


def _generic_upsert(table: Table) -> _Upsert:
    """Delete-then-insert: correct on any database, inside the batch's transaction."""
    import sqlalchemy as sa

    delete = table.delete().where(table.c.key.in_(sa.bindparam("keys", expanding=True)))
    insert = table.insert()

    def generic(conn: Connection, rows: _Rows) -> None:
        conn.execute(delete, {"keys": [row["key"] for row in rows]})
        conn.execute(insert, rows)

    return generic
