"""The stack a bench run measures: its Redis tier and store, their cleanup and its log capture."""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from rich.console import Console

from .._redact import redact
from ..errors import ConfigurationError, StoreError, TierUnavailable
from ..redis import RedisTier
from ..stores.base import Store
from ..stores.sqlite import SQLiteStore
from .options import Options

__all__ = ["open_store", "quietly", "redis_tier", "route_logs"]

CONNECT_TIMEOUT = 10
"""Seconds a PostgreSQL connection attempt may take (added to URLs that set none)."""


def route_logs(console: Console, warnings: list[str], cleanup: ExitStack) -> None:
    """Show tiercache's warnings as they happen (above the progress bar) and keep them."""

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            warnings.append(message)
            console.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)

    logger = logging.getLogger("tiercache")
    handler, propagate = Handler(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    cleanup.callback(setattr, logger, "propagate", propagate)
    cleanup.callback(logger.removeHandler, handler)


def quietly(warnings: list[str], what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run a cleanup step; a failure becomes a warning, never hides the run's own error."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure: report it, finish the cleanup
        warnings.append(f"cleanup: {what} failed: {exc}")


def redis_tier(
    opts: Options, cleanup: ExitStack, warnings: list[str], prefix: str
) -> tuple[RedisTier, str]:
    """The run's L2 and its label; a real server must answer PING, its keys go at the end."""
    if opts.redis is None:
        return RedisTier.embedded(ttl=opts.l2_ttl), "embedded Redis"
    tier = RedisTier(opts.redis, ttl=opts.l2_ttl)
    label = redact(opts.redis)
    cleanup.callback(quietly, warnings, "closing Redis", tier.close)
    # RedisTier reads around a dead server without a word; a bench on one would measure nothing.
    if not tier.ping():
        raise TierUnavailable(
            f"cannot reach Redis at {label} (no answer to PING within {tier.timeout:g} s)"
        )
    cleanup.callback(quietly, warnings, f"removing the Redis keys under {prefix}:",
                     _remove_keys, opts.redis, prefix)
    return tier, label


def _remove_keys(url: str, prefix: str) -> None:
    """Remove every key the run left under its prefix (entries, leases, the bus stream)."""
    sweeper = RedisTier(url, timeout=5.0)
    try:
        sweeper.delete_prefix(prefix + ":")
    finally:
        sweeper.close()


def open_store(
    opts: Options, cleanup: ExitStack, warnings: list[str]
) -> tuple[Store, dict[str, Any]]:
    """The run's store on a table of its own, and its cleanup (closed, table dropped)."""
    table = "tiercache_bench_" + uuid.uuid4().hex[:12]
    url = opts.store
    if url is None:
        directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tiercache-bench-"))
        store = SQLiteStore(os.path.join(directory, "bench.db"), table=table)
        cleanup.callback(quietly, warnings, "closing the store", store.close)
        return store, {"kind": "SQLiteStore", "url": "(temporary directory)", "table": table}
    path = _sqlite_path(url)
    if path is not None:
        existed = path == ":memory:" or os.path.exists(path)
        store = SQLiteStore(path, table=table)
        cleanup.callback(quietly, warnings, f"dropping table {table}", _drop_sqlite, path, table,
                         existed)
        cleanup.callback(quietly, warnings, "closing the store", store.close)
        return store, {"kind": "SQLiteStore", "url": path, "table": table, "dropped": True}
    from ..stores.sql import SQLStore

    target, shown = _sql_url(url)
    try:
        sql = SQLStore(target, table=table)
    except StoreError as exc:
        raise StoreError(f"store {shown}: {exc}") from exc
    cleanup.callback(quietly, warnings, f"dropping table {table}", _drop_sql, sql, table)
    cleanup.callback(quietly, warnings, "closing the store", sql.close)
    return sql, {"kind": "SQLStore", "url": shown, "table": table, "dropped": True}


def _sqlite_path(url: str) -> str | None:
    """The file of a plain path or ``sqlite:///PATH`` URL; None for other URLs."""
    if "://" not in url:
        return url
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        if rest in ("", "/", "/:memory:"):
            return ":memory:"
        return rest.removeprefix("/")
    return None


def _drop_sqlite(path: str, table: str, existed: bool) -> None:
    if path == ":memory:":
        return
    if not existed:  # the bench made the file: leave nothing behind
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    conn = sqlite3.connect(path)
    try:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')  # our own name: no quoting issue
        conn.commit()
    finally:
        conn.close()


def _sql_url(url: str) -> tuple[Any, str]:
    """The URL to connect to and the one to show (password hidden).

    A PostgreSQL URL gets a ``connect_timeout``, so an unreachable host fails in time.
    """
    try:
        import sqlalchemy as sa
    except ImportError:
        return url, redact(url)  # SQLStore explains how to install SQLAlchemy
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise ConfigurationError(f"--store: not a database URL: {redact(url)!r}") from exc
    # hide_password masks the userinfo only; redact masks ?password= too.
    shown = redact(parsed.render_as_string(hide_password=True))
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
    return parsed, shown


def _drop_sql(store: Any, table: str) -> None:
    import sqlalchemy as sa

    engine = store.engine  # disposed by the store's close(), and usable again
    try:
        sa.Table(table, sa.MetaData()).drop(engine, checkfirst=True)
    finally:
        engine.dispose()

