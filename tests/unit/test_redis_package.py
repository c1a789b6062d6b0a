"""tiercache.redis as a package: no import cycle, one envelope, one error map, typed operations."""

from __future__ import annotations

import ast
import asyncio
import importlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterException,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)

import tiercache
from tiercache._engine import ops
from tiercache.errors import TierError, TierUnavailable
from tiercache.redis import commands, envelope, scripts
from tiercache.redis.connection import Breaker, Connection, tier_error
from tiercache.tiers.base import UNDECODABLE

PACKAGE = Path(tiercache.__file__).parent
REDIS_MODULES = sorted(
    "tiercache.redis" + ("" if p.stem == "__init__" else f".{p.stem}")
    for p in (PACKAGE / "redis").glob("*.py")
)

# -- imports --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", [*REDIS_MODULES, "tiercache.tiers", "tiercache.tiers.redis", "tiercache.bus"]
)
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    """``import <module>`` as the first import of a new process succeeds."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", f"import {module}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def _exists(name: str) -> bool:
    base = PACKAGE.parent / name.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _load_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module loads: top level, not under ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.Try) or (
            isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test)
        ):
            found += [n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def _import_graph() -> dict[str, set[str]]:
    """tiercache's modules and what each needs loaded first (packages included)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        targets: list[str] = []
        for node in _load_time_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if _exists(sub) else base)
        needs: set[str] = set()
        for target in targets:
            if not target.startswith("tiercache"):
                continue
            needs.add(target)
            # Loading a.b.c loads the package a.b first, unless the importer is inside it
            # (then that package is already being loaded).
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if _is_package(parent) and not (name + ".").startswith(parent + "."):
                    needs.add(parent)
        graph[name] = needs - {name}
    return graph


def test_no_import_cycle_runs_through_the_redis_package_or_the_tiers() -> None:
    """The load-time import graph has no cycle through tiercache.redis or tiercache.tiers."""
    graph = _import_graph()
    watched = [m for m in graph if m.startswith(("tiercache.redis", "tiercache.tiers"))]
    assert "tiercache.redis.tier" in watched and "tiercache.redis.versions" in watched

    def path_back(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(n, [start, n]) for n in graph.get(start, ())]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            if node == start:
                return path
            if node in seen:
                continue
            seen.add(node)
            stack += [(n, [*path, n]) for n in graph.get(node, ())]
        return None

    cycles = [cycle for m in watched if (cycle := path_back(m)) is not None]
    assert cycles == []


def test_public_names_stay_where_users_import_them() -> None:
    """tiercache.RedisTier, tiercache.tiers.RedisTier and the old module paths are one class."""
    from tiercache.redis import RedisTier
    from tiercache.tiers import RedisTier as TiersRedisTier
    from tiercache.tiers.redis import RedisTier as OldModuleRedisTier

    assert tiercache.RedisTier is RedisTier is TiersRedisTier is OldModuleRedisTier
    old_bus = importlib.import_module("tiercache.bus")
    with pytest.warns(DeprecationWarning, match="tiercache.redis.bus"):
        assert old_bus.Bus is tiercache.redis.Bus


# -- the envelope ---------------------------------------------------------------------------


def test_a_sealed_copy_opens_to_its_payload_and_remaining_ttl() -> None:
    """seal, then open_one/open_many: payload and TTL left; 0 means no expiry; expired is a miss."""
    now_ms = time.time() * 1000
    lasting = envelope.seal(envelope.PLAIN, b"\x01abc", int(now_ms) + 20_000)
    forever = envelope.seal(envelope.PLAIN, b"\x01xyz", 0)
    expired = envelope.seal(envelope.PLAIN, b"\x01old", int(now_ms) - 1)
    hit = envelope.open_one(lasting, now_ms)
    assert hit is not None and hit[0] == b"\x01abc"
    assert 19 < hit[1] <= 20  # type: ignore[index,operator]
    assert envelope.open_one(forever, now_ms) == (b"\x01xyz", None)
    assert envelope.open_one(expired, now_ms) is None
    assert envelope.open_many([lasting, None, forever, expired], now_ms)[1:] == [
        None, (b"\x01xyz", None), None
    ]
    assert len(forever) == envelope.HEADER_SIZE + 4


@pytest.mark.parametrize("raw", [b"", b"T\x00", b"plain bytes", b"V" + bytes(8) + b"\x01"])
def test_bytes_that_are_not_a_plain_copy_are_undecodable(raw: bytes) -> None:
    """Foreign, truncated or versioned bytes read as a plain copy are UNDECODABLE."""
    assert envelope.open_one(raw, 0.0) is UNDECODABLE
    assert envelope.open_many([raw], 0.0) == [UNDECODABLE]


