"""The HTTP caching rules of the ASGI and WSGI middlewares, written once and free of I/O."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tiercache as tc

from ._http_fields import Headers, Key, etag_matches, vary_fields
from ._http_fields import directives as directives
from ._http_fields import fold as fold
from ._http_fields import header as header
from ._http_fields import strong_etag as strong_etag
from ._http_flights import Flights

__all__ = [
    "CACHEABLE_STATUSES",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_TTL",
    "DEFAULT_NAMESPACE",
    "DEFAULT_PASS_TTL",
    "DEFAULT_TAGS_HEADER",
    "DEFAULT_TTL",
    "Flights",
    "Headers",
    "Key",
    "Request",
    "Rules",
    "Served",
    "TagsFunction",
]

log = logging.getLogger("tiercache.contrib.http")

TagsFunction = Callable[[str, Headers], Iterable[str]]
"""``tags(path, response_headers)``: the tags of a response, for ``Surrogate-Key``."""

CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 404, 405, 410, 414, 501})
"""Statuses cacheable by default (RFC 9110 section 15.1), as a shared cache stores them."""

DEFAULT_TTL = 60.0
"""Seconds a cacheable response lives when it says neither ``s-maxage`` nor ``max-age``."""

DEFAULT_MAX_TTL = 86_400.0
"""Ceiling on any response's TTL: a namespace ceiling, so Redis reclaims what nobody asks for."""

DEFAULT_MAX_BODY_BYTES = 1_000_000
"""Bodies larger than this are served but not cached."""

DEFAULT_PASS_TTL = 30.0
"""Seconds a URL whose app said "do not store" goes straight to the app (Varnish's hit-for-pass)."""

DEFAULT_NAMESPACE = "http"
DEFAULT_TAGS_HEADER = "X-Cache-Tags"

_CACHED_METHODS = frozenset({"GET", "HEAD"})
# Sent by a 304 in place of the body's own fields (RFC 9110 section 15.4.5).
_NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary"}
)
_CONDITIONAL = frozenset({"if-none-match", "if-modified-since"})


@dataclass(frozen=True)
class Request:
    """What the rules need of a request: method, target, host and header fields (lowercased)."""

    method: str
    target: str
    host: str
    headers: dict[str, str]

    @property
    def no_store(self) -> bool:
        """``Cache-Control: no-store``: bypass the cache and store nothing."""
        return "no-store" in directives(self.headers.get("cache-control", ""))

    @property
    def no_cache(self) -> bool:
        """``Cache-Control: no-cache``: do not serve a stored copy; fetch and store anew."""
        return "no-cache" in directives(self.headers.get("cache-control", ""))


@dataclass(frozen=True)
class Served:
    """A response to send: status, header fields, body."""

    status: int
    headers: Headers
    body: bytes



