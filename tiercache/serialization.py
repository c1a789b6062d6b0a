"""Serializer protocol; msgpack by default; a leading format-version byte.

Every encoded value starts with one byte naming its format, so a reader can
refuse bytes it did not write (another program's, an older format) instead
of misreading them. pickle is never a default: a shared Redis must not become
a remote-code-execution path, so :class:`PickleSerializer` requires an HMAC
key and checks it before unpickling.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import json
import pickle
import uuid
from typing import Any, Protocol, runtime_checkable

import msgpack

from .errors import ConfigurationError, SerializationError

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "Signing",
    "signing_context",
]

FORMAT_MSGPACK = 0x01
FORMAT_JSON = 0x02
FORMAT_PICKLE = 0x03

# msgpack extension type codes (0-127 are the application's).
_EXT_DATETIME = 1  # ISO 8601 text: keeps naive vs aware and the exact offset
_EXT_DATE = 2
_EXT_DECIMAL = 3
_EXT_UUID = 4
_EXT_SET = 5
_EXT_TUPLE = 6
_EXT_FROZENSET = 7


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes that start with the serializer's format byte."""

    format_id: int

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise ``SerializationError`` when it cannot be."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes from ``dumps``; raise ``SerializationError`` on anything else."""
        ...


@runtime_checkable
class Signing(Protocol):
    """A serializer that binds each value to where it is stored (capability of a Serializer).

    Checked once at wiring: a namespace whose serializer is ``Signing`` calls
    ``dumps_for``/``loads_for`` with :func:`signing_context` of the entry
    instead of ``dumps``/``loads``, so a value copied to another key,
    namespace or cache prefix is refused.
    """

    def dumps_for(self, value: Any, context: bytes) -> bytes:
        """Encode ``value`` bound to ``context``; raise ``SerializationError`` when it cannot be."""
        ...

    def loads_for(self, data: bytes, context: bytes) -> Any:
        """Decode bytes bound to ``context``; raise ``SerializationError`` for any other."""
        ...


_CONTEXT_TAG = b"tiercache-entry-v1\x00"


def signing_context(prefix: str, namespace: str, key: str) -> bytes:
    """Return the identity a signed value is bound to: cache prefix, namespace and key.

    ``key`` is the entry's canonical key as it appears in the tier key after
    ``prefix:namespace:`` (without a version segment): what names the entry
    whatever version it is stored under. Each part is length-prefixed, so no
    two different triples give the same bytes, whatever characters they hold;
    the leading tag keeps these contexts apart from any other use of the HMAC
    key (the bare ``namespace:key`` contexts of tiercache 0.1 included).
    """
    parts = [_CONTEXT_TAG]
    for part in (prefix, namespace, key):
        raw = part.encode("utf-8", "surrogatepass")
        parts.append(len(raw).to_bytes(4, "big"))
        parts.append(raw)
    return b"".join(parts)


class MsgpackSerializer:
    """msgpack with extension types for datetime, date, Decimal, UUID, set and tuple.

    Types come back as they went in: a tuple stays a tuple, a set a set, an
    aware datetime keeps its offset. Anything else msgpack cannot encode
    natively (custom classes, ``dict`` subclasses, ...) is refused.
    """

    format_id = FORMAT_MSGPACK
    _header = bytes([FORMAT_MSGPACK])

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def dumps(self, value: Any) -> bytes:
        kind = type(value)
        if kind is bytearray or kind is memoryview:
            # msgpack would store them as bytes, and they would come back as bytes.
            raise SerializationError(f"{type(value).__name__} would come back as bytes; pass bytes")
        try:
            return self._header + _pack_inner(value)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot encode {type(value).__name__}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        if data[:1] != self._header:
            raise SerializationError("not a tiercache msgpack value (format byte mismatch)")
        try:
            # A slice copy: cheaper than a memoryview for the small values caches hold.
            return _unpackb(data[1:], ext_hook=_from_ext, raw=False, strict_map_key=False)
        except SerializationError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types
            raise SerializationError(f"cannot decode msgpack value: {exc}") from exc

    def loads_many(self, blobs: list[bytes]) -> list[Any]:
        """Decode a batch in one pass; SerializationError if any one is not ours."""
        try:
            return [
                _unpackb(b[1:], ext_hook=_from_ext, raw=False, strict_map_key=False)
                if b[0] == FORMAT_MSGPACK else _refuse()
                for b in blobs
            ]
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"cannot decode msgpack value: {exc}") from exc


_unpackb = msgpack.unpackb


def _refuse() -> Any:
    raise SerializationError("not a tiercache msgpack value (format byte mismatch)")


# Idle packers. ``msgpack.packb`` builds a Packer, and its 256 KiB buffer, on
# every call: most of the cost of packing a small value. A packer is popped
# for one ``pack`` and put back after, so threads never share one and a nested
# pack (``_to_ext`` packing a tuple's items) takes another. list.pop and
# list.append are atomic. A packer whose ``pack`` raised is not put back, nor
# one that grew past ``_PACKER_KEEP_BYTES`` (its buffer does not shrink).
_packers: list[msgpack.Packer] = []
_PACKERS_KEPT = 8
_PACKER_KEEP_BYTES = 1 << 16


def _pack_inner(value: Any) -> bytes:
    try:
        packer = _packers.pop()
    except IndexError:
        packer = msgpack.Packer(default=_to_ext, strict_types=True, use_bin_type=True,
                                buf_size=1024)
    packed: bytes = packer.pack(value)
    if len(packed) <= _PACKER_KEEP_BYTES and len(_packers) < _PACKERS_KEPT:
        _packers.append(packer)
    return packed


