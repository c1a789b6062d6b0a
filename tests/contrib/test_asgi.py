"""tiercache.contrib.asgi.CacheMiddleware behind a real uvicorn server, asked by httpx."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

import tiercache as tc
from tiercache.contrib.asgi import CacheMiddleware

pytestmark = pytest.mark.redis

AppFactory = Callable[[tc.AsyncCache], Any]


@contextmanager
def serving(make_app: AppFactory, redis_url: str, prefix: str) -> Iterator[str]:
    """Serve ``make_app(cache)`` with uvicorn on 127.0.0.1:free port, in a thread; stop it on exit.

    The AsyncCache is made and closed on the server's own event loop.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        tiers = [tc.MemoryTier(maxsize=1000), tc.RedisTier(redis_url)]
        async with tc.AsyncCache(tiers=tiers, prefix=prefix) as cache:
            config = uvicorn.Config(
                make_app(cache), lifespan="off", log_level="warning", loop="asyncio", http="h11"
            )
            server = holder["server"] = uvicorn.Server(config)
            ready.set()
            await server.serve(sockets=[sock])

    def run() -> None:
        try:
            asyncio.run(main())
        except Exception as exc:  # noqa: BLE001 - reported to the test, not lost in the thread
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert ready.wait(10)
        deadline = time.monotonic() + 10
        while "error" not in holder and not holder["server"].started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        assert "error" not in holder, holder.get("error")
        yield f"http://127.0.0.1:{port}"
    finally:
        if "server" in holder:
            holder["server"].should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive()
    assert "error" not in holder, holder.get("error")


class Origin:
    """A plain ASGI app whose routes show each caching rule; it counts its calls per path."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seen_if_none_match: list[bytes] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        self.calls[path] += 1
        n = self.calls[path]
        request_headers = dict(scope["headers"])
        if b"if-none-match" in request_headers:
            self.seen_if_none_match.append(request_headers[b"if-none-match"])
        headers = [(b"content-type", b"text/plain")]
        body = f"{path} {n}".encode()
        status = 200
        if path == "/maxage":
            headers.append((b"cache-control", b"max-age=5"))
        elif path == "/private":
            headers.append((b"cache-control", b"private"))
        elif path == "/vary":
            headers.append((b"vary", b"accept-language"))
            body += b" " + request_headers.get(b"accept-language", b"")
        elif path == "/tags":
            headers.append((b"x-cache-tags", b"org:7 user:1"))
        elif path == "/missing":
            status = 404
        elif path == "/error":
            status = 500
        elif path == "/slow":
            await asyncio.sleep(0.3)
        elif path == "/slowprivate":
            headers.append((b"cache-control", b"no-store"))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            await asyncio.sleep(0.8)
            self.running -= 1
        elif path in ("/stream", "/big", "/events"):
            if path == "/events":
                headers = [(b"content-type", b"text/event-stream")]
            size = 100 if path != "/big" else 3000
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for i in range(5):
                await send(
                    {
                        "type": "http.response.body",
                        "body": bytes([65 + i]) * size,
                        "more_body": True,
                    }
                )
                await asyncio.sleep(0.2 if path == "/events" else 0.01)
            await send({"type": "http.response.body", "body": f"|{n}".encode()})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Clock:
    """Unix seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def origin() -> Origin:
    """The counting app."""
    return Origin()


@pytest.fixture
def clock() -> Clock:
    """The middleware's clock."""
    return Clock()


@pytest.fixture
def base(origin: Origin, clock: Clock, redis_url: str, prefix: str) -> Iterator[str]:
    """URL of the middleware in front of ``origin``, on uvicorn, on the real Redis."""

    def make(cache: tc.AsyncCache) -> Any:
        return CacheMiddleware(
            origin,
            cache,
            ttl=30,
            max_body_bytes=1000,
            clock=clock,
            tags=lambda path, headers: ["p" + path] if path == "/tags" else [],
        )

    with serving(make, redis_url, prefix) as url:
        yield url


def get(url: str, **kwargs: Any) -> httpx.Response:
    """One GET with a bounded timeout."""
    return httpx.get(url, timeout=10, **kwargs)


