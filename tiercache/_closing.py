"""Closing a cache: its engines and parts each once, errors gathered, and at interpreter exit."""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ._engine.engine import Engine
from ._engine.ops import run

__all__ = ["close_engines", "close_parts", "register_exit_close", "unregister_exit_close"]

log = logging.getLogger("tiercache")


def register_exit_close(close: Callable[[], None]) -> Callable[[], None]:
    """Call the bound method ``close`` at interpreter exit, if its object still lives then.

    Interpreter exit drains write-back buffers. The hook holds a weak
    reference, so registering never keeps a cache alive. Returns the hook,
    for :func:`unregister_exit_close`.
    """
    ref = weakref.WeakMethod(close)

    def hook() -> None:
        _close_at_exit(ref)

    atexit.register(hook)
    return hook


def unregister_exit_close(hook: Callable[[], None]) -> None:
    """Forget a hook of :func:`register_exit_close` (the cache was closed by its owner)."""
    atexit.unregister(hook)


def close_engines(engines: Iterable[Engine]) -> list[BaseException]:
    """Run each engine's close plan on the calling thread; returns the failures, in order."""
    errors: list[BaseException] = []
    for engine in engines:
        try:
            # The sync driver, whatever the namespace's kind: this also
            # closes an AsyncCache at interpreter exit, when no loop runs.
            run(engine.close_plan())
        except Exception as exc:  # noqa: BLE001 - close the rest, then report the first failure
            errors.append(exc)
    return errors


def close_parts(
    stop_bus: Callable[[], None], parts: Iterable[Any], errors: list[BaseException]
) -> None:
    """Stop the bus, close each tier and store once (None skipped), raise the first error.

    Raises:
        BaseException: the first of ``errors``, else the first failure to close a part.
    """
    stop_bus()
    closed: set[int] = set()
    for closable in parts:
        if closable is None or id(closable) in closed:
            continue
        closed.add(id(closable))
        try:
            closable.close()
        except Exception as exc:  # noqa: BLE001 - close the rest, then report the first failure
            errors.append(exc)
    if errors:
        raise errors[0]


def _close_at_exit(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    close = ref()
    if close is not None:
        try:
            # The sync close, for AsyncCache too: no event loop runs at exit,
            # and the plans run as well on the tiers' sync clients.
            close()
        except Exception:  # at exit there is nobody left to raise to
            log.exception("tiercache: closing a cache at interpreter exit failed")
