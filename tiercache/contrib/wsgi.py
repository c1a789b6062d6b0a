"""WSGI CacheMiddleware: an HTTP response cache in front of a WSGI app, in tiercache."""

from __future__ import annotations

import http
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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

log = logging.getLogger("tiercache.contrib.wsgi")

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class _Outcome:
    """What the app answered: its status line, fields, the body read so far, and the rest."""

    status: str = "500 Internal Server Error"
    headers: Headers = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    rest: Iterator[bytes] | None = None  # None once the body was read to its end
    close: Callable[[], object] | None = None
    entry: dict[str, Any] | None = None


class CacheMiddleware:
    """Caches a WSGI app's GET and HEAD responses in a tiercache namespace.

    A fresh stored response is served without calling the app, with its
    ``Age``; ``If-None-Match`` on its ``ETag`` gets a 304. A miss calls the
    app once per key across the threads of this process (waiters then read
    what it stored), and, for a key no tier holds, once across the processes
    sharing the namespace's Redis (tiercache's own single-flight). What is
    stored and for how long follows ``Cache-Control``, ``Vary`` and the
    status, as described in ``tiercache.contrib._http.Rules``. Bodies are
    read whole (up to ``max_body_bytes``) before the first byte is sent;
    larger ones, and responses that may not be stored, are streamed on.
    A failing cache never fails a request: the app answers instead.

    Args:
        app: the WSGI application.
        cache: the ``tc.Cache`` to store responses in.
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
        app: WSGIApp,
        cache: tc.Cache,
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
        if isinstance(cache, tc.AsyncCache) or not isinstance(cache, tc.Cache):
            raise tc.ConfigurationError(
                f"the WSGI middleware needs a tiercache.Cache, not {cache!r}"
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
        self._flights: Flights[threading.Event] = Flights(threading.Event)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve ``environ`` from the cache, or from the app (storing what may be stored)."""
        request = self.rules.request(
            environ.get("REQUEST_METHOD", "GET"), _target(environ), _request_headers(environ)
        )
        if request is None or request.no_store:
            return self.app(environ, start_response)
        if request.no_cache:
            return self._fetch(environ, start_response, request, None)
        found, key = self._lookup(request)
        if self.rules.fresh(found):
            return _send(self.rules.serve(request, found), start_response)
        if self.rules.passing(found):
            return self._fetch(environ, start_response, request, None)
        waiting = self._flights.lead(key)
        if waiting is not None:
            waiting.wait(self.flight_timeout)
            found, _ = self._lookup(request)
            if self.rules.fresh(found):
                return _send(self.rules.serve(request, found), start_response)
            return self._fetch(environ, start_response, request, None)
        try:
            # A key no tier holds goes through tiercache's loader, which
            # collapses misses across processes; a stale entry is refreshed here.
            return self._fetch(environ, start_response, request, key if found is None else None)
        finally:
            event = self._flights.land(key)
            if event is not None:
                event.set()

    def _lookup(self, request: Request) -> tuple[Any, Key]:
        plan = self.rules.lookup(request)
        key = next(plan)
        try:
            while True:
                key = plan.send(self._get(key))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _get(self, key: Key) -> Any:
        try:
            value = self.namespace.get(key, tc.MISSING)
        except tc.TiercacheError as exc:
            log.warning("http cache read failed, asking the app: %s", exc)
            return None
        return None if value is tc.MISSING else value

    def _fetch(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        request: Request,
        cold: Key | None,
    ) -> Iterable[bytes]:
        """Call the app (through the loader for a ``cold`` key), store and answer."""
        forwarded = {
            k: v
            for k, v in environ.items()
            if not (k.startswith("HTTP_") and Rules.conditional(k[5:].replace("_", "-")))
        }
        called: list[_Outcome] = []
        failed: list[BaseException] = []
        filled: list[Key] = []  # keys tiercache stored from the loader's answer

        def load(keys: list[tc.Key]) -> dict[tc.Key, Any]:
            try:
                outcome = self._call(forwarded, request)
            except BaseException as exc:
                failed.append(exc)  # the app's own error, whatever the cache makes of it
                raise
            called.append(outcome)
            if outcome.entry is None:
                return {}
            value = self.rules.placements(request, outcome.entry).get(cold)  # type: ignore[arg-type]
            if value is None or cold is None:
                return {}
            filled.append(cold)
            return {cold: value}

        if cold is not None:
            try:
                self.namespace.get_many([cold], loader=load)
            except tc.TiercacheError as exc:
                if failed:
                    raise failed[0] from None
                if called:
                    log.warning("http cache write failed: %s", exc)
                else:
                    log.warning("http cache read failed, asking the app: %s", exc)
            if not called:
                # Another process called the app and stored its answer.
                found, _ = self._lookup(request)
                if self.rules.fresh(found):
                    return _send(self.rules.serve(request, found), start_response)
                called.append(self._call(forwarded, request))
            outcome = called[0]
            if outcome.entry is not None:
                self._store(
                    {
                        k: v
                        for k, v in self.rules.placements(request, outcome.entry).items()
                        if k not in filled
                    }
                )
        else:
            outcome = self._call(forwarded, request)
            if outcome.entry is not None:
                self._store(self.rules.placements(request, outcome.entry))
        if Rules.is_response(outcome.entry):
            entry: dict[str, Any] = outcome.entry  # type: ignore[assignment]  # is_response: not None
            served = self.rules.answer(
                request, entry["status"], list(map(tuple, entry["headers"])), entry["body"]
            )
            return _send(served, start_response)
        start_response(outcome.status, self.rules.outgoing(request, outcome.headers))
        return _Passed(outcome)

    def _store(self, items: dict[Key, Any]) -> None:
        if not items:
            return
        try:
            self.namespace.set_many(items)  # type: ignore[arg-type]
        except tc.TiercacheError as exc:
            log.warning("http cache write failed: %s", exc)

    def _call(self, environ: dict[str, Any], request: Request) -> _Outcome:
        """Run the app; read its body whole unless it may not be stored or outgrows the limit."""
        outcome = _Outcome()

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            # Nothing has been sent yet, so a later call (with exc_info) just replaces the answer.
            outcome.status, outcome.headers = status, list(headers)
            return outcome.chunks.append

        result = self.app(environ, start)
        outcome.close = getattr(result, "close", None)
        body = iter(result)
        size = 0
        storable: bool | None = None
        try:
            for chunk in body:
                outcome.chunks.append(chunk)
                size += len(chunk)
                if storable is None:  # the app has called start_response by now
                    storable = (
                        self.rules.storable(request, _status(outcome.status), outcome.headers)
                        is not None
                    )
                if not storable or size > self.rules.max_body_bytes:
                    outcome.rest = body  # streamed on to the client from here
                    break
        except BaseException:
            if outcome.close is not None:
                outcome.close()
            raise
        complete = outcome.rest is None
        outcome.entry = self.rules.to_store(
            request, _status(outcome.status), outcome.headers, b"".join(outcome.chunks), complete
        )
        if complete and outcome.close is not None:
            outcome.close()
            outcome.close = None
        return outcome


class _Passed:
    """A response passed through: the chunks read, then the rest, and the app's close()."""

    def __init__(self, outcome: _Outcome) -> None:
        self._outcome = outcome

    def __iter__(self) -> Iterator[bytes]:
        yield from self._outcome.chunks
        if self._outcome.rest is not None:
            yield from self._outcome.rest

    def close(self) -> None:
        if self._outcome.close is not None:
            self._outcome.close()


def _send(served: Served, start_response: StartResponse) -> list[bytes]:
    try:
        phrase = http.HTTPStatus(served.status).phrase
    except ValueError:
        phrase = ""
    start_response(f"{served.status} {phrase}".rstrip(), served.headers)
    return [served.body] if served.body else []


def _status(line: str) -> int:
    try:
        return int(line.split(None, 1)[0])
    except (ValueError, IndexError):
        return 500


def _target(environ: dict[str, Any]) -> str:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def _request_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(k[5:].replace("_", "-"), str(v)) for k, v in environ.items() if k.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        out.append(("Content-Type", environ["CONTENT_TYPE"]))
    return out


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