def _to_ext(obj: Any) -> msgpack.ExtType:
    kind = type(obj)
    if kind is tuple:
        return msgpack.ExtType(_EXT_TUPLE, _pack_inner(list(obj)))
    if kind is dt.datetime:
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
    if kind is dt.date:
        return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())
    if kind is decimal.Decimal:
        return msgpack.ExtType(_EXT_DECIMAL, str(obj).encode())
    if kind is uuid.UUID:
        return msgpack.ExtType(_EXT_UUID, obj.bytes)
    if kind is set:
        return msgpack.ExtType(_EXT_SET, _pack_inner(list(obj)))
    if kind is frozenset:
        return msgpack.ExtType(_EXT_FROZENSET, _pack_inner(list(obj)))
    raise SerializationError(f"msgpack serializer cannot encode {kind.__name__}: {obj!r:.80}")


def _unpack_inner(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_from_ext, raw=False, strict_map_key=False)


def _from_ext(code: int, data: bytes) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_unpack_inner(data))
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _EXT_DECIMAL:
        return decimal.Decimal(data.decode())
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == _EXT_SET:
        return set(_unpack_inner(data))
    if code == _EXT_FROZENSET:
        return frozenset(_unpack_inner(data))
    raise SerializationError(f"unknown msgpack extension type {code}")


class JSONSerializer:
    """JSON (UTF-8): readable by other programs; no tuples, sets or datetimes."""

    format_id = FORMAT_JSON
    _header = bytes([FORMAT_JSON])

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def dumps(self, value: Any) -> bytes:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            kind = type(value).__name__
            raise SerializationError(f"cannot encode {kind} as JSON: {exc}") from exc
        return self._header + text.encode("utf-8")

    def loads(self, data: bytes) -> Any:
        if not data or data[0] != FORMAT_JSON:
            raise SerializationError("not a tiercache JSON value (format byte mismatch)")
        try:
            return json.loads(bytes(memoryview(data)[1:]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerializationError(f"cannot decode JSON value: {exc}") from exc


class PickleSerializer:
    """pickle, signed: opt-in, and only with an HMAC key shared by every reader.

    The HMAC-SHA256 over the format byte, the context and the payload is
    checked with :func:`hmac.compare_digest` before anything is unpickled, so
    bytes that someone else planted in Redis, or a signed value copied to
    another key, are refused without being executed. A namespace passes
    :func:`signing_context` (cache prefix, namespace, key) as the context, so
    two caches sharing one Redis and one HMAC key (two tenants under two
    prefixes) refuse each other's values too. ``dumps``/``loads`` sign for the
    empty context, which no entry of a namespace uses.
    """

    format_id = FORMAT_PICKLE
    _header = bytes([FORMAT_PICKLE])
    _digest_size = hashlib.sha256().digest_size

    def __init__(
        self, *, hmac_key: bytes | None = None, protocol: int = pickle.HIGHEST_PROTOCOL
    ) -> None:
        if not isinstance(hmac_key, bytes) or len(hmac_key) < 16:
            raise ConfigurationError("PickleSerializer needs hmac_key=: at least 16 bytes")
        self._key = hmac_key
        self._protocol = protocol

    def __repr__(self) -> str:
        return f"PickleSerializer(hmac_key=<{len(self._key)} bytes>)"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PickleSerializer)
            and hmac.compare_digest(self._key, other._key)
            and self._protocol == other._protocol
        )

    def __hash__(self) -> int:
        return hash((PickleSerializer, self._protocol))

    def _sign(self, payload: bytes, context: bytes) -> bytes:
        mac = hmac.new(self._key, self._header, hashlib.sha256)
        mac.update(len(context).to_bytes(4, "big") + context)
        mac.update(payload)
        return mac.digest()

    def dumps(self, value: Any) -> bytes:
        return self.dumps_for(value, b"")

    def loads(self, data: bytes) -> Any:
        return self.loads_for(data, b"")

    def dumps_for(self, value: Any, context: bytes) -> bytes:
        """Encode ``value`` signed for ``context``, :func:`signing_context` of its entry.

        Raises:
            SerializationError: ``value`` cannot be pickled.
        """
        try:
            payload = pickle.dumps(value, protocol=self._protocol)
        except Exception as exc:  # pickling can raise nearly anything
            raise SerializationError(f"cannot pickle {type(value).__name__}: {exc}") from exc
        return self._header + self._sign(payload, context) + payload

    def loads_for(self, data: bytes, context: bytes) -> Any:
        """Decode bytes signed for ``context``; refuse (unread) any other signature.

        Raises:
            SerializationError: not a pickle value, signed for another context
                or key (nothing is unpickled), or the payload cannot be unpickled.
        """
        if not data or data[0] != FORMAT_PICKLE:
            raise SerializationError("not a tiercache pickle value (format byte mismatch)")
        start = 1 + self._digest_size
        signature, payload = data[1:start], data[start:]
        if not hmac.compare_digest(signature, self._sign(payload, context)):
            raise SerializationError("pickle value has a bad signature; refused unread")
        try:
            # Only after the HMAC matched: these bytes are ours, not a stranger's.
            return pickle.loads(payload)  # noqa: S301
        except Exception as exc:
            raise SerializationError(f"cannot unpickle value: {exc}") from exc
