"""Plans: the read and write paths written once, run by a sync or an async driver.

A plan is a generator that yields operations, ``(target, method, args)``,
and receives each one's result (or its exception, thrown in). The policy
logic therefore never performs I/O itself: :func:`run` performs the calls
for ``Cache``, and an async driver awaits the targets' ``a``-prefixed twins
for ``AsyncCache``, both over the same generators.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

__all__ = ["Op", "Plan", "run"]

T = TypeVar("T")

Op = tuple[Any, str, tuple[Any, ...]]
"""One I/O step: call ``getattr(target, method)(*args)``."""

Plan = Generator[Op, Any, T]


def run(plan: Plan[T]) -> T:
    """Drive ``plan`` synchronously: perform each operation, send back its result."""
    try:
        op = next(plan)
        while True:
            try:
                result = getattr(op[0], op[1])(*op[2])
            except Exception as exc:  # handed to the plan, which decides
                op = plan.throw(exc)
            else:
                op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
