"""The stored-value envelope: the one encoder and decoder of what a copy in Redis holds."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..tiers.base import UNDECODABLE, Hit, Undecodable

__all__ = [
    "HEADER_SIZE",
    "LUA",
    "PLAIN",
    "STAMPED_SIZE",
    "VERSIONED",
    "VERSION_DIGITS",
    "open_many",
    "open_one",
    "open_versioned",
    "open_versioned_pairs",
    "seal",
]

# A copy is a kind byte, the absolute expiry in Unix milliseconds (0: none),
# then the serializer's bytes. The expiry rides along so that one GET tells a
# reader how long the copy has left (backfill must never outlive the layer it
# came from) without a second command.
_HEADER = struct.Struct(">cQ")
HEADER_SIZE = _HEADER.size
"""Bytes before the payload of a plain copy: kind and expiry."""

PLAIN = b"T"
"""Kind of a plain copy: header, then payload."""

VERSIONED = b"V"
"""Kind of a versioned copy: header, the key's version as ASCII digits, then payload."""

VERSION_DIGITS = 16
"""Width of the zero-padded decimal version a versioned copy carries after its header."""

STAMPED_SIZE = HEADER_SIZE + VERSION_DIGITS
"""Bytes before the payload of a versioned copy."""

_PLAIN_BYTE = PLAIN[0]
_unpack_header = _HEADER.unpack_from

LUA = f"""
local function version_text(v)
  return string.format('%0{VERSION_DIGITS}d', v)
end
local function stamped(blob, v)
  return string.sub(blob, 1, {HEADER_SIZE}) .. version_text(v)
    .. string.sub(blob, {HEADER_SIZE + 1})
end
"""
"""The envelope's Lua side, for the scripts: a version's text, and a sealed copy stamped with it.

Python seals a versioned copy with no version (the script knows it); the
script splices the version in after the header. Both sides are generated
from the constants above, so they cannot drift apart.
"""


def seal(kind: bytes, payload: bytes, expires_ms: int) -> bytes:
    """A copy of ``payload`` that expires at ``expires_ms`` (Unix ms; 0: never)."""
    return _HEADER.pack(kind, expires_ms) + payload


def open_one(raw: bytes, now_ms: float) -> Hit | Undecodable | None:
    """A plain copy's payload and remaining TTL; None once expired; UNDECODABLE if not ours."""
    if len(raw) < HEADER_SIZE or raw[0] != _PLAIN_BYTE:
        return UNDECODABLE
    expires_ms = _unpack_header(raw)[1]
    if not expires_ms:
        return (raw[HEADER_SIZE:], None)
    remaining = (expires_ms - now_ms) / 1000.0
    # Expired in our clock: Redis drops it within its own resolution.
    return (raw[HEADER_SIZE:], remaining) if remaining > 0 else None


def open_many(raws: Sequence[bytes | None], now_ms: float) -> list[Hit | Undecodable | None]:
    """``open_one`` for each reply of a GET or MGET, None for each absent key."""
    # open_one inlined: this loop is get_many's whole cost beside the round trip.
    out: list[Hit | Undecodable | None] = []
    append = out.append
    for raw in raws:
        if raw is None:
            append(None)
        elif len(raw) < HEADER_SIZE or raw[0] != _PLAIN_BYTE:
            append(UNDECODABLE)
        else:
            expires_ms = _unpack_header(raw)[1]
            if not expires_ms:
                append((raw[HEADER_SIZE:], None))
            else:
                remaining = (expires_ms - now_ms) / 1000.0
                append((raw[HEADER_SIZE:], remaining) if remaining > 0 else None)
    return out


def open_versioned(
    copy: bytes | None, version: bytes | None, now_ms: float
) -> Hit | Undecodable | None:
    """A versioned copy's payload and remaining TTL, if it carries ``version`` (the key's)."""
    if copy is None or version is None:
        return None  # no copy, or no current version: nothing is reachable
    if copy[:1] != VERSIONED or len(copy) < STAMPED_SIZE:
        # A plain copy holds no version (written before a swap to Versioned): unreachable.
        return None if copy[:1] == PLAIN else UNDECODABLE
    if copy[HEADER_SIZE:STAMPED_SIZE] != version:
        return None  # an older version's copy
    expires_ms = _unpack_header(copy)[1]
    if not expires_ms:
        return (copy[STAMPED_SIZE:], None)
    remaining = (expires_ms - now_ms) / 1000.0
    return (copy[STAMPED_SIZE:], remaining) if remaining > 0 else None


def open_versioned_pairs(
    raws: Sequence[bytes | None], now_ms: float
) -> list[Hit | Undecodable | None]:
    """``open_versioned`` for an MGET of ``copy, version, copy, version, ...``."""
    return [open_versioned(raws[i], raws[i + 1], now_ms) for i in range(0, len(raws), 2)]
