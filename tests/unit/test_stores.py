"""Store-specific behaviour beyond the contract: configuration, errors, ownership."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tiercache._types import MISSING, Key
from tiercache.errors import (
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
    StoreError,
    TiercacheError,
)
from tiercache.keys import encode_key
from tiercache.serialization import JSONSerializer
from tiercache.stores import FunctionStore, MappingStore, SQLiteStore, SQLStore
from tiercache.stores.sqlite import namespace_table

BAD_TABLES: list[Any] = ["", "1abc", "a-b", "a.b", 'x"; DROP TABLE y; --', "x" * 64, "sqlite_x", 5]


def _raw(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- table names -----------------------------------------------------------------


@pytest.mark.parametrize("table", BAD_TABLES)
def test_sqlite_bad_table_name_is_refused_before_anything_is_created(
    tmp_path: Path, table: Any
) -> None:
    """A bad table= raises ConfigurationError and creates no database file."""
    with pytest.raises(ConfigurationError):
        SQLiteStore(tmp_path / "x.db", table=table)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("table", BAD_TABLES)
def test_sql_bad_table_name_is_refused_before_anything_is_created(
    tmp_path: Path, table: Any
) -> None:
    """SQLStore refuses a bad table= the same way, creating nothing."""
    with pytest.raises(ConfigurationError):
        SQLStore(f"sqlite:///{tmp_path / 'x.db'}", table=table)
    assert list(tmp_path.iterdir()) == []


def test_namespace_tables_never_collide() -> None:
    """Names equal after '-'/'.' -> '_' or case folding get tables of their own."""
    names = ["a_b", "a-b", "a.b", "A_b", "x" * 64]
    tables = [namespace_table(name) for name in names]
    assert tables[0] == "tiercache_a_b"
    assert len(set(tables)) == len(names)
    assert all(len(table) <= 63 for table in tables)
    with pytest.raises(ConfigurationError):
        namespace_table("bad:name")


def _hash_look_alike(namespace: str) -> str:
    """The plain namespace name spelled like ``namespace``'s folded-plus-hash table."""
    return namespace_table(namespace).removeprefix("tiercache_")


def test_a_plain_name_never_takes_a_hashed_names_table() -> None:
    """A plain name equal to another name's folded-plus-hash form gets another table."""
    for name in ["a-b", "A_b", "Users", "x" * 64, "a.b-c"]:
        look_alike = _hash_look_alike(name)
        assert namespace_table(look_alike) != namespace_table(name)
        assert len(namespace_table(look_alike)) <= 63


def test_sqlite_look_alike_namespaces_do_not_share_rows(tmp_path: Path) -> None:
    """Two namespaces whose names once mapped to one SQLite table keep their rows apart."""
    store = SQLiteStore(tmp_path / "x.db")
    hashed, plain = store.bind("a-b"), store.bind(_hash_look_alike("a-b"))
    hashed.save_many({"k": "hashed"})
    assert plain.load_many(["k"]) == {}
    plain.save_many({"k": "plain"})
    assert hashed.load_many(["k"]) == {"k": "hashed"}
    store.close()


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine on the real PostgreSQL."""
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_postgres_look_alike_namespaces_do_not_share_rows(
    postgres_url: str, pg_engine: sa.Engine
) -> None:
    """Two namespaces whose names once mapped to one PostgreSQL table keep their rows apart."""
    name = f"t{uuid.uuid4().hex[:8]}-ns"  # a fresh pair of tables for this run
    store = SQLStore(postgres_url)
    hashed, plain = store.bind(name), store.bind(_hash_look_alike(name))
    tables = {hashed.table, plain.table}  # type: ignore[attr-defined]
    try:
        hashed.save_many({"k": "hashed"})
        assert plain.load_many(["k"]) == {}
        plain.save_many({"k": "plain"})
        assert hashed.load_many(["k"]) == {"k": "hashed"}
    finally:
        store.close()
        for table in tables:
            sa.Table(table, sa.MetaData()).drop(pg_engine, checkfirst=True)


def _open_new_files(paths: list[str], barrier: Any, results: Any) -> None:
    """Child process: open each new database together with the others; report failures."""
    failures = []
    for path in paths:
        barrier.wait(60)
        try:
            store = SQLiteStore(path)
            store.bind("users").save_many({"k": 1})
            store.close()
        except TiercacheError as exc:
            failures.append(f"{path}: {exc}")
    results.put(failures)


def test_sqlite_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Processes that open the same new SQLite file at the same moment never see 'locked'."""
    processes, files = 6, 100  # the old code failed 1-2% of these 600 opens
    ctx = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"new{i}.db") for i in range(files)]
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    children = [ctx.Process(target=_open_new_files, args=(paths, barrier, results))
                for _ in range(processes)]
    for child in children:
        child.start()
    try:
        failures = [f for _ in children for f in results.get(timeout=90)]
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(10)
    assert failures == []
    for path in paths:
        assert SQLiteStore(path).bind("users").load_many(["k"]) == {"k": 1}


