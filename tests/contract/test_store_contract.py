"""Every store that ships runs the store contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tiercache._types import MISSING, Key
from tiercache.stores import FunctionStore, MappingStore, SQLiteStore, SQLStore, Store
from tiercache.testing.store_contract import StoreContract


class TestMappingStore(StoreContract):
    isolates_namespaces = False

    def make_store(self) -> Store:
        return MappingStore()


class TestFunctionStore(StoreContract):
    """Single-key functions; the batch methods are derived."""

    isolates_namespaces = False

    def make_store(self) -> Store:
        data: dict[Key, Any] = {}
        return FunctionStore(
            load=lambda key: data.get(key, MISSING),
            save=data.__setitem__,
            delete=lambda key: data.pop(key, None),
        )


class TestFunctionStoreBatch(StoreContract):
    """Batch functions only; the single-key methods are derived."""

    isolates_namespaces = False

    def make_store(self) -> Store:
        data: dict[Key, Any] = {}

        def delete_many(keys: Any) -> None:
            for key in keys:
                data.pop(key, None)

        return FunctionStore(
            load_many=lambda keys: {key: data[key] for key in keys if key in data},
            save_many=data.update,
            delete_many=delete_many,
        )


class TestSQLiteStoreFile(StoreContract):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.path = tmp_path / "store.db"

    def make_store(self) -> Store:
        return SQLiteStore(self.path)


class TestSQLiteStoreMemory(StoreContract):
    def make_store(self) -> Store:
        return SQLiteStore(":memory:")


class TestSQLiteStoreExplicitTable(StoreContract):
    isolates_namespaces = False

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.path = tmp_path / "store.db"

    def make_store(self) -> Store:
        return SQLiteStore(self.path, table="entries")


class TestSQLStoreSQLite(StoreContract):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'store.db'}"

    def make_store(self) -> Store:
        return SQLStore(self.url)


class TestSQLStoreSQLiteMemory(StoreContract):
    def make_store(self) -> Store:
        return SQLStore("sqlite://")


@pytest.mark.postgres
class TestSQLStorePostgres(StoreContract):
    """A unique table per test, on an engine the store owns; bind() returns the store."""

    isolates_namespaces = False

    @pytest.fixture(autouse=True)
    def _table(self, postgres_url: str) -> Iterator[None]:
        import sqlalchemy as sa

        self.url = postgres_url
        self.table = "t_" + uuid.uuid4().hex
        yield
        engine = sa.create_engine(postgres_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP TABLE IF EXISTS "{self.table}"'))
        finally:
            engine.dispose()

    def make_store(self) -> Store:
        return SQLStore(self.url, table=self.table)


@pytest.mark.postgres
class TestSQLStorePostgresNamespaces(StoreContract):
    """Default tables in a schema of the test's own, on an engine passed in."""

    @pytest.fixture(autouse=True)
    def _schema(self, postgres_url: str) -> Iterator[None]:
        import sqlalchemy as sa

        schema = "t_" + uuid.uuid4().hex
        admin = sa.create_engine(postgres_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        self.engine = sa.create_engine(
            postgres_url, connect_args={"options": f"-c search_path={schema}"}
        )
        try:
            yield
        finally:
            self.engine.dispose()
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

    def make_store(self) -> Store:
        return SQLStore(self.engine)
