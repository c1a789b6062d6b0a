"""AsyncCache and AsyncNamespace: siblings of Cache and Namespace, running the same plans
awaited."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from ._engine.engine import Loader
from ._engine.ops import arun
from ._types import MISSING, Key
from .cache import CacheBase
from .invalidation import Invalidation
from .namespace import NamespaceBase, NamespaceConfig
from .policies import WritePolicy
from .tiers.base import AsyncClosing

__all__ = ["AsyncCache", "AsyncNamespace"]


class AsyncNamespace(NamespaceBase):
    """A namespace whose I/O methods are coroutines: ``await ns.get(key)``.

    Every method runs the same plan as :class:`~tiercache.Namespace`; only
    the driver differs: Redis calls go through ``redis.asyncio``, waits for
    another caller's load are awaited, and blocking stores run in worker
    threads. ``stats()`` and ``tier_key()`` stay plain methods. Errors are
    those of the matching :class:`~tiercache.Namespace` method.
    """

    async def get(self, key: Key, default: Any = None) -> Any:
        """Coroutine form of :meth:`Namespace.get <tiercache.Namespace.get>`."""
        state = self.engine.state
        lookup = state.hit_lookup  # None without an L1, and under copy=
        if lookup is None:
            return await arun(self.engine.get_copy_plan(key, default))
        # The encoder's two inline forms (see keys.inline_prefixes): no call on a hit.
        kind = type(key)
        if kind is str and key.isascii():  # type: ignore[union-attr]
            tier_key = state.str_prefix + key  # type: ignore[operator]
        elif kind is int:
            tier_key = state.int_prefix + str(key)
        else:
            tier_key = state.encode_key(key)
        try:
            value, expires_at, _ = lookup(tier_key)
        except KeyError:
            pass
        else:
            if expires_at > state.clock():
                state.l1_stats.hits += 1
                return default if value is MISSING else value
        state.l1_stats.misses += 1
        return await arun(self.engine.get_plan(key, default, 1))

    async def get_many(
        self, keys: Iterable[Key], *, loader: Loader | None = None
    ) -> dict[Key, Any]:
        """Coroutine form of ``Namespace.get_many``; ``loader`` may be a coroutine function."""
        return await arun(self.engine.get_many_plan(keys, loader))

    async def set(self, key: Key, value: Any) -> None:
        """Coroutine form of ``Namespace.set``."""
        self.engine.state.encode_key(key)  # refuse a bad key before it meets a dict (True == 1)
        await arun(self.engine.set_plan({key: value}))

    async def set_many(self, items: Mapping[Key, Any]) -> None:
        """Coroutine form of ``Namespace.set_many``."""
        await arun(self.engine.set_plan(items))

    async def delete(self, key: Key) -> None:
        """Coroutine form of ``Namespace.delete``."""
        await arun(self.engine.delete_plan([key]))

    async def delete_many(self, keys: Iterable[Key]) -> None:
        """Coroutine form of ``Namespace.delete_many``."""
        await arun(self.engine.delete_plan(keys))

    async def invalidate(self, key: Key) -> None:
        """Coroutine form of ``Namespace.invalidate``."""
        await arun(self.engine.invalidate_plan([key]))

    async def invalidate_many(self, keys: Iterable[Key]) -> None:
        """Coroutine form of ``Namespace.invalidate_many``."""
        await arun(self.engine.invalidate_plan(keys))

    async def invalidate_all(self) -> None:
        """Coroutine form of ``Namespace.invalidate_all``."""
        await arun(self.engine.invalidate_all_plan())

    async def flush(self, timeout: float = 5.0) -> None:
        """Coroutine form of ``Namespace.flush``."""
        await arun(self.engine.flush_plan(timeout))

    async def dead_letters(self) -> dict[Key, Any]:
        """Coroutine form of ``Namespace.dead_letters``."""
        return await arun(self.engine.dead_letters_plan())

    async def replay_dead_letters(self) -> int:
        """Coroutine form of ``Namespace.replay_dead_letters``."""
        return await arun(self.engine.replay_dead_letters_plan())

    async def configure(
        self,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
    ) -> None:
        """Coroutine form of ``Namespace.configure``."""
        await arun(self.engine.configure_plan(NamespaceConfig.changes(write, invalidation)))

    async def close(self) -> None:
        """Coroutine form of ``Namespace.close``."""
        await arun(self.engine.close_plan())


class AsyncCache(CacheBase[AsyncNamespace]):
    """``Cache`` with coroutine namespaces: ``await acache.namespace("users").get("42")``.

    Same arguments as ``Cache``. ``namespace()`` and ``stats()`` are plain
    methods; ``flush()`` and ``close()`` are coroutines, and ``async with``
    closes the cache. Background write-back flushing and the invalidation
    bus run in threads, on the tiers' sync clients.
    """

    namespace_class = AsyncNamespace

    async def flush(self) -> None:
        """Drain every namespace's write-back buffer."""
        for ns in list(self._namespaces.values()):
            await ns.flush()

    async def close(self) -> None:
        """Flush, stop background work and close every tier and store; idempotent."""
        namespaces = self._begin_close()
        if namespaces is None:
            return
        errors: list[BaseException] = []
        for ns in namespaces:
            try:
                await ns.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then report the first failure
                errors.append(exc)
        for tier in self.tiers:
            if isinstance(tier, AsyncClosing):
                try:
                    await tier.aclose()
                except Exception as exc:  # noqa: BLE001 - close the rest, raise the first after
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
