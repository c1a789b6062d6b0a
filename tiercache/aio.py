"""AsyncCache and AsyncNamespace: the same plans as Cache, awaited on redis.asyncio."""

from __future__ import annotations

import copy as copy_module
from types import TracebackType
from typing import Any, ClassVar

from ._engine.ops import Plan, arun
from ._types import MISSING, Key
from .cache import Cache
from .namespace import Namespace

__all__ = ["AsyncCache", "AsyncNamespace"]


class AsyncNamespace(Namespace):
    """A namespace whose methods are coroutines: ``await ns.get(key)``.

    Every method runs the same plan as :class:`Namespace`; only the driver
    differs: Redis calls go through ``redis.asyncio``, waits for another
    caller's load are awaited, and blocking stores run in worker threads.
    ``stats()`` stays a plain method.
    """

    def _drive(self, plan: Plan[Any]) -> Any:
        return arun(plan)

    async def get(self, key: Key, default: Any = None) -> Any:
        """Coroutine form of :meth:`Namespace.get`."""
        kind = type(key)
        if kind is str and key.isascii():  # type: ignore[union-attr]
            tier_key = self._str_prefix + key  # type: ignore[operator]
        elif kind is int:
            tier_key = self._int_prefix + str(key)
        else:
            return await arun(self._get_plan(key, default, 0))
        lookup = self._l1_lookup
        if lookup is None:
            return await arun(self._get_plan(key, default, 0))
        try:
            value, expires_at, _ = lookup(tier_key)
        except KeyError:
            pass
        else:
            if expires_at > self._clock():
                self._l1_stats.hits += 1  # type: ignore[union-attr]
                return default if value is MISSING else value
        self._l1_stats.misses += 1  # type: ignore[union-attr]
        return await arun(self._get_plan(key, default, 1))

    async def _get_copy(self, key: Key, default: Any = None) -> Any:
        value = await AsyncNamespace.get(self, key, MISSING)
        return default if value is MISSING else copy_module.deepcopy(value)


class AsyncCache(Cache):
    """:class:`Cache` with coroutine namespaces: ``await acache.namespace("users").get("42")``.

    Same arguments as ``Cache``. ``namespace()`` and ``stats()`` are plain
    methods; ``flush()`` and ``close()`` are coroutines, and ``async with``
    closes the cache. Background write-back flushing and the invalidation
    bus run in threads, on the tiers' sync clients.
    """

    namespace_class: ClassVar[type[Namespace]] = AsyncNamespace

    async def flush(self) -> None:  # type: ignore[override]
        """Drain every namespace's write-back buffer."""
        for ns in list(self._namespaces.values()):
            await ns.flush()

    async def close(self) -> None:  # type: ignore[override]
        """Flush, stop background work and close every tier and store; idempotent."""
        namespaces = self._begin_close()
        if namespaces is None:
            return
        errors: list[BaseException] = []
        for ns in namespaces:
            try:
                await ns.close()
            except Exception as exc:  # close the rest, then report the first failure
                errors.append(exc)
        for tier in self.tiers:
            aclose = getattr(tier, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as exc:
                    errors.append(exc)
        self._finish_close(errors)

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