def test_table_of_another_shape_is_refused(tmp_path: Path) -> None:
    """An existing table without key/value columns raises ConfigurationError."""
    _raw(tmp_path / "x.db", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(ConfigurationError, match="FunctionStore"):
        SQLiteStore(tmp_path / "x.db", table="users")
    with pytest.raises(ConfigurationError, match="FunctionStore"):
        SQLStore(f"sqlite:///{tmp_path / 'x.db'}", table="users")


# -- SQLiteStore -----------------------------------------------------------------


def test_sqlite_stores_canonical_keys_and_serialized_bytes(tmp_path: Path) -> None:
    """The key column holds encode_key(key); the value column the serializer's bytes."""
    store = SQLiteStore(tmp_path / "x.db", serializer=JSONSerializer())
    store.save_many({("a", 1): {"v": 1}})
    store.close()
    rows = _raw(tmp_path / "x.db", "SELECT key, value FROM tiercache")
    assert rows == [(encode_key(("a", 1)), JSONSerializer().dumps({"v": 1}))]


def test_sqlite_file_database_runs_in_wal_mode(tmp_path: Path) -> None:
    """A file database is switched to WAL so readers do not block the writer."""
    SQLiteStore(tmp_path / "x.db").close()
    assert _raw(tmp_path / "x.db", "PRAGMA journal_mode") == [("wal",)]


def test_sqlite_bind_rule(tmp_path: Path) -> None:
    """Default table: bind() gives a cached sibling on its own table; explicit table: self."""
    store = SQLiteStore(tmp_path / "x.db")
    users = store.bind("users")
    assert isinstance(users, SQLiteStore) and users.table == "tiercache_users"
    assert store.bind("users") is users
    explicit = SQLiteStore(tmp_path / "x.db", table="mine")
    assert explicit.bind("users") is explicit
    store.close()
    with pytest.raises(StoreError, match="closed"):
        users.load_many(["k"])
    explicit.close()


def test_sqlite_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not a database raises StoreError caused by sqlite3.DatabaseError."""
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not an sqlite database, not at all" * 100)
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_sqlite_locked_database_is_a_store_error(tmp_path: Path) -> None:
    """A write blocked past timeout= raises StoreError caused by sqlite3.OperationalError."""
    store = SQLiteStore(tmp_path / "x.db", timeout=0.05)
    store.save_many({"k": 1})
    other = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as info:
            store.save_many({"k": 2})
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.load_many(["k"]) == {"k": 1}
    store.save_many({"k": 3})  # the failed batch left no transaction open
    assert store.load_many(["k"]) == {"k": 3}
    store.close()


def test_sqlite_dropped_table_is_a_store_error(tmp_path: Path) -> None:
    """A table dropped behind the store's back raises StoreError with the sqlite3 cause."""
    store = SQLiteStore(tmp_path / "x.db", table="t")
    _raw(tmp_path / "x.db", "DROP TABLE t")
    for call in (
        lambda: store.load_many(["k"]),
        lambda: store.save_many({"k": 1}),
        lambda: store.delete_many(["k"]),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert isinstance(info.value.__cause__, sqlite3.Error)
    store.close()


def test_sqlite_closed_store_refuses_every_call() -> None:
    """After close(), every call raises StoreError; close() stays idempotent."""
    store = SQLiteStore(":memory:")
    store.close()
    for call in (
        lambda: store.load_many(["k"]),
        lambda: store.load_many([]),
        lambda: store.save_many({"k": 1}),
        lambda: store.delete_many(["k"]),
        lambda: store.bind("users"),
    ):
        with pytest.raises(StoreError, match="closed"):
            call()
    store.close()


@pytest.mark.parametrize("make", ["sqlite", "sql"])
def test_bad_value_or_key_changes_nothing(tmp_path: Path, make: str) -> None:
    """An unencodable value or an invalid key fails before the batch writes anything."""
    store = (
        SQLiteStore(tmp_path / "x.db")
        if make == "sqlite"
        else SQLStore(f"sqlite:///{tmp_path / 'x.db'}")
    )
    with pytest.raises(SerializationError):
        store.save_many({"a": 1, "b": object()})
    bad_key: Any = 1.5
    with pytest.raises(InvalidKeyError):
        store.save_many({"a": 1, bad_key: 2})
    assert store.load_many(["a", "b"]) == {}
    store.close()


def test_sqlite_bad_timeout_and_serializer_are_refused(tmp_path: Path) -> None:
    """timeout= and serializer= are checked before the database is opened."""
    bad: Any = object()
    for timeout in (-1, float("nan"), float("inf"), "5"):
        with pytest.raises(ConfigurationError):
            SQLiteStore(tmp_path / "x.db", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SQLiteStore(tmp_path / "x.db", serializer=bad)
    assert list(tmp_path.iterdir()) == []


# -- SQLStore --------------------------------------------------------------------


def test_sql_store_leaves_a_given_engine_undisposed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() does not dispose an Engine passed in; the caller still owns it."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    disposed: list[bool] = []
    monkeypatch.setattr(engine, "dispose", lambda *a, **k: disposed.append(True))
    store = SQLStore(engine)
    store.save_many({"k": 1})
    store.close()
    assert disposed == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tiercache")).scalar() == 1
    with pytest.raises(StoreError, match="closed"):
        store.load_many(["k"])


def test_sql_store_disposes_the_engine_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store built from a URL disposes its engine once, however often it is closed."""
    store = SQLStore(f"sqlite:///{tmp_path / 'x.db'}")
    disposed: list[bool] = []
    monkeypatch.setattr(store.engine, "dispose", lambda *a, **k: disposed.append(True))
    store.bind("users").close()
    store.close()
    assert disposed == [True]


def test_sql_bad_url_is_a_configuration_error() -> None:
    """A URL SQLAlchemy cannot use raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SQLStore("not a url")
    with pytest.raises(ConfigurationError):
        SQLStore("nosuchdialect://host/db")


def test_sql_corrupt_database_is_a_store_error(tmp_path: Path) -> None:
    """SQLAlchemy errors arrive as StoreError with the SQLAlchemy error as __cause__."""
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not an sqlite database, not at all" * 100)
    with pytest.raises(StoreError) as info:
        SQLStore(f"sqlite:///{path}")
    assert isinstance(info.value.__cause__, sa.exc.SQLAlchemyError)


def test_sql_dropped_table_is_a_store_error(tmp_path: Path) -> None:
    """A table dropped behind the store's back raises StoreError on every call."""
    store = SQLStore(f"sqlite:///{tmp_path / 'x.db'}", table="t")
    _raw(tmp_path / "x.db", "DROP TABLE t")
    for call in (
        lambda: store.load_many(["k"]),
        lambda: store.save_many({"k": 1}),
        lambda: store.delete_many(["k"]),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert isinstance(info.value.__cause__, sa.exc.SQLAlchemyError)
    store.close()


def test_sql_generic_upsert_replaces_values(tmp_path: Path) -> None:
    """The delete-then-insert fallback for other dialects upserts like the native one."""
    from tiercache.stores.sql import _generic_upsert

    store = SQLStore(f"sqlite:///{tmp_path / 'x.db'}")
    store._upsert = _generic_upsert(store._sa_table)
    store.save_many({"a": 1, "b": 2})
    store.save_many({"a": 3, "c": 4})
    assert store.load_many(["a", "b", "c"]) == {"a": 3, "b": 2, "c": 4}
    store.close()


def test_sql_and_sqlite_stores_read_each_others_tables(tmp_path: Path) -> None:
    """SQLStore and SQLiteStore share one table layout, so either reads the other's rows."""
    SQLiteStore(tmp_path / "x.db").bind("users").save_many({(1, "a"): {"v": 1}})
    store = SQLStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.bind("users").load_many([(1, "a")]) == {(1, "a"): {"v": 1}}
    store.close()


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://u:pw-7c1d@127.0.0.1:notaport/db",
     "nosuchdialect://u:pw-7c1d@127.0.0.1/db",
     "postgresql+psycopg://u@127.0.0.1:notaport/db?password=pw-7c1d"],
)
def test_sql_refused_url_error_does_not_repeat_its_password(url: str) -> None:
    """The ConfigurationError for a URL SQLAlchemy refuses shows *** for the password."""
    with pytest.raises(ConfigurationError) as info:
        SQLStore(url)
    assert "pw-7c1d" not in str(info.value)


@pytest.mark.postgres
@pytest.mark.parametrize("secret", ["userinfo", "query"])
def test_sql_store_repr_hides_the_password(
    postgres_url: str, pg_engine: sa.Engine, secret: str
) -> None:
    """repr/str of a store on a URL with a password (trust auth ignores it) show ***."""
    url = (postgres_url.replace("postgres@", "postgres:pw-7c1d@") if secret == "userinfo"
           else f"{postgres_url}?password=pw-7c1d")
    table = f"t{uuid.uuid4().hex[:12]}"
    store = SQLStore(url, table=table)
    try:
        for text in (repr(store), str(store)):
            assert "pw-7c1d" not in text and "***" in text
    finally:
        store.close()
        sa.Table(table, sa.MetaData()).drop(pg_engine, checkfirst=True)


@pytest.mark.postgres
def test_postgres_unreachable_is_a_store_error() -> None:
    """A server that refuses the connection raises StoreError, not a driver error."""
    with pytest.raises(StoreError) as info:
        SQLStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=1")
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)


# -- FunctionStore and MappingStore ------------------------------------------------


def test_function_store_needs_a_loader() -> None:
    """Without load= or load_many=, or with something uncallable, construction fails."""
    with pytest.raises(ConfigurationError, match="load"):
        FunctionStore(save=lambda key, value: None)
    not_callable: Any = 42
    with pytest.raises(ConfigurationError, match="callable"):
        FunctionStore(load=not_callable)


def test_function_store_wraps_errors_of_user_functions() -> None:
    """An exception from a user function arrives as StoreError with it as __cause__."""
    boom = RuntimeError("database on fire")

    def fail(*args: Any) -> Any:
        raise boom

    store = FunctionStore(load=fail, save=fail, delete=fail)
    for call in (
        lambda: store.load("k"),
        lambda: store.load_many(["k"]),
        lambda: store.save_many({"k": 1}),
        lambda: store.delete_many(["k"]),
    ):
        with pytest.raises(StoreError, match="database on fire") as info:
            call()
        assert info.value.__cause__ is boom


def test_function_store_lets_tiercache_errors_through() -> None:
    """A TiercacheError raised by a user function is re-raised unchanged."""
    error = StoreError("already translated")

    def fail(key: Key) -> Any:
        raise error

    with pytest.raises(TiercacheError) as info:
        FunctionStore(load=fail).load("k")
    assert info.value is error


def test_function_store_without_writers_is_read_only() -> None:
    """save and delete on a store without save=/delete= raise a clear StoreError."""
    store = FunctionStore(load=lambda key: MISSING)
    with pytest.raises(StoreError, match="no save="):
        store.save("k", 1)
    with pytest.raises(StoreError, match="no delete="):
        store.delete_many(["k"])
    store.save_many({})  # an empty batch is not a write


def test_function_store_prefers_the_batch_functions() -> None:
    """Given load_many/save_many/delete_many, a batch is one call, not one per key."""
    calls: list[str] = []
    data: dict[Key, Any] = {}

    def load_many(keys: Any) -> dict[Key, Any]:
        calls.append("load_many")
        return {key: data[key] for key in keys if key in data}

    def save_many(items: Any) -> None:
        calls.append("save_many")
        data.update(items)

    store = FunctionStore(load=data.__getitem__, load_many=load_many, save_many=save_many)
    store.save_many({"a": 1, "b": 2})
    assert store.load_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert store.load("a") == 1  # load= is used for a single key
    assert calls == ["save_many", "load_many"]


def test_function_store_load_many_must_return_a_mapping() -> None:
    """A load_many= returning something other than a mapping is a StoreError."""
    def bad(keys: Any) -> Any:
        return [1, 2]

    with pytest.raises(StoreError, match="mapping"):
        FunctionStore(load_many=bad).load_many(["k"])


def test_function_store_treats_missing_entries_as_absent() -> None:
    """load_many entries whose value is MISSING are left out of the result."""
    store = FunctionStore(load_many=lambda keys: dict.fromkeys(keys, MISSING))
    assert store.load_many(["k"]) == {}
    assert store.load("k") is MISSING


def test_mapping_store_serves_the_callers_mapping() -> None:
    """MappingStore reads and writes the very mapping it was given."""
    data: dict[Key, Any] = {"seeded": 1}
    store = MappingStore(data)
    store.save_many({"new": 2})
    store.delete_many(["seeded"])
    assert data == {"new": 2}
    assert store.bind("users") is store
