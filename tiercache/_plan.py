"""Plans: the read and write paths written once, run by a sync or an async driver.

A plan is a generator that yields operations, ``(target, method, args)``,
and receives each one's result (or its exception, thrown in). The policy
logic therefore never performs I/O itself: :func:`run` performs the calls
for ``Cache``, and an async driver awaits the targets' ``a``-prefixed twins
for ``AsyncCache``, both over the same generators.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Op", "Plan", "arun", "run"]

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


async def arun(plan: Plan[T]) -> T:
    """Drive ``plan`` on the event loop.

    For each operation the driver awaits the target's ``a``-prefixed twin
    (``aget_many`` for ``get_many``) when it has one, awaits a future another
    caller will complete (single-flight), calls non-blocking in-memory
    targets directly, and runs any other blocking call (a sync store) in a
    worker thread so the loop never stalls on it.
    """
    try:
        op = next(plan)
        while True:
            target, method, args = op
            try:
                twin = getattr(target, "a" + method, None)
                if twin is not None:
                    result = await twin(*args)
                elif isinstance(target, Future):
                    result = await asyncio.wait_for(asyncio.wrap_future(target), args[0])
                elif getattr(target, "nonblocking", False):
                    result = getattr(target, method)(*args)
                else:
                    result = await asyncio.to_thread(getattr(target, method), *args)
            except Exception as exc:  # handed to the plan, which decides
                op = plan.throw(exc)
            else:
                op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
