"""Redis key names derived from a tier key: the stored key, its fill lease, its version key."""

from __future__ import annotations

from ..keys import MAX_KEY_LENGTH, hash_long_key

__all__ = ["glob_escape", "lease_key", "redis_key", "version_key"]


def redis_key(key: str) -> str:
    """The key a copy is stored under: the tier key, hashed when it is too long for Redis."""
    return key if len(key) <= MAX_KEY_LENGTH else hash_long_key(key)


def lease_key(rkey: str) -> str:
    """``prefix:#lease:rest``: under the cache's prefix, outside every namespace's keys."""
    head, _, rest = rkey.partition(":")
    return f"{head}:#lease:{rest}"


def version_key(rkey: str) -> str:
    """``prefix:#kv:rest``: a key's version under Versioned, beside its lease key."""
    head, _, rest = rkey.partition(":")
    return f"{head}:#kv:{rest}"


def glob_escape(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
