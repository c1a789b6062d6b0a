"""Direct reads: GET and MGET on connections the tier keeps, outside redis-py's machinery."""

from __future__ import annotations

import functools
import os
import weakref
from typing import Any

import redis

__all__ = ["MAX_IDLE", "DirectReads"]

MAX_IDLE = 8
"""Idle connections a tier keeps for direct reads; more concurrent readers get new ones."""

_all: weakref.WeakSet[DirectReads] = weakref.WeakSet()


class DirectReads:
    """Read commands (GET, MGET) on connections of the tier's own; thread-safe.

    An L2 hit is one GET, and its bar (benchmarks/RESULTS.md, l2_hit_*) holds it to
    1.10x a raw redis-py GET. redis-py 8 wraps each command in a pool checkout (a lock, a ``poll()``
    of the socket to make sure it holds no stray data), a retry wrapper, and
    observability hooks; on this project's machines that costs about as much as
    the round trip itself (a GET took 82 us through ``client.get``, 38 us on a
    kept connection). :class:`DirectReads` keeps a few idle connections made
    from the pool's own connection class and arguments (so the same host, auth,
    db, protocol, TLS and timeouts) and sends a read on one of them.

    What the pool checkout did, done here instead:

    - a connection whose command failed in any way is disconnected, never
      reused: a reply that arrives after a timeout can never answer the next
      command;
    - a kept connection the server closed meanwhile (restart, ``CLIENT KILL``,
      idle timeout) shows up as a ConnectionError on first use; the read is
      then sent once more on a new connection (reads are idempotent);
    - after ``fork()`` the child forgets the parent's connections (the sockets
      stay the parent's) and makes its own.

    These reads do not pass through redis-py's OpenTelemetry hooks; the tier's
    own stats count them.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._connect = functools.partial(pool.connection_class, **pool.connection_kwargs)
        # list.pop and list.append are atomic: each connection serves one thread at a time.
        self._idle: list[Any] = []
        self._closed = False
        _all.add(self)

    def __call__(self, *args: Any) -> Any:
        """Send one command, return its reply; redis-py's exceptions as ``client.<command>``
        raises them."""
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._connect()
        else:
            try:
                reply = _ask(conn, args)
            except redis.ConnectionError:
                # Perhaps closed while idle (a restart, CLIENT KILL): once more, on a new one.
                conn = self._connect()
            else:
                self._keep(conn)
                return reply
        reply = _ask(conn, args)
        self._keep(conn)
        return reply

    def close(self) -> None:
        """Disconnect the idle connections, and each one in use when its read ends.

        A read after ``close()`` still answers, on a connection made for it
        and disconnected after it.
        """
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()

    def _keep(self, conn: Any) -> None:
        idle = self._idle
        if self._closed or len(idle) >= MAX_IDLE:
            conn.disconnect()
            return
        idle.append(conn)
        if self._closed:  # close() ran meanwhile, perhaps after emptying this list
            try:
                idle.remove(conn)
            except ValueError:
                return  # close() has it (disconnecting twice is harmless)
            conn.disconnect()

    def _forget(self) -> None:
        self._idle = []


def _ask(conn: Any, args: tuple[Any, ...]) -> Any:
    """One command on ``conn``; any failure disconnects it (its stream is no longer known)."""
    try:
        conn.send_packed_command(conn.pack_command(*args), check_health=False)
        return conn.read_response()
    except BaseException:
        conn.disconnect()
        raise


def _after_fork_in_child() -> None:
    for reads in list(_all):
        reads._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
