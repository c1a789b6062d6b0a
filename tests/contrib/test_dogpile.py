"""dogpile.cache's own backend, serializer and mutex suites, run on the "tiercache" backend."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, ClassVar

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE
from dogpile.testing.fixtures import (
    _GenericBackendTestSuite,
    _GenericMutexTestSuite,
    _GenericSerializerTestSuite,
)

import tiercache as tc
from tiercache.contrib.dogpile import RedisMutex, TiercacheBackend

pytestmark = pytest.mark.redis


class _OnRealRedis:
    """Points the suite at the real Redis, under this test's own prefix."""

    backend = "tiercache"
    # setup_class builds one backend before any fixture runs: the embedded
    # server keeps that sanity check off the network.
    config_args: ClassVar[dict[str, Any]] = {"arguments": {"url": "embedded"}}
    extra_arguments: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(autouse=True)
    def _real_redis(
        self, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.config_args = {"arguments": {"url": redis_url, "prefix": prefix, "namespace": "dp"}}
        # The suites build backends and never close them: each one's Cache would
        # keep its bus thread and connections for the rest of the session.
        self._made: list[TiercacheBackend] = []
        init = TiercacheBackend.__init__

        def record(backend: TiercacheBackend, *args: Any, **kwargs: Any) -> None:
            init(backend, *args, **kwargs)
            self._made.append(backend)

        monkeypatch.setattr(TiercacheBackend, "__init__", record)

    def teardown_method(self, method: Any) -> None:
        try:
            super().teardown_method(method)  # type: ignore[misc]  # the suite's key cleanup
        finally:
            for backend in self._made:
                backend.close()


class TestBackend(_OnRealRedis, _GenericBackendTestSuite):
    """dogpile's _GenericBackendTestSuite."""


class TestSerializer(_GenericSerializerTestSuite, TestBackend):
    """dogpile's _GenericSerializerTestSuite (json serializers given to the region)."""


class TestMutex(_OnRealRedis, _GenericMutexTestSuite):
    """dogpile's _GenericMutexTestSuite, on the Redis lock."""


@pytest.fixture
def region_args(redis_url: str, prefix: str) -> dict[str, Any]:
    """Region arguments on the real Redis under this test's prefix."""
    return {"url": redis_url, "prefix": prefix, "namespace": "dp"}


def test_entry_point_names_the_backend(region_args: dict[str, Any]) -> None:
    """make_region().configure("tiercache") finds TiercacheBackend through the entry point."""
    region = make_region().configure("tiercache", arguments=region_args)
    assert type(region.backend) is TiercacheBackend
    region.backend.close()


def test_default_serializer_is_msgpack_not_pickle(
    region_args: dict[str, Any], redis_client: Any
) -> None:
    """Without region serializers the payload is tiercache msgpack; a custom class is refused."""
    region = make_region().configure("tiercache", arguments=region_args)
    region.set("k", {"a": (1, 2)})
    raw = region.backend.get_serialized("k")
    payload = raw.partition(b"|")[2]
    assert payload == tc.MsgpackSerializer().dumps({"a": (1, 2)})
    assert region.get("k") == {"a": (1, 2)}

    class Custom:
        pass

    with pytest.raises(tc.SerializationError):
        region.set("other", Custom())
    assert region.get("other") is NO_VALUE
    region.backend.close()


def test_foreign_bytes_are_a_miss(region_args: dict[str, Any]) -> None:
    """A payload the serializer cannot decode (pickle, another program's) reads as NO_VALUE."""
    region = make_region().configure("tiercache", arguments=region_args)
    meta = json.dumps({"ct": 0.0, "v": 2}).encode()
    region.backend.set_serialized("k", meta + b"|" + b"\x80\x04K\x01.")  # pickle of 1
    assert region.get("k") is NO_VALUE
    region.backend.close()


def test_region_values_cross_processes(region_args: dict[str, Any]) -> None:
    """A value set in this process is read by another process through Redis."""
    region = make_region().configure("tiercache", arguments=region_args)
    region.set("shared", ["x", 1])
    code = (
        "import sys, json; from dogpile.cache import make_region\n"
        "r = make_region().configure('tiercache', arguments=json.loads(sys.argv[1]))\n"
        "print(json.dumps(r.get('shared')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(region_args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout) == ["x", 1]
    region.backend.close()


def test_mutex_excludes_another_process(region_args: dict[str, Any]) -> None:
    """While this process holds a key's mutex, another process cannot take it."""
    backend = TiercacheBackend(region_args)
    mutex = backend.get_mutex("k")
    assert mutex is not None and mutex.acquire()
    code = (
        "import sys, json; from tiercache.contrib.dogpile import RedisMutex, TiercacheBackend\n"
        "b = TiercacheBackend(json.loads(sys.argv[1]))\n"
        "print(b.get_mutex('k').acquire(False), b.get_mutex('other').acquire(False))\n"
    )
    run = [sys.executable, "-c", code, json.dumps(region_args)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "True"]
    mutex.release()
    backend.close()


def test_cache_argument_is_used_and_left_open(redis_url: str, prefix: str) -> None:
    """``cache=`` stores in that Cache's namespace, locks on its Redis, is left open by close()."""
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=100), tc.RedisTier(redis_url)], prefix=prefix)
    region = make_region().configure("tiercache", arguments={"cache": cache, "namespace": "mine"})
    mutex = region.backend.get_mutex("k")
    assert isinstance(mutex, RedisMutex) and mutex.acquire(False) and mutex.locked()
    mutex.release()
    region.set("k", "v")
    assert cache.namespace("mine").get("k", tc.MISSING) is not tc.MISSING
    region.backend.close()
    assert region.get("k") == "v"
    cache.close()


def test_configuration_errors() -> None:
    """Neither or both of url and cache, or a non-Serializer, is a ConfigurationError."""
    with pytest.raises(tc.ConfigurationError):
        TiercacheBackend({})
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=10)])
    with pytest.raises(tc.ConfigurationError):
        TiercacheBackend({"url": "embedded", "cache": cache})
    with pytest.raises(tc.ConfigurationError):
        TiercacheBackend({"url": "embedded", "serializer": object()})
    with pytest.raises(tc.ConfigurationError):
        TiercacheBackend({"cache": cache, "distributed_lock": True})
    backend = TiercacheBackend({"cache": cache})
    assert backend.get_mutex("k") is None  # no Redis: dogpile's in-process mutex
    cache.close()