def test_hit_served_without_the_app_with_age(base: str, origin: Origin, clock: Clock) -> None:
    """The second GET is served from the cache with Age, the same ETag and body."""
    first = get(base + "/page")
    clock.now += 3
    second = get(base + "/page")
    assert first.text == second.text == "/page 1"
    assert second.headers["age"] == "3" and second.headers["etag"] == first.headers["etag"]
    assert origin.calls["/page"] == 1


def test_max_age_sets_the_ttl(base: str, origin: Origin, clock: Clock) -> None:
    """max-age=5: served for 5 s, then fetched anew; Cache-Control is kept."""
    get(base + "/maxage")
    clock.now += 4
    hit = get(base + "/maxage")
    assert hit.text == "/maxage 1" and hit.headers["cache-control"] == "max-age=5"
    clock.now += 2
    assert get(base + "/maxage").text == "/maxage 2"


def test_private_and_error_are_not_stored(base: str, origin: Origin) -> None:
    """Cache-Control: private and a 500 reach the app every time; a 404 is stored."""
    for path in ("/private", "/error", "/missing"):
        get(base + path)
        get(base + path)
    assert (origin.calls["/private"], origin.calls["/error"], origin.calls["/missing"]) == (2, 2, 1)


def test_vary(base: str, origin: Origin) -> None:
    """Vary: Accept-Language stores one response per language."""
    assert get(base + "/vary", headers={"Accept-Language": "en"}).text == "/vary 1 en"
    assert get(base + "/vary", headers={"Accept-Language": "fr"}).text == "/vary 2 fr"
    assert get(base + "/vary", headers={"Accept-Language": "en"}).text == "/vary 1 en"
    assert origin.calls["/vary"] == 2


def test_request_no_cache_and_no_store(base: str, origin: Origin) -> None:
    """no-cache refreshes the stored copy; no-store bypasses it and stores nothing."""
    get(base + "/page")
    assert get(base + "/page", headers={"Cache-Control": "no-cache"}).text == "/page 2"
    assert get(base + "/page", headers={"Cache-Control": "no-store"}).text == "/page 3"
    assert get(base + "/page").text == "/page 2"


def test_etag_304_and_conditionals_not_forwarded(base: str, origin: Origin) -> None:
    """If-None-Match with the computed ETag gets 304, on a miss and a hit; the app never sees it."""
    etag = get(base + "/page").headers["etag"]
    assert get(base + "/page", headers={"If-None-Match": etag}).status_code == 304
    first = get(base + "/other", headers={"If-None-Match": "*"})
    assert first.status_code == 304 and first.content == b""
    assert origin.seen_if_none_match == []


def test_surrogate_key(base: str, origin: Origin) -> None:
    """X-Cache-Tags and tags= become Surrogate-Key, on the first response and on hits."""
    for _ in range(2):
        response = get(base + "/tags")
        assert response.headers["surrogate-key"] == "org:7 user:1 p/tags"
        assert "x-cache-tags" not in response.headers
    assert origin.calls["/tags"] == 1


def test_streamed_body_is_forwarded_and_stored(base: str, origin: Origin) -> None:
    """A body in six messages reaches the client whole and is then served from the cache."""
    expected = b"".join(bytes([65 + i]) * 100 for i in range(5)) + b"|1"
    assert get(base + "/stream").content == expected
    assert get(base + "/stream").content == expected
    assert origin.calls["/stream"] == 1


def test_streamed_body_over_the_limit_is_not_stored(base: str, origin: Origin) -> None:
    """A 15,000-byte streamed body over max_body_bytes=1000 is served whole, not stored."""
    assert len(get(base + "/big").content) == 15002
    assert get(base + "/big").content.endswith(b"|2")


def test_event_stream_arrives_before_it_ends(base: str, origin: Origin) -> None:
    """text/event-stream is passed on as it comes: the first part arrives before the last."""
    started = time.monotonic()
    with httpx.stream("GET", base + "/events", timeout=10) as response:
        parts = response.iter_raw()
        first = next(parts)
        first_after = time.monotonic() - started
        rest = b"".join(parts)
    ended_after = time.monotonic() - started
    assert first.startswith(b"A") and rest.endswith(b"|1")
    # Five 0.2 s pauses follow the first part: held back, it would arrive with the last.
    assert ended_after - first_after >= 0.8
    get(base + "/events")
    assert origin.calls["/events"] == 2