@dataclass(frozen=True, kw_only=True)
class Rules:
    """When to cache a response, under which key, for how long, and how to serve it.

    Args:
        ttl: seconds a response lives when it gives no ``s-maxage``/``max-age``.
        max_ttl: ceiling on every response's TTL (and the namespace's).
        max_body_bytes: larger bodies are passed through, not cached.
        statuses: the cacheable statuses.
        tags_header: response field the app lists tags in (comma or space
            separated); removed from the response, sent as ``Surrogate-Key``.
        tags: ``tags(path, headers)``, tags of a response, added to the header's.
        pass_ttl: seconds a URL whose answer may not be stored is passed
            straight to the app (see ``to_store``).
        clock: Unix seconds; ``Age`` is counted on it across processes.
    """

    ttl: float = DEFAULT_TTL
    max_ttl: float = DEFAULT_MAX_TTL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    statuses: frozenset[int] = CACHEABLE_STATUSES
    tags_header: str = DEFAULT_TAGS_HEADER
    tags: TagsFunction | None = None
    pass_ttl: float = DEFAULT_PASS_TTL
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        if self.pass_ttl < 0:
            raise tc.ConfigurationError(f"pass_ttl must be >= 0, got {self.pass_ttl}")
        if not 0 < self.ttl <= self.max_ttl:
            raise tc.ConfigurationError(f"need 0 < ttl <= max_ttl, got {self.ttl}, {self.max_ttl}")
        if self.max_body_bytes < 0:
            raise tc.ConfigurationError(f"max_body_bytes must be >= 0, got {self.max_body_bytes}")

    # -- requests -----------------------------------------------------------

    def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]]
    ) -> Request | None:
        """The request, if the cache may take part in it at all; None to pass it through.

        Only GET and HEAD are cached; a request with credentials never is
        (RFC 9111 section 3.5: one user's answer must not reach another).
        """
        if method not in _CACHED_METHODS:
            return None
        folded = fold(headers)
        if "authorization" in folded:
            return None
        return Request(method, target, folded.get("host", "").lower(), folded)

    @staticmethod
    def conditional(name: str) -> bool:
        """True for a request field not to forward when the answer may be cached.

        Conditionals are answered here, from the full response; forwarded,
        they would let the app answer 304, which leaves nothing to cache.
        """
        return name.lower() in _CONDITIONAL

    @staticmethod
    def primary_key(request: Request) -> Key:
        """Key of a URL's entry: the response itself, or the list of fields it varies on.

        The host is part of it: an app serving several hosts must not answer
        one host with another's page.
        """
        return ("r", request.method, request.host, request.target)

    @staticmethod
    def variant_key(request: Request, vary: Sequence[str]) -> Key:
        """Key of the response for this request's values of the ``vary`` fields."""
        return (
            "v",
            request.method,
            request.host,
            request.target,
            *(f"{name}:{request.headers.get(name, '')}" for name in vary),
        )

    # -- responses ----------------------------------------------------------

    def storable(self, request: Request, status: int, headers: Headers) -> float | None:
        """The TTL to store this response for, or None when it must not be stored."""
        verdict = self._verdict(request, status, headers)
        return None if isinstance(verdict, str) else verdict

    def _verdict(self, request: Request, status: int, headers: Headers) -> float | str:
        """The TTL, or why not: "status", "request" (may differ next time) or "response"."""
        if status not in self.statuses:
            return "status"
        if request.no_store:
            return "request"
        control = directives(header(headers, "cache-control"))
        if {"private", "no-store", "no-cache"} & control.keys():
            return "response"
        if header(headers, "set-cookie"):
            return "response"  # one user's session must never be served to the next
        if "*" in vary_fields(headers):
            return "response"
        if "text/event-stream" in header(headers, "content-type"):
            return "response"  # an endless stream: there is no whole body to store
        for name in ("s-maxage", "max-age"):
            if name in control:
                try:
                    ttl = float(int(control[name]))
                except ValueError:
                    return "response"  # malformed: treat as stale (RFC 9111 section 4.2.1)
                return float(min(ttl, self.max_ttl)) if ttl > 0 else "response"
        return float(self.ttl)

    def to_store(
        self, request: Request, status: int, headers: Headers, body: bytes, complete: bool
    ) -> dict[str, Any] | None:
        """What to store once the app has answered, or None.

        The response's entry when it may be stored whole. A pass marker when
        the app said its answers for this URL are not to be stored (or they
        are too large): for ``pass_ttl`` seconds the next requests go straight
        to the app instead of queueing behind one another for an answer they
        could not share. None for a status or a request that may differ next
        time, and for a body cut short.
        """
        verdict = self._verdict(request, status, headers)
        if verdict == "response" or (
            not isinstance(verdict, str) and len(body) > self.max_body_bytes
        ):
            vary = vary_fields(headers)
            return {
                "kind": "pass",
                "stored": self.clock(),
                "ttl": self.pass_ttl,
                "vary": [] if "*" in vary else vary,
            }
        if isinstance(verdict, str) or not complete:
            return None
        return self.entry(request, status, headers, body, verdict)

    def entry(
        self, request: Request, status: int, headers: Headers, body: bytes, ttl: float
    ) -> dict[str, Any]:
        """The stored form of a response: its fields with ``ETag`` and ``Surrogate-Key`` set."""
        tags = self._tags(request, headers)
        kept = [
            [k, v]
            for k, v in headers
            if k.lower() not in ("age", "surrogate-key", self.tags_header.lower())
        ]
        # Not for HEAD: its body is empty, and a hash of nothing would tell
        # clients a different validator from the GET's.
        if status == 200 and request.method == "GET" and not header(headers, "etag"):
            kept.append(["ETag", strong_etag(body)])
        if tags:
            kept.append(["Surrogate-Key", " ".join(tags)])
        return {
            "kind": "response",
            "status": status,
            "headers": kept,
            "body": body,
            "stored": self.clock(),
            "ttl": ttl,
            "tags": tags,
            "vary": vary_fields(headers),
        }

    @staticmethod
    def placements(request: Request, entry: dict[str, Any]) -> dict[Key, dict[str, Any]]:
        """Where an entry goes: the URL's key, or a vary record there and it at its variant."""
        vary = entry["vary"]
        primary = Rules.primary_key(request)
        if not vary:
            return {primary: entry}
        return {primary: {"kind": "vary", "vary": vary}, Rules.variant_key(request, vary): entry}

    def lookup(self, request: Request) -> Generator[Key, Any, tuple[Any, Key]]:
        """Plan of a read: yields the keys to read, receives what each holds (None for nothing).

        Returns what was found (None, a stale or a fresh entry) and the key
        this request's response lives at, as far as is known.
        """
        primary = self.primary_key(request)
        found = yield primary
        if isinstance(found, dict) and found.get("kind") == "vary":
            key = self.variant_key(request, found["vary"])
            return (yield key), key
        return found, primary

    def fresh(self, entry: Any) -> bool:
        """True for a stored response still within its TTL."""
        return self._live(entry, "response")

    def passing(self, entry: Any) -> bool:
        """True for a live pass marker: ask the app directly, without waiting for another."""
        return self._live(entry, "pass")

    def _live(self, entry: Any, kind: str) -> bool:
        return (
            isinstance(entry, dict)
            and entry.get("kind") == kind
            and self.clock() - entry["stored"] < entry["ttl"]
        )

    @staticmethod
    def is_response(entry: dict[str, Any] | None) -> bool:
        """True for a stored response (not a pass marker nor a vary record)."""
        return entry is not None and entry.get("kind") == "response"

    def serve(self, request: Request, entry: dict[str, Any]) -> Served:
        """The response for ``request`` from a stored entry: ``Age`` set, 304 when it matches."""
        age = max(0, int(self.clock() - entry["stored"]))
        headers: Headers = [(k, v) for k, v in entry["headers"]]
        headers.append(("Age", str(age)))
        return self.answer(request, entry["status"], headers, entry["body"])

    def answer(self, request: Request, status: int, headers: Headers, body: bytes) -> Served:
        """``status, headers, body``, or 304 when ``If-None-Match`` names its ETag."""
        etag = header(headers, "etag")
        if status == 200 and etag and etag_matches(request.headers.get("if-none-match", ""), etag):
            return Served(
                304,
                [
                    (k, v)
                    for k, v in headers
                    if k.lower() in _NOT_MODIFIED_FIELDS or k.lower() == "age"
                ],
                b"",
            )
        return Served(status, headers, b"" if request.method == "HEAD" else body)

    def outgoing(self, request: Request, headers: Headers) -> Headers:
        """A passed-through response's fields: tags moved to ``Surrogate-Key``."""
        tags = self._tags(request, headers)
        out = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("surrogate-key", self.tags_header.lower())
        ]
        if tags:
            out.append(("Surrogate-Key", " ".join(tags)))
        return out

    def _tags(self, request: Request, headers: Headers) -> list[str]:
        found = re.split(r"[\s,]+", header(headers, self.tags_header.lower()))
        if self.tags is not None:
            found.extend(self.tags(request.target.partition("?")[0], headers))
        tags: list[str] = []
        for tag in found:
            if tag and tag not in tags:
                if re.search(r"[\s,\x00-\x1f\x7f]", tag):
                    log.warning("tag %r has a separator or a control character: dropped", tag)
                    continue
                tags.append(tag)
        return tags
