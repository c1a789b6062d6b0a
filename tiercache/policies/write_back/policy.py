"""WriteBack's configuration: frozen, shared by every namespace that uses it."""

from __future__ import annotations

from dataclasses import dataclass

from ..._types import seconds
from ...errors import ConfigurationError
from ...scheduler import Scheduler
from ..base import Target
from .journal import WriteBackJournal

__all__ = ["WriteBack"]


@dataclass(frozen=True, eq=False)
class WriteBack:
    """Fast writes: the tiers now, the store in the background, in batches.

    Args:
        flush_interval: seconds between background flushes.
        max_batch: most entries written to the store in one ``save_many``.
        max_attempts: failed store writes of one entry before it is
            dead-lettered (see ``Namespace.dead_letters``).
        retry_backoff: seconds before retrying a failed entry, doubled on
            each further failure.
        lock_lease: seconds a flusher's lease in Redis lasts; a flush must
            finish well within it.
        max_pending: most keys waiting for the store. A write that would
            exceed it first flushes; if the store cannot take them, it is
            refused with :class:`CapacityError` (nothing written).

    Raises:
        ConfigurationError: a non-positive interval, batch or attempt count.
    """

    flush_interval: float = 1.0
    max_batch: int = 1000
    max_attempts: int = 5
    retry_backoff: float = 0.5
    lock_lease: float = 30.0
    max_pending: int = 100_000

    def __post_init__(self) -> None:
        # Frozen: the normalized durations are set once, here.
        for name in ("flush_interval", "retry_backoff", "lock_lease"):
            object.__setattr__(self, name, seconds(getattr(self, name), name))
        for name in ("max_batch", "max_attempts", "max_pending"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")

    def __eq__(self, other: object) -> bool:
        # Any WriteBack with the same settings is the same configuration.
        return isinstance(other, WriteBack) and self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash(self._settings())

    def _settings(self) -> tuple[object, ...]:
        return (self.flush_interval, self.max_batch, self.max_attempts,
                self.retry_backoff, self.lock_lease, self.max_pending)

    def start(self, target: Target, scheduler: Scheduler) -> WriteBackJournal:
        """A journal for ``target``, flushed every ``flush_interval`` by ``scheduler``."""
        journal = WriteBackJournal(self, target)
        journal.job = scheduler.every(
            float(self.flush_interval),
            lambda: journal.background_flush(target),
            name=f"tiercache-writeback-{target.name}",
        )
        return journal
