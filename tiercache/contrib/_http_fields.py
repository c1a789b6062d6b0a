"""HTTP header fields as the middlewares read them: Cache-Control, Vary, ETag matching."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = [
    "Headers",
    "Key",
    "directives",
    "etag_matches",
    "fold",
    "header",
    "strong_etag",
    "vary_fields",
]

Key = tuple[str, ...]
"""A cache key of the middlewares: a tuple, so method, host and target never run together."""

Headers = list[tuple[str, str]]
"""Header fields in order, names as sent; the same name may repeat."""

_DIRECTIVE = re.compile(r'\s*([^\s=,]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?\s*(?:,|$)')


def directives(value: str) -> dict[str, str]:
    """``Cache-Control`` directives, lowercased, to their (unquoted) arguments ('' for none)."""
    out: dict[str, str] = {}
    for name, arg in _DIRECTIVE.findall(value):
        out.setdefault(name.lower(), arg[1:-1] if arg.startswith('"') else arg)
    return out


def header(headers: Iterable[tuple[str, str]], name: str) -> str:
    """Every field ``name`` (lowercase) of ``headers``, joined by ", "; '' when absent."""
    return ", ".join(v for k, v in headers if k.lower() == name)


def fold(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Request header fields by lowercased name, repeated fields joined by ", "."""
    out: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def strong_etag(body: bytes) -> str:
    """A strong ETag: a hash of the body, so equal bodies in every process get equal tags."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 section 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    want = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == want for tag in if_none_match.split(","))


def vary_fields(headers: Headers) -> list[str]:
    """The lowercased field names a response varies on, sorted; ``*`` as itself."""
    return sorted({v.strip().lower() for v in header(headers, "vary").split(",") if v.strip()})
