"""Typed I/O operations, and the one sync and one async driver that run plans of them.

A plan is a generator that yields operations and receives each one's
result (or its exception, thrown in), so the policy and read/write logic
never performs I/O itself and is written once for ``Cache`` and
``AsyncCache``. Every operation is a small frozen object that carries both
of its forms: :meth:`Op.run` for the sync driver, :meth:`Op.arun` for the
async one. The drivers dispatch on the operation, never on a method name.

Inside a plan, ``result = yield from perform(op)`` gives ``result`` the
operation's type; a bare ``yield op`` gives ``Any``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import ConfigurationError

__all__ = [
    "AsyncCall",
    "Blocking",
    "Call",
    "MaybeAsync",
    "Op",
    "Plan",
    "Sleep",
    "WaitFuture",
    "arun",
    "perform",
    "run",
]

T = TypeVar("T")


class Op(Generic[T]):
    """One I/O step of a plan, with its synchronous and asynchronous form."""

    __slots__ = ()

    def run(self) -> T:
        """Perform the step on the calling thread."""
        raise NotImplementedError

    async def arun(self) -> T:
        """Perform the step on the event loop, never blocking it."""
        raise NotImplementedError


Plan = Generator[Op[Any], Any, T]
"""A read or write path: yields operations, returns its result."""


@dataclass(frozen=True, slots=True)
class Call(Op[T]):
    """A call that never blocks on I/O (an in-memory tier, the bus's local queue).

    Both drivers call it in place.
    """

    fn: Callable[..., T]
    args: tuple[Any, ...] = ()

    def run(self) -> T:
        return self.fn(*self.args)

    async def arun(self) -> T:
        return self.fn(*self.args)


@dataclass(frozen=True, slots=True)
class AsyncCall(Op[T]):
    """A call with a blocking form and a coroutine form (a Redis tier's method pair)."""

    fn: Callable[..., T]
    afn: Callable[..., Awaitable[T]]
    args: tuple[Any, ...] = ()

    def run(self) -> T:
        return self.fn(*self.args)

    async def arun(self) -> T:
        return await self.afn(*self.args)


@dataclass(frozen=True, slots=True)
class Blocking(Op[T]):
    """A blocking call with no coroutine form (a sync store, a user's loader).

    The async driver runs it in a worker thread so the event loop never stalls.
    """

    fn: Callable[..., T]
    args: tuple[Any, ...] = ()

    def run(self) -> T:
        return self.fn(*self.args)

    async def arun(self) -> T:
        return await asyncio.to_thread(self.fn, *self.args)


@dataclass(frozen=True, slots=True)
class MaybeAsync(Op[T]):
    """A caller's callable that may be a coroutine function (a loader, a repository method).

    The async driver calls it on the event loop and awaits what it returns
    if that is awaitable; the sync driver refuses an awaitable with
    ``ConfigurationError(refusal)``, closing the coroutine unawaited.
    """

    fn: Callable[..., T | Awaitable[T]]
    args: tuple[Any, ...] = ()
    refusal: str = "a coroutine function needs AsyncCache"

    def run(self) -> T:
        result = self.fn(*self.args)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited on purpose: no warning for it
            raise ConfigurationError(self.refusal)
        return result

    async def arun(self) -> T:
        result = self.fn(*self.args)
        if inspect.isawaitable(result):
            return await result
        return result


@dataclass(frozen=True, slots=True)
class Sleep(Op[None]):
    """A pause (between lease polls, before a retry)."""

    seconds: float

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self) -> None:
        await asyncio.sleep(self.seconds)


@dataclass(frozen=True, slots=True)
class WaitFuture(Op[T]):
    """Wait for a result another caller will set (a single-flight load).

    Raises ``TimeoutError`` after ``timeout`` seconds, in both forms.
    """

    future: Future[T]
    timeout: float

    def run(self) -> T:
        return self.future.result(self.timeout)

    async def arun(self) -> T:
        return await asyncio.wait_for(asyncio.wrap_future(self.future), self.timeout)


def perform(op: Op[T]) -> Generator[Op[T], Any, T]:
    """``result = yield from perform(op)``: yield ``op`` with its result typed."""
    result: T = yield op
    return result


def run(plan: Plan[T]) -> T:
    """Drive ``plan`` on the calling thread: perform each operation, send back its result."""
    try:
        op = next(plan)
        while True:
            try:
                result = op.run()
            except Exception as exc:  # noqa: BLE001 - handed to the plan, which decides
                op = plan.throw(exc)
            else:
                op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun(plan: Plan[T]) -> T:
    """Drive ``plan`` on the event loop: await each operation's async form."""
    try:
        op = next(plan)
        while True:
            try:
                result = await op.arun()
            except Exception as exc:  # noqa: BLE001 - handed to the plan, which decides
                op = plan.throw(exc)
            else:
                op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