def test_concurrent_misses_call_the_app_once(base: str, origin: Origin, in_threads: Any) -> None:
    """Eight concurrent GETs of a slow URL make one app call."""
    bodies: list[str] = []
    in_threads(lambda i: bodies.append(get(base + "/slow").text), 8)
    assert bodies == ["/slow 1"] * 8 and origin.calls["/slow"] == 1


def test_concurrent_refresh_of_a_stale_entry_calls_the_app_once(
    base: str, origin: Origin, clock: Clock, in_threads: Any
) -> None:
    """Eight concurrent GETs of an expired entry make one app call to refresh it."""
    get(base + "/slow")
    clock.now += 31
    bodies: list[str] = []
    in_threads(lambda i: bodies.append(get(base + "/slow").text), 8)
    assert bodies == ["/slow 2"] * 8 and origin.calls["/slow"] == 2


def test_uncacheable_url_is_not_queued(base: str, origin: Origin) -> None:
    """Once a URL answered "no-store", its next requests reach the app side by side, not in turn."""
    get(base + "/slowprivate")
    threads = [threading.Thread(target=get, args=(base + "/slowprivate",)) for _ in range(2)]
    threads[0].start()
    time.sleep(0.15)
    threads[1].start()
    for thread in threads:
        thread.join(timeout=10)
    assert origin.calls["/slowprivate"] == 3
    assert origin.most_running == 2


def test_concurrent_misses_across_servers_call_the_app_once(
    origin: Origin, redis_url: str, prefix: str, in_threads: Any
) -> None:
    """Two uvicorn servers, each with its AsyncCache on one Redis, make one app call."""

    def make(cache: tc.AsyncCache) -> Any:
        return CacheMiddleware(origin, cache)

    bodies: list[str] = []
    with serving(make, redis_url, prefix) as a, serving(make, redis_url, prefix) as b:
        in_threads(
            lambda i: bodies.append(get((a, b)[i % 2] + "/slow", headers={"Host": "h.test"}).text),
            6,
        )
    assert bodies == ["/slow 1"] * 6 and origin.calls["/slow"] == 1


def test_app_error_is_a_500(redis_url: str, prefix: str) -> None:
    """An exception in the app is not swallowed by the cache: uvicorn answers 500."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        raise RuntimeError("boom")

    with serving(lambda cache: CacheMiddleware(broken, cache), redis_url, prefix) as url:
        assert get(url + "/x").status_code == 500


def test_starlette_example(exercise_example: Callable[[str], None]) -> None:
    """examples/asgi_starlette.py serves cached, tagged and private routes as documented."""
    exercise_example("asgi_starlette.py")


def test_trailers_are_passed_in_order_and_not_stored(redis_url: str, prefix: str) -> None:
    """A response with trailers reaches the server as sent (start, body, trailers), unstored.

    uvicorn offers no trailers, so the middleware is called directly here.
    """
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"hello"})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-sum", b"1")],
                "more_trailers": False,
            }
        )

    async def main() -> list[list[Any]]:
        async with tc.AsyncCache(tiers=[tc.RedisTier(redis_url)], prefix=prefix) as cache:
            middleware = CacheMiddleware(app, cache)
            runs = []
            for _ in range(2):
                sent: list[Any] = []

                async def send(message: Any, sent: list[Any] = sent) -> None:
                    sent.append(message)

                async def receive() -> Any:
                    return {"type": "http.request", "body": b"", "more_body": False}

                scope = {
                    "type": "http",
                    "method": "GET",
                    "path": "/t",
                    "query_string": b"",
                    "headers": [(b"host", b"h")],
                }
                await middleware(scope, receive, send)
                runs.append([(m["type"], m.get("trailers"), m.get("body")) for m in sent])
            return runs

    for run in asyncio.run(main()):
        assert run == [
            ("http.response.start", True, None),
            ("http.response.body", None, b"hello"),
            ("http.response.trailers", None, None),
        ]
    assert len(calls) == 2


def test_a_failing_cache_never_fails_a_request(origin: Origin, prefix: str) -> None:
    """With Redis unreachable every request is answered, from the app and then from L1 alone."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    with serving(lambda cache: CacheMiddleware(origin, cache), dead, prefix) as url:
        assert [get(url + "/page").text for _ in range(3)] == ["/page 1"] * 3
    assert origin.calls["/page"] == 1
