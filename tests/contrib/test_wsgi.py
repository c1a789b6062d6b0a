"""tiercache.contrib.wsgi.CacheMiddleware behind a real WSGI server, asked by a real HTTP client."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.validate import validator

import httpx
import pytest

import tiercache as tc
from tiercache.contrib.wsgi import CacheMiddleware

pytestmark = pytest.mark.redis


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1, on a free port, in a thread; stop it on exit."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


class Origin:
    """A WSGI app whose routes show each caching rule; it counts its calls per path."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ["PATH_INFO"]
        with self.lock:
            self.calls[path] += 1
            n = self.calls[path]
        headers = [("Content-Type", "text/plain")]
        status = "200 OK"
        body = f"{path} {n}".encode()
        if path == "/maxage":
            headers.append(("Cache-Control", "public, max-age=10, s-maxage=5"))
        elif path == "/private":
            headers.append(("Cache-Control", "private, max-age=60"))
        elif path == "/nostore":
            headers.append(("Cache-Control", "no-store"))
        elif path == "/cookie":
            headers.append(("Set-Cookie", "session=abc"))
        elif path == "/vary":
            lang = environ.get("HTTP_ACCEPT_LANGUAGE", "")
            headers.append(("Vary", "Accept-Language"))
            body = f"{path} {n} {lang}".encode()
        elif path == "/varystar":
            headers.append(("Vary", "*"))
        elif path == "/tags":
            headers.append(("X-Cache-Tags", "org:7, user:1"))
        elif path == "/etag":
            headers.append(("ETag", '"v1"'))
        elif path == "/conditional":
            if environ.get("HTTP_IF_NONE_MATCH"):
                start_response("304 Not Modified", [])
                return []
        elif path.startswith("/status/"):
            status = f"{path[8:]} Whatever"
        elif path == "/slow":
            time.sleep(0.3)
        elif path == "/slowprivate":
            headers.append(("Cache-Control", "private"))
            with self.lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            time.sleep(0.8)
            with self.lock:
                self.running -= 1
        elif path in ("/stream", "/big"):
            size = 100 if path == "/stream" else 3000
            start_response(status, headers)
            return (b"x" * size for _ in range(5))
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]


class Clock:
    """Unix seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache(redis_url: str, prefix: str) -> Iterator[tc.Cache]:
    """An L1 + real Redis cache under this test's prefix."""
    with tc.Cache(tiers=[tc.MemoryTier(maxsize=1000), tc.RedisTier(redis_url)], prefix=prefix) as c:
        yield c


@pytest.fixture
def clock() -> Clock:
    """The middleware's clock."""
    return Clock()


@pytest.fixture
def origin() -> Origin:
    """The counting app."""
    return Origin()


@pytest.fixture
def base(origin: Origin, cache: tc.Cache, clock: Clock) -> Iterator[str]:
    """URL of the middleware in front of ``origin``, on a real server."""
    app = CacheMiddleware(
        origin,
        cache,
        ttl=30,
        max_body_bytes=1000,
        clock=clock,
        tags=lambda path, headers: ["page:" + path.strip("/")] if path == "/tags" else [],
    )
    with serving(app) as url:
        yield url


def get(url: str, **kwargs: Any) -> httpx.Response:
    """One GET with a bounded timeout."""
    return httpx.get(url, timeout=10, **kwargs)


def test_second_get_is_served_from_the_cache(base: str, origin: Origin, clock: Clock) -> None:
    """A GET is stored; the next one is served without calling the app, with its Age."""
    first = get(base + "/page")
    clock.now += 7
    second = get(base + "/page")
    assert first.text == second.text == "/page 1"
    assert origin.calls["/page"] == 1
    assert second.headers["age"] == "7"
    assert second.headers["etag"] == first.headers["etag"]


def test_default_ttl_then_refresh(base: str, origin: Origin, clock: Clock) -> None:
    """Without max-age the middleware's ttl applies; past it the app is asked again."""
    get(base + "/page")
    clock.now += 29
    assert get(base + "/page").text == "/page 1"
    clock.now += 2
    assert get(base + "/page").text == "/page 2"
    assert get(base + "/page").text == "/page 2"


