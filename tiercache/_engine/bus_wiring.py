"""A cache's invalidation bus: started on first need, its messages dispatched to the engines."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..tiers.base import Shared, Tier
from .engine import Engine
from .state import NamespaceConfig

__all__ = ["BusWiring"]

BLOCK = 0.5
"""Seconds the bus listener blocks on one read of the stream."""


class BusWiring:
    """The bus of one cache (at most one), and where its messages go.

    ``engines()`` lists the namespaces' engines now; ``engine(name)`` finds one.
    """

    def __init__(
        self,
        *,
        use: bool,
        tiers: Sequence[Tier],
        prefix: str,
        max_staleness: float,
        engines: Callable[[], Iterable[Engine]],
        engine: Callable[[str], Engine | None],
    ) -> None:
        self.use = use
        self.tiers = tiers
        self.prefix = prefix
        self.max_staleness = max_staleness
        self.engines = engines
        self.engine = engine
        self.bus: Any = None

    def bus_for(self, config: NamespaceConfig) -> Any:
        """The bus, started on first need: Purge/Versioned, an L1, a shared (Redis) tier."""
        if not (self.use and config.invalidation.broadcast):
            return None
        if self.bus is not None:
            return self.bus
        shared = next((t for t in self.tiers if isinstance(t, Shared)), None)
        if shared is None:
            return None  # no channel to other processes
        # Even a cache with no L1 of its own must announce its changes to the
        # other processes' L1; it only has nothing to listen for.
        listen = bool(self.tiers) and not isinstance(self.tiers[0], Shared)
        from ..redis.bus import Bus

        self.bus = Bus(
            shared.client,
            shared.listener(BLOCK + 1.0, f"tiercache-bus:{self.prefix}"),
            f"{self.prefix}:#bus",
            on_message=self.on_message,
            on_gap=self.on_gap,
            on_tick=self.on_tick,
            available=lambda: bool(shared.available),
            max_silence=self.max_staleness,
            block=BLOCK,
        )
        if listen:
            self.bus.start()
        return self.bus

    def on_message(self, namespace: str, kind: str, keys: list[str]) -> None:
        """Another process changed ``keys`` of ``namespace``."""
        engine = self.engine(namespace)
        if engine is not None:
            engine.on_invalidation(kind, keys)

    def on_tick(self) -> None:
        """The bus is alive: replay purges remembered while Redis was away."""
        for engine in list(self.engines()):
            if engine.has_purges():
                engine.replay_purges_now()

    def on_gap(self, why: str) -> None:
        """Messages may have been lost: every engine drops what it may hold stale."""
        for engine in list(self.engines()):
            engine.on_gap()

    def stop(self) -> None:
        """Stop the listener, if one was started."""
        if self.bus is not None:
            self.bus.stop()
