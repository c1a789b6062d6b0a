"""A namespace's state: configuration, prefixes and versions, tier views, TTL ceilings, stats."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .._log import RateLimitedWarning
from .._types import Clock, Key, seconds
from ..errors import ConfigurationError, TierError
from ..invalidation import Invalidation, Purge
from ..keys import inline_prefixes, tier_key_encoder
from ..policies import PolicyRun, WritePolicy, WriteThrough
from ..scheduler import Scheduler
from ..serialization import MsgpackSerializer, Serializer, Signing, signing_context
from ..stats import LayerStats
from ..stores.base import Store
from ..tiers.base import Tier, Versioning
from .flight import Fence, Flights
from .views import Fill, StoreOps, TierView

__all__ = ["NamespaceConfig", "State"]

log = logging.getLogger("tiercache")


@dataclass(frozen=True)
class NamespaceConfig:
    """How one namespace behaves; see :meth:`tiercache.Cache.namespace`."""

    write: WritePolicy = field(default_factory=WriteThrough)
    invalidation: Invalidation = field(default_factory=Purge)
    ttl: float | None = None
    negative_ttl: float | None = None
    max_value_bytes: int | None = None
    serializer: Serializer = field(default_factory=MsgpackSerializer)
    copy: bool = False
    ttl_jitter: float = 0.0

    @classmethod
    def build(
        cls,
        *,
        write: WritePolicy | None = None,
        invalidation: Invalidation | None = None,
        ttl: float | timedelta | None = None,
        negative_ttl: float | timedelta | None = None,
        max_value_bytes: int | None = None,
        serializer: Serializer | None = None,
        copy: bool = False,
        ttl_jitter: float | None = None,
    ) -> NamespaceConfig:
        """Validate user options into a config.

        Raises:
            ConfigurationError: an option has the wrong type or an impossible value.
        """
        if write is not None and not isinstance(write, WritePolicy):
            raise ConfigurationError(f"write= must be a write policy, got {write!r}")
        if invalidation is not None and not isinstance(invalidation, Invalidation):
            raise ConfigurationError(f"invalidation= must be a strategy, got {invalidation!r}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise ConfigurationError(f"serializer= must be a Serializer, got {serializer!r}")
        if max_value_bytes is not None and (
            not isinstance(max_value_bytes, int)
            or isinstance(max_value_bytes, bool)
            or max_value_bytes < 1
        ):
            raise ConfigurationError(
                f"max_value_bytes must be a positive int, got {max_value_bytes!r}"
            )
        return cls(
            write=write if write is not None else WriteThrough(),
            invalidation=invalidation if invalidation is not None else Purge(),
            ttl=seconds(ttl),
            negative_ttl=seconds(negative_ttl, "negative_ttl"),
            max_value_bytes=max_value_bytes,
            serializer=serializer if serializer is not None else MsgpackSerializer(),
            copy=bool(copy),
            ttl_jitter=_fraction(ttl_jitter),
        )


    @classmethod
    def changes(
        cls, write: WritePolicy | None, invalidation: Invalidation | None
    ) -> dict[str, Any]:
        """The checked changes ``configure`` applies (raises before any I/O).

        Raises:
            ConfigurationError: an argument is not a policy or strategy.
        """
        checked = cls.build(write=write, invalidation=invalidation)
        out: dict[str, Any] = {}
        if write is not None:
            out["write"] = checked.write
        if invalidation is not None:
            out["invalidation"] = checked.invalidation
        return out


def _fraction(value: float | None) -> float:
    if value is None:
        return 0.0
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ConfigurationError(f"ttl_jitter must be a fraction in [0, 1), got {value!r}")
    return float(value)


def min_ttl(*ttls: float | None) -> float | None:
    """The smallest of the TTLs given (``None``: no ceiling)."""
    present = [t for t in ttls if t is not None]
    return min(present) if present else None


class State:
    """What the parts of one namespace share; every other part holds a reference to it.

    Plain data and the computations on it (keys, serialization, TTLs); no
    I/O. ``apply`` recomputes what a configuration decides (the tiers'
    faces and views, the policy, the prefix), each by one assignment,
    so a concurrent reader sees the old value or the new one.
    """

    def __init__(
        self,
        name: str,
        *,
        prefix: str,
        tiers: Sequence[Tier],
        store: Store | None,
        clock: Clock,
        scheduler: Scheduler,
        bus: Any,
        max_staleness: float,
        on_tier_error: str,
        wall_clock: Clock,
        log_interval: float,
    ) -> None:
        self.name = name
        self.base_tiers = list(tiers)
        self.tiers = self.base_tiers
        # Capabilities are checked here, once: the paths read the views.
        self.base_views = [TierView(t) for t in self.base_tiers]
        self.views = self.base_views
        self.store = store
        self.store_ops = StoreOps(store) if store is not None else None
        self.clock = clock
        self.scheduler = scheduler
        self.bus = bus
        self.prefix = prefix
        self.base_prefix = f"{prefix}:{name}:"
        self.set_prefix(self.base_prefix)
        # Bookkeeping keys live under "#", which no namespace name can hold,
        # so invalidate_all's SCAN of "prefix:name:*" never touches them.
        self.journal_key = f"{prefix}:#wb:{name}"
        self.version_key = f"{prefix}:#ver:{name}"
        self.version = 0
        self.tier_stats = [LayerStats() for _ in self.tiers]
        self.store_stats = LayerStats()
        self.quiet = RateLimitedWarning(log, interval=log_interval)
        self.flights = Flights()
        self.fence = Fence()
        self.max_staleness = max_staleness
        self.on_tier_error = on_tier_error
        self.wall_clock = wall_clock
        self.l1_lookup = self.base_views[0].lookup if self.base_views else None
        self.l1_stats = self.tier_stats[0] if self.tier_stats else LayerStats()
        # The facades' inline L1 hit: None without an L1, or under copy= (reads copy).
        self.hit_lookup: Callable[[str], tuple[Any, float, int]] | None = None
        # Set by apply():
        self.config = NamespaceConfig()
        self.policy: WritePolicy = self.config.write
        # The policy at work for this namespace: started by the engine, which owns the Target.
        self.run: PolicyRun
        self.serializer: Serializer = self.config.serializer
        self.bound = False
        self.loads_many: Callable[[list[bytes]], list[Any]] | None = None
        self.version_view: TierView | None = None
        self.lease_index: int | None = None
        self.local_tiers: list[int] = []  # in-process tiers: filled after a write, fenced
        self.tier_ttls: list[float | None] = []
        self.l1_fill: Fill | None = None
        self.fills: list[Fill] = []

    def apply(self, config: NamespaceConfig) -> None:
        """Take ``config``: tiers' faces, views, the policy, serializer, prefix."""
        self.config = config
        self.hit_lookup = None if config.copy else self.l1_lookup
        # Under Versioned a shared tier is used through its per-key-version
        # face (RedisTier.keyed_versions): every copy carries its key's version.
        versioned = config.invalidation.versioned
        self.tiers = [
            t.keyed_versions() if versioned and isinstance(t, Versioning) else t
            for t in self.base_tiers
        ]
        self.views = [
            view if tier is view.tier else TierView(tier)
            for tier, view in zip(self.tiers, self.base_views, strict=True)
        ]
        self.version_view = next((v for v in self.views if v.versions is not None), None)
        self.lease_index = next((t for t, v in enumerate(self.views) if v.lease is not None), None)
        self.local_tiers = [t for t, v in enumerate(self.views) if not v.shared]
        self.policy = config.write  # frozen: its per-namespace state is in ``run``
        self.serializer = config.serializer
        # Serializers that sign (pickle) bind each value to its namespace and key.
        self.bound = isinstance(config.serializer, Signing)
        loads_many = getattr(config.serializer, "loads_many", None)  # optional, read once
        self.loads_many = None if self.bound else loads_many
        if versioned:
            self.set_version(self.read_version())
        else:
            self.set_prefix(self.base_prefix)
        strategy_ttl = config.invalidation.ttl
        self.tier_ttls = [min_ttl(t.ttl, config.ttl, strategy_ttl) for t in self.tiers]
        # The direct read's L1 backfill, and the in-process set's fills.
        self.l1_fill = self.views[0].set_one if self.l1_lookup is not None else None
        self.fills = [view.set_one for view in self.views]

    # -- keys and versions --------------------------------------------------

    def set_prefix(self, key_prefix: str) -> None:
        """Serve keys under ``key_prefix`` (a new namespace version)."""
        # One assignment each: a concurrent reader sees the old or the new prefix.
        self.key_prefix = key_prefix
        self.str_prefix, self.int_prefix = inline_prefixes(key_prefix)
        self.encode_key = tier_key_encoder(key_prefix)

    def read_version(self) -> int:
        """The namespace version as the version tier has it (ours if it cannot say)."""
        view = self.version_view
        if view is None or view.versions is None:
            return self.version or 1
        try:
            return int(view.versions.read_now(self.version_key))
        except TierError as exc:
            self.warn("version", f"{self.name}: cannot read the namespace version: {exc}")
            return self.version or 1

    def set_version(self, version: int) -> None:
        """Move to ``version`` if it is newer; versions never go backwards."""
        if version <= self.version:
            return
        self.version = version
        self.set_prefix(f"{self.base_prefix}v{version}:")

    def tier_key(self, key: Key) -> str:
        """The full key of ``key`` in every tier (``prefix:namespace:canonical``).

        Raises:
            InvalidKeyError: ``key`` is not a supported key type.
        """
        return self.encode_key(key)

    # -- values -------------------------------------------------------------

    def context(self, tier_key: str) -> bytes:
        """What a signed value under ``tier_key`` is bound to: prefix, namespace, canonical key.

        The key is taken whatever version it is under, so a version bump does
        not orphan signatures; the prefix keeps tenants that share an HMAC key
        from accepting each other's values.
        """
        rest = tier_key[len(self.base_prefix):]
        if self.config.invalidation.versioned and rest.startswith("v"):
            rest = rest.split(":", 1)[1]
        return signing_context(self.prefix, self.name, rest)

    def encode(self, value: Any, tier_key: str) -> bytes:
        """Serialize ``value`` as stored under ``tier_key``."""
        if self.bound:
            return self.serializer.dumps_for(value, self.context(tier_key))  # type: ignore[attr-defined,no-any-return]
        return self.serializer.dumps(value)

    def decode(self, data: bytes, tier_key: str) -> Any:
        """Deserialize bytes stored under ``tier_key``; SerializationError if they are not ours."""
        if self.bound:
            return self.serializer.loads_for(data, self.context(tier_key))  # type: ignore[attr-defined]
        return self.serializer.loads(data)

    def decode_field(self, data: bytes, field: str) -> Any:
        """Deserialize a write-back journal payload of the canonical key ``field``."""
        if self.bound:
            context = signing_context(self.prefix, self.name, field)
            return self.serializer.loads_for(data, context)  # type: ignore[attr-defined]
        return self.serializer.loads(data)

    def fill_ttl(self, t: int, ttl: float | None = None) -> float | None:
        """The TTL of a copy written into tier ``t``; short while the bus is deaf.

        With ``ttl_jitter`` each copy loses a random part of its TTL, so copies
        written together do not all expire (and miss) together.
        """
        ceiling = self.tier_ttls[t]
        if ttl is None or (ceiling is not None and ceiling < ttl):
            ttl = ceiling
        jitter = self.config.ttl_jitter
        if jitter and ttl is not None:
            ttl *= 1.0 - random.random() * jitter
        bus = self.bus
        if bus is not None and not self.views[t].shared and not bus.healthy:
            # Invalidations may not reach us: keep L1 copies no older than this.
            ttl = min_ttl(ttl, self.max_staleness)
        return ttl

    def warn(self, topic: str, message: str) -> None:
        """A rate-limited warning: an outage must not write one line per call."""
        self.quiet.warn(topic, message)
