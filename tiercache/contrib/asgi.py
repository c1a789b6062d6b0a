"""ASGI CacheMiddleware: an HTTP response cache in front of an ASGI app, in tiercache."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import timedelta
from typing import Any

import tiercache as tc

from ._http import (
    CACHEABLE_STATUSES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_TTL,
    DEFAULT_NAMESPACE,
    DEFAULT_PASS_TTL,
    DEFAULT_TAGS_HEADER,
    DEFAULT_TTL,
    Flights,
    Headers,
    Key,
    Request,
    Rules,
    Served,
    TagsFunction,
)

__all__ = ["CacheMiddleware"]

log = logging.getLogger("tiercache.contrib.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Recorder:
    """Runs the app: holds its start until the body is known whole, or streams it on, teeing.

    A body sent in one message is answered by the middleware (ETag, 304,
    Surrogate-Key). A body in several messages goes to the client as it
    comes, and is kept for the cache while it may be stored and stays
    within the limit.
    """

    def __init__(self, rules: Rules, request: Request, send: Send) -> None:
        self.rules, self.request, self.client = rules, request, send
        self.start: Message = {}
        self.status = 500
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.storable = False
        self.streaming = False
        self.complete = False
        self.cut = False  # an extension message took part of the body: never store it
        self.entry: dict[str, Any] | None = None

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> dict[str, Any] | None:
        """Call the app; the entry to store when its whole response may be stored."""
        await app(scope, receive, self.send)
        if self.complete:
            self.entry = self.rules.to_store(
                self.request,
                self.status,
                self.headers,
                b"".join(self.chunks),
                complete=not self.cut,
            )
        return self.entry

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.status = int(message["status"])
            self.headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
            ]
            self.storable = self.rules.storable(self.request, self.status, self.headers) is not None
            # A response with trailers is more than status, fields and body: not stored.
            if message.get("trailers") or not self.storable:
                self.storable = False
                await self._start()
            return
        if kind != "http.response.body":
            # An extension message (trailers, pathsend, ...): what was held goes first, as sent.
            self.storable = False
            self.cut = True
            if not self.streaming:
                await self._start()
                if self.chunks:
                    await self.client(
                        {
                            "type": "http.response.body",
                            "body": b"".join(self.chunks),
                            "more_body": not self.complete,
                        }
                    )
            await self.client(message)
            return
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if self.storable:
            self.chunks.append(body)
            self.size += len(body)
            if self.size > self.rules.max_body_bytes:
                self.storable = False
        if not more:
            self.complete = True
        if self.streaming:
            await self.client(message)
        elif more:
            await self._start()
            await self.client(
                {
                    "type": "http.response.body",
                    "body": b"".join(self.chunks) or body,
                    "more_body": True,
                }
            )
        elif not self.storable:
            await self._start()
            await self.client(message)

    async def _start(self) -> None:
        if self.streaming:
            return
        self.streaming = True
        # The app's own start message, extension keys (trailers) kept; only the fields change.
        await self.client(
            {
                **self.start,
                "type": "http.response.start",
                "status": self.status,
                "headers": _encode(self.rules.outgoing(self.request, self.headers)),
            }
        )

    async def finish(self) -> None:
        """Answer a response held whole that will not be stored (too large, or cut short)."""
        if not self.streaming:
            await self._start()
            await self.client({"type": "http.response.body", "body": b"".join(self.chunks)})


class CacheMiddleware:
    """Caches an ASGI app's GET and HEAD responses in a tiercache namespace.

    A fresh stored response is served without calling the app, with its
    ``Age``; ``If-None-Match`` on its ``ETag`` gets a 304. A miss calls the
    app once per key across the tasks of this process (waiters then read
    what it stored), and, for a key no tier holds, once across the processes
    sharing the namespace's Redis (tiercache's single-flight, with the app
    call as a coroutine loader). What is stored and for how long
    follows ``Cache-Control``, ``Vary`` and the status (see
    ``tiercache.contrib._http.Rules``). A body sent in several messages is
    streamed to the client as it comes and stored when it ends within
    ``max_body_bytes``. A failing cache never fails a request.

    Args:
        app: the ASGI application.
        cache: the ``tc.AsyncCache`` to store responses in.
        namespace: its namespace name, created with ``ttl=max_ttl``.
        ttl: seconds a response lives when it says nothing (``max-age``...).
        max_ttl: ceiling on any response's life.
        pass_ttl: seconds a URL whose response may not be stored goes
            straight to the app, without waiting behind another request.
        max_body_bytes: larger bodies are not cached.
        statuses: the cacheable statuses.
        tags_header: response field listing the response's tags (removed;
            the tags are sent as ``Surrogate-Key``).
        tags: ``tags(path, headers)``, more tags for a response.
        clock: Unix seconds.
        flight_timeout: seconds a waiting request waits for the leader.

    Raises:
        ConfigurationError: a malformed option, or a namespace of that name
            already made with other options.
    """

    def __init__(
        self,
        app: ASGIApp,
        cache: tc.AsyncCache,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float | timedelta = DEFAULT_TTL,
        max_ttl: float | timedelta = DEFAULT_MAX_TTL,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        statuses: Iterable[int] = CACHEABLE_STATUSES,
        tags_header: str = DEFAULT_TAGS_HEADER,
        tags: TagsFunction | None = None,
        pass_ttl: float | timedelta = DEFAULT_PASS_TTL,
        clock: Callable[[], float] = time.time,
        flight_timeout: float = 30.0,
    ) -> None:
        if not isinstance(cache, tc.AsyncCache):
            raise tc.ConfigurationError(
                f"the ASGI middleware needs a tiercache.AsyncCache, not {cache!r}"
            )
        self.app = app
        self.rules = Rules(
            ttl=_seconds(ttl),
            max_ttl=_seconds(max_ttl),
            max_body_bytes=max_body_bytes,
            statuses=frozenset(statuses),
            tags_header=tags_header,
            tags=tags,
            pass_ttl=_seconds(pass_ttl),
            clock=clock,
        )
        self.namespace = cache.namespace(namespace, ttl=self.rules.max_ttl)
        self.flight_timeout = flight_timeout
        self._flights: Flights[asyncio.Event] = Flights(asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an HTTP request from the cache, or from the app (storing what may be stored)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
        request = self.rules.request(scope["method"], _target(scope), headers)
        if request is None or request.no_store:
            await self.app(scope, receive, send)
            return
        if request.no_cache:
            await self._fetch(scope, receive, send, request, None)
            return
        found, key = await self._lookup(request)
        if self.rules.fresh(found):
            await _send(self.rules.serve(request, found), send)
            return
        if self.rules.passing(found):
            await self._fetch(scope, receive, send, request, None)
            return
        waiting = self._flights.lead(key)
        if waiting is not None:
            try:
                await asyncio.wait_for(waiting.wait(), self.flight_timeout)
            except asyncio.TimeoutError:
                pass
            found, _ = await self._lookup(request)
            if self.rules.fresh(found):
                await _send(self.rules.serve(request, found), send)
            else:
                await self._fetch(scope, receive, send, request, None)
            return
        try:
            await self._fetch(scope, receive, send, request, key if found is None else None)
        finally:
            event = self._flights.land(key)
            if event is not None:
                event.set()

    async def _lookup(self, request: Request) -> tuple[Any, Key]:
        plan = self.rules.lookup(request)
        key = next(plan)
        try:
            while True:
                key = plan.send(await self._get(key))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _get(self, key: Key) -> Any:
        try:
            value = await self.namespace.get(key, tc.MISSING)
        except tc.TiercacheError as exc:
            log.warning("http cache read failed, asking the app: %s", exc)
            return None
        return None if value is tc.MISSING else value

    async def _fetch(
        self, scope: Scope, receive: Receive, send: Send, request: Request, cold: Key | None
    ) -> None:
        """Call the app (through tiercache's loader for a ``cold`` key), store and answer."""
        forwarded = dict(scope)
        forwarded["headers"] = [
            (k, v)
            for k, v in scope.get("headers", ())
            if not Rules.conditional(k.decode("latin-1"))
        ]
        recorder = _Recorder(self.rules, request, send)
        if cold is not None:
            # tiercache's single-flight: one app call for every process that misses this key.
            served = await self._load_across_processes(forwarded, receive, recorder, request, cold)
            if served is not None:
                await _send(served, send)
                return
        else:
            await recorder.run(self.app, forwarded, receive)
            if recorder.entry is not None:
                await self._store(self.rules.placements(request, recorder.entry))
        if not Rules.is_response(recorder.entry):
            await recorder.finish()
        elif recorder.entry is not None and not recorder.streaming:
            entry = recorder.entry
            headers = [(k, v) for k, v in entry["headers"]]
            await _send(self.rules.answer(request, entry["status"], headers, entry["body"]), send)

    async def _load_across_processes(
        self, scope: Scope, receive: Receive, recorder: _Recorder, request: Request, cold: Key
    ) -> Served | None:
        """Run the app as tiercache's loader for ``cold``; a response if another process ran it."""
        ran: list[BaseException | None] = []
        filled: list[Key] = []

        async def load(keys: list[tc.Key]) -> dict[tc.Key, Any]:
            try:
                entry = await recorder.run(self.app, scope, receive)
            except BaseException as exc:
                ran.append(exc)
                raise
            ran.append(None)
            value = None if entry is None else self.rules.placements(request, entry).get(cold)
            if value is None:
                return {}
            filled.append(cold)
            return {cold: value}

        try:
            # AsyncNamespace awaits a coroutine loader; it inherits the sync signature.
            await self.namespace.get_many([cold], loader=load)  # type: ignore[arg-type]
        except Exception as exc:
            if ran and ran[0] is not None:
                raise ran[0] from None  # the app's own error, whatever the cache made of it
            if not isinstance(exc, tc.TiercacheError):
                raise
            log.warning("http cache failed around a load: %s", exc)
        if not ran:
            # Another process called the app and stored its answer (or the cache failed).
            found, _ = await self._lookup(request)
            if self.rules.fresh(found):
                return self.rules.serve(request, found)
            await recorder.run(self.app, scope, receive)
        if recorder.entry is not None:
            await self._store(
                {
                    k: v
                    for k, v in self.rules.placements(request, recorder.entry).items()
                    if k not in filled
                }
            )
        return None

    async def _store(self, items: dict[Key, Any]) -> None:
        if not items:
            return
        try:
            await self.namespace.set_many(items)  # type: ignore[arg-type]
        except tc.TiercacheError as exc:
            log.warning("http cache write failed: %s", exc)


async def _send(served: Served, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": served.status, "headers": _encode(served.headers)}
    )
    await send({"type": "http.response.body", "body": served.body})


def _encode(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _target(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