def test_the_scripts_stamp_versions_where_the_python_side_reads_them(redis_client: Any) -> None:
    """A copy stamped by the scripts' Lua opens with open_versioned, and only at its version."""
    sealed = envelope.seal(envelope.VERSIONED, b"\x01payload", 0)
    lua = envelope.LUA + "return {stamped(ARGV[1], tonumber(ARGV[2])), version_text(ARGV[2])}"
    copy, version = redis_client.eval(lua, 0, sealed, 1_733_000_000_123_456)
    assert len(version) == envelope.VERSION_DIGITS
    assert envelope.open_versioned(copy, version, 0.0) == (b"\x01payload", None)
    assert envelope.open_versioned(copy, b"%016d" % 1, 0.0) is None  # another version
    assert envelope.open_versioned(sealed, version, 0.0) is UNDECODABLE  # never stamped
    plain = envelope.seal(envelope.PLAIN, b"\x01payload", 0)
    assert envelope.open_versioned(plain, version, 0.0) is None  # from before Versioned
    assert all(envelope.LUA in s.source for s in (scripts.SET_VERSIONED, scripts.FILL_VERSIONED,
                                                   scripts.JOURNAL_PUT))


# -- the error map -----------------------------------------------------------------------------

UNAVAILABLE = [
    redis.TimeoutError("timed out"),
    redis.ConnectionError("refused"),
    redis.exceptions.AuthenticationError("wrong password"),
    redis.exceptions.BusyLoadingError("loading"),
    ClusterDownError("CLUSTERDOWN"),
    MasterDownError("MASTERDOWN"),
    TryAgainError("TRYAGAIN"),
    RedisClusterUnreachableError("no node answers"),
    SlotNotCoveredError("slot 12 not covered"),
]
REFUSED = [
    redis.ResponseError("WRONGTYPE"),
    redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'"),
    redis.DataError("bad argument"),
    RedisClusterException("cluster client misconfigured"),
]


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_unreachable_answers_map_to_tier_unavailable(exc: Exception) -> None:
    """Timeouts, dropped connections and a cluster without a node for a slot: TierUnavailable."""
    error = tier_error(exc, "GET")
    assert isinstance(error, TierUnavailable) and str(exc) in str(error) and "GET" in str(error)


@pytest.mark.parametrize("exc", REFUSED, ids=lambda e: type(e).__name__)
def test_refused_commands_map_to_tier_error(exc: Exception) -> None:
    """A command the server refuses (or a client misuse) is a TierError, not unavailability."""
    error = tier_error(exc, "SET")
    assert type(error) is TierError


def test_the_breaker_translates_cluster_errors_and_opens_only_on_unavailability() -> None:
    """guard() raises the mapped error from the original; refusals never open the breaker."""
    breaker = Breaker(2, 60.0, lambda: True, "tier")
    for exc in REFUSED:
        with pytest.raises(TierError) as info, breaker.guard("SET"):
            raise exc
        assert info.value.__cause__ is exc
    assert breaker.opened == 0
    for _ in range(2):
        with pytest.raises(TierUnavailable), breaker.guard("GET"):
            raise ClusterDownError("CLUSTERDOWN")
    assert breaker.opened == 1
    with pytest.raises(TierUnavailable, match="circuit open"), breaker.guard("GET"):
        pass


# -- typed operations ----------------------------------------------------------------------------


def _plan(conn: Connection, key: str) -> ops.Plan[list[Any]]:
    """Every kind of Redis operation once, with the replies collected."""
    lease = f"{key}:lease"
    taken = yield commands.Pipeline(conn, [commands.SetNX(lease, "t", 5000),
                                           commands.SetNX(lease, "u", 5000)])
    value = yield commands.Send(conn, commands.Get(lease))
    unlocked = yield commands.RunScript(conn, scripts.UNLOCK, [lease], ["t"])
    after = yield commands.Send(conn, commands.MGet([lease, f"{key}:none"]))
    return [taken, value, unlocked, after]


def test_operations_answer_alike_on_the_sync_and_the_async_driver() -> None:
    """A command, a pipeline and a script give the same replies under ops.run and ops.arun."""
    conn = Connection(None, None, None, 1.0)  # the embedded server
    expected = [[True, None], b"t", 1, [None, None]]
    assert ops.run(_plan(conn, "redis-package:sync")) == expected

    async def main() -> list[Any]:
        try:
            return await ops.arun(_plan(conn, "redis-package:async"))
        finally:
            await conn.aclose()

    assert asyncio.run(main()) == expected
    conn.close()