def test_s_maxage_wins_over_max_age(base: str, origin: Origin, clock: Clock) -> None:
    """s-maxage=5 sets the TTL although max-age=10; Cache-Control is kept on what is served."""
    get(base + "/maxage")
    clock.now += 4
    hit = get(base + "/maxage")
    assert hit.text == "/maxage 1"
    assert hit.headers["cache-control"] == "public, max-age=10, s-maxage=5"
    clock.now += 2
    assert get(base + "/maxage").text == "/maxage 2"


@pytest.mark.parametrize(
    "path", ["/private", "/nostore", "/cookie", "/varystar", "/status/500", "/status/302"]
)
def test_uncacheable_responses_are_not_stored(base: str, origin: Origin, path: str) -> None:
    """private, no-store, Set-Cookie, Vary: * and other statuses reach the app every time."""
    get(base + path)
    get(base + path)
    assert origin.calls[path] == 2


@pytest.mark.parametrize("path", ["/status/404", "/status/301", "/status/410"])
def test_cacheable_error_statuses_are_stored(base: str, origin: Origin, path: str) -> None:
    """404, 301 and 410 are cacheable by default."""
    first = get(base + path)
    second = get(base + path)
    assert origin.calls[path] == 1
    assert first.status_code == second.status_code == int(path[8:])


def test_post_and_authorization_pass_through(base: str, origin: Origin) -> None:
    """A POST, or a GET with credentials, never reads nor fills the cache."""
    httpx.post(base + "/page", timeout=10)
    httpx.post(base + "/page", timeout=10)
    get(base + "/page", headers={"Authorization": "Bearer x"})
    assert origin.calls["/page"] == 3
    get(base + "/page")
    get(base + "/page")
    assert origin.calls["/page"] == 4


def test_query_is_part_of_the_key(base: str, origin: Origin) -> None:
    """/page?a=1 and /page?a=2 are stored apart."""
    assert get(base + "/page?a=1").text == "/page 1"
    assert get(base + "/page?a=2").text == "/page 2"
    assert get(base + "/page?a=1").text == "/page 1"


def test_vary_keys_on_the_named_request_header(base: str, origin: Origin) -> None:
    """Vary: Accept-Language stores one response per language."""
    en = get(base + "/vary", headers={"Accept-Language": "en"})
    fr = get(base + "/vary", headers={"Accept-Language": "fr"})
    assert en.text == "/vary 1 en" and fr.text == "/vary 2 fr"
    assert get(base + "/vary", headers={"Accept-Language": "en"}).text == "/vary 1 en"
    assert get(base + "/vary", headers={"Accept-Language": "fr"}).text == "/vary 2 fr"
    assert origin.calls["/vary"] == 2


def test_request_no_cache_refreshes(base: str, origin: Origin) -> None:
    """Cache-Control: no-cache on a request calls the app and stores its new answer."""
    get(base + "/page")
    assert get(base + "/page", headers={"Cache-Control": "no-cache"}).text == "/page 2"
    assert get(base + "/page").text == "/page 2"


def test_request_no_store_bypasses(base: str, origin: Origin) -> None:
    """Cache-Control: no-store on a request calls the app and stores nothing."""
    get(base + "/page")
    assert get(base + "/page", headers={"Cache-Control": "no-store"}).text == "/page 2"
    assert get(base + "/page").text == "/page 1"


