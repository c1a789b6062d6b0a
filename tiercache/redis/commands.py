"""Redis operations for the plan drivers: a command, a pipeline of commands, a script call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._engine.ops import Op
from .connection import Connection
from .scripts import LuaScript

__all__ = [
    "Command",
    "Get",
    "HMGet",
    "HScan",
    "MGet",
    "Pipeline",
    "RunScript",
    "Scan",
    "Send",
    "SetNX",
    "Unlink",
]

# redis-py's sync client, its asyncio client and their pipelines share the
# command methods' names and arguments: a sync client returns the reply, an
# async one an awaitable, a pipeline queues. So each command is written once,
# as ``send(client)``, and the operations below choose the client.
#
# Treat these objects as frozen, but they are not declared so: a frozen
# dataclass's __init__ sets each field through object.__setattr__, about four
# times the cost of a slots one (0.8 us more per write on the project's
# machines), and a write-back set is held to one EVALSHA round trip.


class Command:
    """One Redis command, sent on whichever client (or pipeline) it is given."""

    __slots__ = ()

    def send(self, client: Any) -> Any:
        """Issue the command on ``client``: its reply, an awaitable of it, or a queued slot."""
        raise NotImplementedError


@dataclass(slots=True)
class Get(Command):
    """GET: the copy at ``key``, or None."""

    key: str

    def send(self, client: Any) -> Any:
        return client.get(self.key)


@dataclass(slots=True)
class MGet(Command):
    """MGET: the value at each of ``keys``, None where absent."""

    keys: Sequence[str]

    def send(self, client: Any) -> Any:
        return client.mget(self.keys)


@dataclass(slots=True)
class Unlink(Command):
    """UNLINK: remove ``keys``, freeing their memory in the background."""

    keys: Sequence[str]

    def send(self, client: Any) -> Any:
        return client.unlink(*self.keys)


@dataclass(slots=True)
class Scan(Command):
    """SCAN one step: ``(next cursor, keys matching)``."""

    cursor: int
    match: str
    count: int

    def send(self, client: Any) -> Any:
        return client.scan(self.cursor, match=self.match, count=self.count)


@dataclass(slots=True)
class HMGet(Command):
    """HMGET: the hash's value for each of ``fields``, None where absent."""

    name: str
    fields: Sequence[str]

    def send(self, client: Any) -> Any:
        return client.hmget(self.name, list(self.fields))


@dataclass(slots=True)
class HScan(Command):
    """HSCAN one step: ``(next cursor, {field: value})``."""

    name: str
    cursor: int
    count: int

    def send(self, client: Any) -> Any:
        return client.hscan(self.name, self.cursor, count=self.count)


@dataclass(slots=True)
class SetNX(Command):
    """SET NX PX: take ``key`` for ``px`` milliseconds unless it exists; truthy if taken."""

    key: str
    value: str
    px: int

    def send(self, client: Any) -> Any:
        return client.set(self.key, self.value, nx=True, px=self.px)


@dataclass(slots=True)
class Send(Op[Any]):
    """One command on the connection's sync client, or its event loop's async one."""

    conn: Connection
    command: Command

    def run(self) -> Any:
        return self.command.send(self.conn.client)

    async def arun(self) -> Any:
        return await self.command.send(self.conn.aclient)


@dataclass(slots=True)
class Pipeline(Op[list[Any]]):
    """Commands sent together, without a transaction: one round trip, a reply each."""

    conn: Connection
    commands: Sequence[Command]

    def run(self) -> list[Any]:
        pipe = self.conn.client.pipeline(transaction=False)
        for command in self.commands:
            command.send(pipe)
        return list(pipe.execute())

    async def arun(self) -> list[Any]:
        pipe = self.conn.aclient.pipeline(transaction=False)
        for command in self.commands:
            command.send(pipe)
        return list(await pipe.execute())


@dataclass(slots=True)
class RunScript(Op[Any]):
    """A Lua script by EVALSHA (loaded first where the server lacks it): its reply."""

    conn: Connection
    script: LuaScript
    keys: Sequence[str]
    args: Sequence[Any]

    def run(self) -> Any:
        return self.conn.script(self.script)(keys=self.keys, args=self.args)

    async def arun(self) -> Any:
        return await self.conn.ascript(self.script)(keys=self.keys, args=self.args)
