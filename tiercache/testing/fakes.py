"""In-memory stand-ins for running a write policy alone: tiers, a journal tier, a store, a
target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._engine.ops import Blocking, Plan, perform
from .._engine.views import TierView
from .._types import Key
from ..errors import StoreError, TierError
from ..keys import tier_key
from ..policies.base import WriteContext
from ..serialization import MsgpackSerializer, Serializer
from ..stores.mapping import MappingStore
from ..tiers.base import Hit, TierEntry, Undecodable

__all__ = ["FakeJournalTier", "FakeStore", "FakeTarget", "FakeTier", "context"]


class FakeTier:
    """A tier in a dict, without expiry: ``data[key] = value``; ``failing`` raises TierError."""

    serialized = False
    nonblocking = True

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.ttl: float | None = None
        self.data: dict[str, Any] = {}
        self.failing = False

    def _check(self) -> None:
        if self.failing:
            raise TierError(f"{self.name} is failing")

    def get_many(self, keys: Sequence[str], now: float) -> list[Hit | Undecodable | None]:
        self._check()
        return [(self.data[k], None) if k in self.data else None for k in keys]

    def set_many(self, entries: Sequence[TierEntry], now: float) -> None:
        self._check()
        for key, value, _ttl, _size in entries:
            self.data[key] = value

    def delete_many(self, keys: Sequence[str]) -> None:
        self._check()
        for key in keys:
            self.data.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        self._check()
        for key in [k for k in self.data if k.startswith(prefix)]:
            del self.data[key]

    def close(self) -> None:
        self.data.clear()


class FakeJournalTier(FakeTier):
    """A shared tier (bytes) with a write-back journal, like a RedisTier, in memory.

    ``full`` makes ``journal_put`` refuse (back-pressure); ``failing``
    makes every call raise ``TierError`` (Redis away).
    """

    serialized = True

    def __init__(self, name: str = "journal") -> None:
        super().__init__(name)
        self.client = object()
        self.journals: dict[str, dict[str, bytes]] = {}
        self.seq = 0
        self.full = False
        self.locks: dict[str, str] = {}
        self.announced: list[tuple[str, bytes, int]] = []

    @property
    def available(self) -> bool:
        return not self.failing

    def ping(self) -> bool:
        return not self.failing

    def listener(self, read_timeout: float, client_name: str | None = None) -> Any:
        raise NotImplementedError("a fake has no bus")

    def journal_put(self, journal: str, seq_key: str, records: Sequence[tuple[str, bytes]],
                    entries: Sequence[TierEntry], limit: int,
                    announce: tuple[str, bytes, int] | None = None) -> bool:
        self._check()
        pending = self.journals.setdefault(journal, {})
        if self.full or len(set(pending) | {f for f, _ in records}) > limit:
            return False
        for field, payload in records:
            self.seq += 1
            pending[field] = b"%d|" % self.seq + payload
        self.set_many([e for e in entries if e[1]], 0.0)
        if announce is not None:
            self.announced.append(announce)
        return True

    def journal_get(self, journal: str, fields: Sequence[str]) -> list[bytes | None]:
        self._check()
        pending = self.journals.get(journal, {})
        return [pending.get(f) for f in fields]

    def journal_read(self, journal: str, count: int) -> dict[str, bytes]:
        self._check()
        return dict(list(self.journals.get(journal, {}).items())[:count])

    def journal_ack(self, journal: str, entries: Mapping[str, bytes],
                    move_to: str | None = None) -> int:
        self._check()
        pending = self.journals.setdefault(journal, {})
        done = 0
        for field, entry in entries.items():
            if pending.get(field) == entry:
                del pending[field]
                done += 1
                if move_to is not None:
                    self.journals.setdefault(move_to, {})[field] = entry
        return done

    def journal_restore(self, journal: str, dead: str, fields: Sequence[str]) -> int:
        self._check()
        pending = self.journals.setdefault(journal, {})
        letters = self.journals.setdefault(dead, {})
        moved = 0
        for field in fields:
            entry = letters.pop(field, None)
            if entry is not None and field not in pending:
                pending[field] = entry
                moved += 1
        return moved

    def try_lock(self, key: str, token: str, lease: float) -> bool:
        self._check()
        return self.locks.setdefault(key, token) == token

    def unlock(self, key: str, token: str) -> None:
        self._check()
        if self.locks.get(key) == token:
            del self.locks[key]


class FakeStore(MappingStore):
    """A MappingStore that logs each batch and can be made to fail (``failing = True``)."""

    def __init__(self, mapping: dict[Key, Any] | None = None) -> None:
        super().__init__(mapping)
        self.saves: list[dict[Key, Any]] = []
        self.deletes: list[list[Key]] = []
        self.failing = False

    def save_many(self, items: Mapping[Key, Any]) -> None:
        if self.failing:
            raise StoreError("the fake store is failing")
        self.saves.append(dict(items))
        super().save_many(items)

    def delete_many(self, keys: Sequence[Key]) -> None:
        if self.failing:
            raise StoreError("the fake store is failing")
        self.deletes.append(list(keys))
        super().delete_many(keys)


class FakeTarget:
    """A :class:`~tiercache.policies.Target` over fake tiers and a fake store.

    ``events`` records, in order, ``("save", keys)``, ``("erase", keys)``,
    ``("fill", t, keys)`` and ``("drop", t, keys)``: what the policy asked for.
    Tier failures are swallowed (as a namespace degrades); store failures raise.
    No Redis, no namespace, no fakeredis: a policy's plans run with ``run``.
    """

    def __init__(
        self,
        tiers: Sequence[Any] = (),
        store: FakeStore | None = None,
        *,
        serializer: Serializer | None = None,
        name: str = "ns",
        announce: bool = False,
    ) -> None:
        self.name = name
        self.tiers = list(tiers)
        self.views = [TierView(t) for t in self.tiers]
        self.store = store
        self.serializer = serializer if serializer is not None else MsgpackSerializer()
        self.key_prefix = f"app:{name}:"
        self.journal_key = f"app:#wb:{name}"
        self.events: list[tuple[Any, ...]] = []
        self._announce = announce

    def tier_key(self, key: Key) -> str:
        """The tier key of ``key`` under this target's prefix."""
        return tier_key(self.key_prefix, key)

    def entries(self, ctx: WriteContext, t: int) -> list[TierEntry]:
        serialized = self.views[t].serialized
        return [(k, blob if serialized else value, None, len(blob))
                for k, value, blob in zip(ctx.tier_keys, ctx.values, ctx.data, strict=True)]

    def decode_field(self, data: bytes, field: str) -> Any:
        return self.serializer.loads(data)

    def save(self, items: dict[Key, Any]) -> Plan[None]:
        assert self.store is not None
        self.events.append(("save", sorted(map(repr, items))))
        yield Blocking(self.store.save_many, (items,))

    def erase(self, keys: Sequence[Key]) -> Plan[None]:
        assert self.store is not None
        self.events.append(("erase", sorted(map(repr, keys))))
        yield Blocking(self.store.delete_many, (list(keys),))

    def fill(self, ctx: WriteContext, skip: int | None = None) -> Plan[None]:
        for t, view in enumerate(self.views):
            if t == skip or not view.shared:
                continue
            self.events.append(("fill", t, list(ctx.tier_keys)))
            try:
                yield from perform(view.set_many(self.entries(ctx, t), ctx.now))
            except TierError:
                pass

    def drop(self, tier_keys: Sequence[str], local: bool = True) -> Plan[None]:
        for t, view in enumerate(self.views):
            if not local and not view.shared:
                continue
            self.events.append(("drop", t, list(tier_keys)))
            try:
                yield from perform(view.delete_many(list(tier_keys)))
            except TierError:
                pass

    def announcement(self, t: int, tier_keys: Sequence[str]) -> tuple[str, bytes, int] | None:
        if not self._announce or not self.views[t].shared:
            return None
        return ("app:#bus", repr(list(tier_keys)).encode(), 1000)


def context(target: FakeTarget, items: Mapping[Key, Any], now: float = 0.0) -> WriteContext:
    """The write context of ``set_many(items)`` on ``target``: keys, tier keys, values, bytes."""
    keys = list(items)
    return WriteContext(
        keys=keys,
        tier_keys=[target.tier_key(k) for k in keys],
        values=[items[k] for k in keys],
        data=[target.serializer.dumps(items[k]) for k in keys],
        now=now,
    )
