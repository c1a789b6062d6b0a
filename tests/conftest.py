"""Fixtures for real servers: Redis on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432.

Without a server the tests that need it skip; with TIERCACHE_REQUIRE_REDIS=1
(or TIERCACHE_REQUIRE_POSTGRES=1), as CI sets, they fail instead, so a CI run
can never pass by skipping them.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("TIERCACHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TIERCACHE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _unavailable(what: str, env: str, why: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required ({env}=1) but unavailable: {why}")
    pytest.skip(f"{what} unavailable: {why}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis; skips (or fails under TIERCACHE_REQUIRE_REDIS=1) without one."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", "TIERCACHE_REQUIRE_REDIS", repr(exc))
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[object]:
    """A raw redis-py client on the real server."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix unique to this test; its Redis keys are removed afterwards."""
    value = "t" + uuid.uuid4().hex[:12]
    yield value
    if "redis_url" in request.fixturenames:
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            keys = list(client.scan_iter(match=f"{value}:*", count=1000))
            if keys:
                client.unlink(*keys)
        finally:
            client.close()


@pytest.fixture
def in_threads() -> Callable[[Callable[[int], object], int], None]:
    """``in_threads(work, n)``: ``work(0)`` .. ``work(n - 1)`` in n threads released together.

    Bounded: the threads must all have ended within 60 s. What ``work``
    finds wrong it records for the test to assert on.
    """

    def run(work: Callable[[int], object], n: int) -> None:
        start = threading.Barrier(n, timeout=30)

        def body(i: int) -> None:
            start.wait()
            work(i)

        threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

    return run


TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
"""The recorded workloads in shared/traces, beside the repository (as in CI)."""


def shared_trace(name: str) -> Path:
    """Path of a shared trace; skips where shared/ is absent, fails where servers are required
    (CI)."""
    path = Path(os.environ.get("TIERCACHE_TRACES", TRACES)) / name
    if not path.exists():
        _unavailable(f"trace {name}", "TIERCACHE_REQUIRE_REDIS", f"{path} not found")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the real PostgreSQL; skips (or fails when required) without one."""
    try:
        import sqlalchemy as sa
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        _unavailable("PostgreSQL", "TIERCACHE_REQUIRE_POSTGRES", f"SQLAlchemy missing: {exc}")
        raise
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - a probe: any failure means no usable server
        _unavailable("PostgreSQL", "TIERCACHE_REQUIRE_POSTGRES", repr(exc))
    finally:
        engine.dispose()
    return POSTGRES_URL
