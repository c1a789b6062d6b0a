"""The typed operations and their two drivers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from tiercache._engine.ops import (
    AsyncCall,
    Blocking,
    Call,
    Plan,
    Sleep,
    WaitFuture,
    arun,
    perform,
    run,
)


def _plan(log: list[str]) -> Plan[tuple[int, int, int]]:
    a = yield from perform(Call(lambda x: x + 1, (1,)))
    b = yield from perform(Blocking(lambda: threading.current_thread().name))
    log.append(b)
    yield Sleep(0)
    c: int = yield AsyncCall(lambda: 10, _async_twenty)
    return a, len(log), c


async def _async_twenty() -> int:
    return 20


def test_sync_driver_runs_each_blocking_form() -> None:
    """run() performs every op's sync form on the calling thread."""
    log: list[str] = []
    assert run(_plan(log)) == (2, 1, 10)
    assert log == [threading.current_thread().name]


def test_async_driver_awaits_async_forms_and_offloads_blocking_calls() -> None:
    """arun() awaits AsyncCall's coroutine and runs Blocking off the event loop's thread."""
    log: list[str] = []
    assert asyncio.run(arun(_plan(log))) == (2, 1, 20)
    assert log != [threading.current_thread().name]


@pytest.mark.parametrize("drive", [run, lambda plan: asyncio.run(arun(plan))])
def test_an_op_error_is_thrown_into_the_plan(drive: Any) -> None:
    """An exception raised by an op reaches the plan, which may handle it."""

    def fail() -> None:
        raise ValueError("boom")

    def plan() -> Plan[str]:
        try:
            yield Blocking(fail)
        except ValueError as exc:
            return f"handled {exc}"
        return "not raised"

    assert drive(plan()) == "handled boom"


@pytest.mark.parametrize("drive", [run, lambda plan: asyncio.run(arun(plan))])
def test_wait_future_returns_the_result_or_times_out(drive: Any) -> None:
    """WaitFuture returns another caller's result, and raises TimeoutError when none comes."""
    done: Future[int] = Future()
    done.set_result(7)
    never: Future[int] = Future()

    def plan() -> Plan[tuple[int, str]]:
        value = yield from perform(WaitFuture(done, 1.0))
        try:
            yield WaitFuture(never, 0.01)
        except TimeoutError:
            return value, "timed out"
        return value, "answered"

    assert drive(plan()) == (7, "timed out")
