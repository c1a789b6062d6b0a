"""Stores: the system of record behind a namespace (mapping, functions, SQLite, SQL)."""

from __future__ import annotations

from .base import BaseStore, Store
from .function import FunctionStore
from .mapping import MappingStore
from .sql import SQLStore
from .sqlite import SQLiteStore

__all__ = [
    "BaseStore",
    "FunctionStore",
    "MappingStore",
    "SQLStore",
    "SQLiteStore",
    "Store",
]
