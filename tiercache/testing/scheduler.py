"""ManualScheduler: background jobs that run only when a test says so."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ManualScheduler"]


class _Job:
    def __init__(self, owner: ManualScheduler, fn: Callable[[], object], name: str) -> None:
        self._owner = owner
        self.fn = fn
        self.name = name

    def cancel(self) -> None:
        if self in self._owner.jobs:
            self._owner.jobs.remove(self)


class ManualScheduler:
    """Pass as ``Cache(scheduler=...)``; ``run_pending()`` runs every job once."""

    def __init__(self) -> None:
        self.jobs: list[_Job] = []

    def every(self, interval: float, fn: Callable[[], object], name: str) -> _Job:
        job = _Job(self, fn, name)
        self.jobs.append(job)
        return job

    def run_pending(self) -> None:
        """Run each scheduled job once, in the order they were scheduled."""
        for job in list(self.jobs):
            job.fn()