def test_etag_computed_and_304(base: str, origin: Origin) -> None:
    """A strong ETag is the body's hash; If-None-Match with it gets 304 and no body."""
    first = get(base + "/page")
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = get(base + "/page", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert get(base + "/page", headers={"If-None-Match": '"other"'}).status_code == 200
    assert origin.calls["/page"] == 1


def test_app_etag_kept_and_first_request_answered_304(base: str, origin: Origin) -> None:
    """The app's ETag is kept; a conditional first request still gets 304 from the full response."""
    first = get(base + "/etag", headers={"If-None-Match": '"v1"'})
    assert first.status_code == 304 and first.headers["etag"] == '"v1"'
    assert get(base + "/etag").text == "/etag 1"


def test_conditional_is_not_forwarded(base: str, origin: Origin) -> None:
    """The app never sees If-None-Match, so its 304 cannot replace the body in the cache."""
    get(base + "/conditional", headers={"If-None-Match": '"x"'})
    full = get(base + "/conditional")
    assert full.status_code == 200 and full.text == "/conditional 1"


def test_surrogate_key_from_header_and_callable(base: str, origin: Origin) -> None:
    """X-Cache-Tags and tags= become Surrogate-Key, on the first response and on hits."""
    for _ in range(2):
        response = get(base + "/tags")
        assert response.headers["surrogate-key"] == "org:7 user:1 page:tags"
        assert "x-cache-tags" not in response.headers
    assert origin.calls["/tags"] == 1


def test_streamed_body_is_stored_whole(base: str, origin: Origin) -> None:
    """A body in several chunks is stored and served whole."""
    assert get(base + "/stream").content == b"x" * 500
    assert get(base + "/stream").content == b"x" * 500
    assert origin.calls["/stream"] == 1


def test_body_over_the_limit_is_served_not_stored(base: str, origin: Origin) -> None:
    """A 15,000-byte body over max_body_bytes=1000 reaches the client whole and is not stored."""
    assert get(base + "/big").content == b"x" * 15000
    assert get(base + "/big").content == b"x" * 15000
    assert origin.calls["/big"] == 2


def test_head_is_cached_without_body(base: str, origin: Origin) -> None:
    """HEAD is cached apart from GET, answered with no body, and given no ETag of an empty body."""
    first = httpx.head(base + "/page", timeout=10)
    second = httpx.head(base + "/page", timeout=10)
    assert first.status_code == second.status_code == 200 and second.content == b""
    assert "etag" not in second.headers
    assert origin.calls["/page"] == 1


def test_concurrent_misses_call_the_app_once(base: str, origin: Origin, in_threads: Any) -> None:
    """Eight concurrent GETs of a slow URL make one app call; all get its body."""
    bodies: list[str] = []
    in_threads(lambda i: bodies.append(get(base + "/slow").text), 8)
    assert bodies == ["/slow 1"] * 8
    assert origin.calls["/slow"] == 1


def test_concurrent_refresh_of_a_stale_entry_calls_the_app_once(
    base: str, origin: Origin, clock: Clock, in_threads: Any
) -> None:
    """Eight concurrent GETs of an expired entry make one app call to refresh it."""
    get(base + "/slow")
    clock.now += 31
    bodies: list[str] = []
    in_threads(lambda i: bodies.append(get(base + "/slow").text), 8)
    assert bodies == ["/slow 2"] * 8
    assert origin.calls["/slow"] == 2


def test_uncacheable_url_is_not_queued(base: str, origin: Origin) -> None:
    """Once a URL answered "private", its next requests reach the app side by side, not in turn."""
    get(base + "/slowprivate")
    threads = [threading.Thread(target=get, args=(base + "/slowprivate",)) for _ in range(2)]
    threads[0].start()
    time.sleep(0.15)
    threads[1].start()
    for thread in threads:
        thread.join(timeout=10)
    assert origin.calls["/slowprivate"] == 3
    assert origin.most_running == 2


def test_concurrent_misses_across_caches_call_the_app_once(
    redis_url: str, prefix: str, origin: Origin, in_threads: Any
) -> None:
    """Two middlewares on two Caches (as two processes) sharing Redis make one app call.

    Both are asked for one host: the Host header is part of the key.
    """
    caches = [
        tc.Cache(tiers=[tc.MemoryTier(maxsize=100), tc.RedisTier(redis_url)], prefix=prefix)
        for _ in range(2)
    ]
    bodies: list[str] = []
    with (
        serving(CacheMiddleware(origin, caches[0])) as a,
        serving(CacheMiddleware(origin, caches[1])) as b,
    ):
        in_threads(
            lambda i: bodies.append(get((a, b)[i % 2] + "/slow", headers={"Host": "h.test"}).text),
            6,
        )
    for c in caches:
        c.close()
    assert bodies == ["/slow 1"] * 6
    assert origin.calls["/slow"] == 1


def test_host_is_part_of_the_key(base: str, origin: Origin) -> None:
    """One path on two hosts is stored apart: one host never gets another's page."""
    assert get(base + "/page", headers={"Host": "a.test"}).text == "/page 1"
    assert get(base + "/page", headers={"Host": "b.test"}).text == "/page 2"
    assert get(base + "/page", headers={"Host": "a.test"}).text == "/page 1"


def test_middleware_speaks_wsgi_as_the_spec_says(origin: Origin, cache: tc.Cache) -> None:
    """wsgiref's validator, on both sides of the middleware, passes hits, misses and 304s."""
    app = validator(CacheMiddleware(validator(origin), cache, max_body_bytes=1000))
    with serving(app) as url:
        for path in ("/page", "/page", "/stream", "/big", "/private", "/tags", "/tags"):
            assert get(url + path).status_code == 200
        etag = get(url + "/page").headers["etag"]
        assert get(url + "/page", headers={"If-None-Match": etag}).status_code == 304
        assert httpx.head(url + "/page", timeout=10).status_code == 200
    assert origin.calls["/page"] == 2  # one GET, one HEAD: HEAD is its own entry


def test_app_error_reaches_the_server(cache: tc.Cache) -> None:
    """An exception in the app is not swallowed by the cache; the server answers 500."""

    def broken(environ: dict[str, Any], start_response: Any) -> Any:
        raise RuntimeError("boom")

    with serving(CacheMiddleware(broken, cache)) as url:
        assert get(url + "/x").status_code == 500


def test_flask_example(exercise_example: Callable[[str], None]) -> None:
    """examples/wsgi_flask.py serves cached, tagged and private routes as documented."""
    exercise_example("wsgi_flask.py")


@pytest.mark.parametrize(
    ("headers", "ttl"),
    [
        ([("Cache-Control", "max-age=10")], 10.0),
        ([("Cache-Control", 'public, s-maxage="7", max-age=10')], 7.0),
        ([("Cache-Control", "max-age=0")], None),
        ([("Cache-Control", "max-age=ten")], None),
        ([("Cache-Control", "max-age=999999999")], 86_400.0),
        ([("cache-control", "Private")], None),
        ([("Cache-Control", 'no-cache="Set-Cookie"')], None),
        ([("Vary", "Accept, *")], None),
        ([("Content-Type", "text/event-stream; charset=utf-8")], None),
        ([("Set-Cookie", "a=1")], None),
        ([], 30.0),
    ],
)
def test_rules_ttl_table(headers: list[tuple[str, str]], ttl: float | None) -> None:
    """The TTL the shared rules give each response (None: not stored), beside the server tests."""
    from tiercache.contrib._http import Rules

    rules = Rules(ttl=30)
    request = rules.request("GET", "/", [("Host", "h")])
    assert request is not None
    assert rules.storable(request, 200, headers) == ttl


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [('"a"', 304), ('W/"a"', 304), ('"b", "a"', 304), ("*", 304), ('"b"', 200), ("", 200)],
)
def test_rules_if_none_match_table(if_none_match: str, status: int) -> None:
    """If-None-Match is compared weakly, in lists and with *, against the stored ETag."""
    from tiercache.contrib._http import Rules

    rules = Rules()
    request = rules.request("GET", "/", [("If-None-Match", if_none_match)] if if_none_match else [])
    assert request is not None
    assert rules.answer(request, 200, [("ETag", '"a"')], b"body").status == status


def _dead_redis_url() -> str:
    """A Redis URL on a 127.0.0.1 port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("on_tier_error", ["degrade", "raise"])
def test_a_failing_cache_never_fails_a_request(origin: Origin, on_tier_error: str) -> None:
    """With Redis unreachable (errors degraded or raised), every request is answered by the app."""
    tier = tc.RedisTier(_dead_redis_url(), timeout=0.05)
    with (
        tc.Cache(tiers=[tier], on_tier_error=on_tier_error) as dead,
        serving(CacheMiddleware(origin, dead)) as url,
    ):
        assert [get(url + "/page").status_code for _ in range(3)] == [200] * 3
        assert get(url + "/slow").text.startswith("/slow")
    assert origin.calls["/page"] == 3
