"""Serializers: exact round trips, refusals, format bytes, and a pickle that cannot be planted."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import uuid
from collections import Counter, OrderedDict, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache as tc
from tiercache.errors import ConfigurationError, SerializationError
from tiercache.serialization import (
    FORMAT_JSON,
    FORMAT_MSGPACK,
    FORMAT_PICKLE,
    JSONSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Signing,
    signing_context,
)

HMAC_KEY = b"0123456789abcdef-test-key"


def same(a: Any, b: Any) -> bool:
    """Equal values of identical types, all the way down (True is not 1, a tuple not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, dt.datetime):
        same_kind = (a.tzinfo is None) == (b.tzinfo is None)
        return a == b and a.utcoffset() == b.utcoffset() and same_kind
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        typed_b = {(type(k), k): v for k, v in b.items()}
        return all((type(k), k) in typed_b and same(v, typed_b[(type(k), k)]) for k, v in a.items())
    if isinstance(a, (set, frozenset)):
        return {(type(x), x) for x in a} == {(type(x), x) for x in b}
    return bool(a == b)


def round_trip(value: Any, serializer: Any = None) -> Any:
    serializer = serializer or MsgpackSerializer()
    data = serializer.dumps(value)
    assert isinstance(data, bytes)
    return serializer.loads(data)


# -- msgpack: every supported type ---------------------------------------------

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NEG = dt.timezone(dt.timedelta(hours=-3, minutes=-15))

SUPPORTED = {
    "aware datetime +05:30": dt.datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=IST),
    "aware datetime -03:15": dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=NEG),
    "aware datetime UTC": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    "naive datetime": dt.datetime(2026, 3, 1, 12, 30, 45, 7),
    "datetime min": dt.datetime.min,
    "date": dt.date(2024, 2, 29),
    "Decimal 1.10": Decimal("1.10"),
    "Decimal big": Decimal("-12345678901234567890.000000000000000001"),
    "Decimal exp": Decimal("1E+30"),
    "Decimal -0": Decimal("-0"),
    "Decimal NaN": Decimal("NaN"),
    "Decimal inf": Decimal("-Infinity"),
    "UUID": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "set": {1, "a", (1, 2)},
    "empty set": set(),
    "frozenset": frozenset({"x", 2, frozenset({3})}),
    "tuple": (1, "a", b"b", None),
    "empty tuple": (),
    "nested tuple": ((1, (2, (3, ()))), [4, (5,)]),
    "tuple dict keys": {(1, "a"): "x", ((1, 2), 3): [1], "plain": (1,)},
    "int dict keys": {1: "a", -2: "b", 2**63: "c"},
    "bytes": b"\x00\xff\x01binary",
    "empty bytes": b"",
    "None": None,
    "True": True,
    "False": False,
    "big int": 2**64 - 1,
    "small int": -(2**63),
    "zero": 0,
    "float": 3.141592653589793,
    "negative zero": -0.0,
    "inf": float("inf"),
    "-inf": float("-inf"),
    "nan": float("nan"),
    "str": "héllo \u2603 \U0001f600",
    "empty str": "",
    "nested": {
        "when": dt.datetime(2026, 5, 5, 5, 5, tzinfo=IST),
        "items": [{"id": uuid.UUID(int=7), "price": Decimal("9.90"), "tags": {"a", "b"}}],
        "pair": (dt.date(2020, 1, 1), frozenset({1})),
        "deep": [[[[{"k": (True, None, 1.5)}]]]],
    },
    "list of mixed": [1, "1", b"1", (1,), {1}, None, True, 1.0],
}


@pytest.mark.parametrize("value", list(SUPPORTED.values()), ids=list(SUPPORTED))
def test_msgpack_round_trips_value_and_types(value: Any) -> None:
    """Every supported value comes back equal and with the very same types."""
    assert same(round_trip(value), value)


def test_aware_datetime_keeps_its_exact_offset() -> None:
    """An aware datetime with a non-UTC offset keeps that offset, not just the instant."""
    value = dt.datetime(2026, 3, 1, 12, 0, tzinfo=IST)
    back = round_trip(value)
    assert back.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert back.hour == 12


def test_naive_datetime_stays_naive() -> None:
    """A naive datetime does not gain a timezone."""
    assert round_trip(dt.datetime(2026, 3, 1, 12, 0)).tzinfo is None


def test_date_does_not_become_datetime() -> None:
    """A date comes back as a date, a datetime as a datetime."""
    assert type(round_trip(dt.date(2020, 1, 2))) is dt.date
    assert type(round_trip(dt.datetime(2020, 1, 2))) is dt.datetime


def test_decimal_keeps_precision() -> None:
    """Decimal("1.10") comes back as "1.10", not 1.1."""
    back = round_trip(Decimal("1.10"))
    assert str(back) == "1.10"
    assert back.as_tuple() == Decimal("1.10").as_tuple()


def test_tuple_as_dict_key_stays_hashable_tuple() -> None:
    """A tuple used as a dict key comes back as a tuple key (usable for lookups)."""
    back = round_trip({(1, ("a", b"b")): 1})
    assert back[(1, ("a", b"b"))] == 1


def test_bool_is_not_confused_with_int() -> None:
    """True stays True (not 1) and 1 stays 1 (not True), also inside containers."""
    back = round_trip([True, 1, False, 0])
    assert [type(x) for x in back] == [bool, int, bool, int]


# -- msgpack: a property -------------------------------------------------------

_hashables = st.one_of(st.text(max_size=8, alphabet=st.characters(codec="utf-8")),
                       st.integers(-(2**63), 2**64 - 1))
_tz = st.one_of(
    st.none(),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=16),
    st.binary(max_size=16),
    st.datetimes(timezones=_tz),
    st.dates(),
    st.decimals(allow_nan=True),
    st.uuids(),
    st.sets(_hashables, max_size=4),
    st.frozensets(_hashables, max_size=4),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(
            st.one_of(_hashables, st.tuples(_hashables, _hashables)), inner, max_size=4
        ),
    )


@settings(max_examples=300, deadline=None)
@given(st.recursive(_scalars, _containers, max_leaves=12))
def test_msgpack_round_trip_property(value: Any) -> None:
    """Any value built from supported types round-trips to an equal value of the same types."""
    assert same(round_trip(value), value)


# -- msgpack: refusals ---------------------------------------------------------


class Custom:
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MyStr(str):
    pass


class MyInt(int):
    pass


UNSUPPORTED = {
    "object()": object(),
    "custom class": Custom(),
    "dict subclass": MyDict(a=1),
    "OrderedDict": OrderedDict(a=1),
    "defaultdict": defaultdict(int),
    "Counter": Counter("aab"),
    "list subclass": MyList([1]),
    "str subclass": MyStr("a"),
    "int subclass": MyInt(1),
    "int too big": 2**64,
    "int too small": -(2**63) - 1,
    "complex": 1j,
    "function": round_trip,
    "class": Custom,
    "nested bad": {"ok": [1, 2, {"bad": object()}]},
    "bad in tuple": (1, Custom()),
    "bad in set": {1, Custom()},
    "timedelta": dt.timedelta(seconds=1),
    "time": dt.time(12, 0),
}


@pytest.mark.parametrize("value", list(UNSUPPORTED.values()), ids=list(UNSUPPORTED))
def test_msgpack_refuses_unsupported_values(value: Any) -> None:
    """Values msgpack cannot round-trip exactly raise SerializationError, nothing else."""
    with pytest.raises(SerializationError):
        MsgpackSerializer().dumps(value)


@pytest.mark.parametrize(
    "value", [bytearray(b"ab"), memoryview(b"ab")], ids=["bytearray", "memoryview"]
)
def test_bytes_like_values_are_refused_or_keep_their_type(value: Any) -> None:
    """bytearray/memoryview are refused, or come back as the same type (never silently as bytes)."""
    ser = MsgpackSerializer()
    try:
        data = ser.dumps(value)
    except SerializationError:
        return
    back = ser.loads(data)
    assert type(back) is type(value), f"{type(value).__name__} came back as {type(back).__name__}"


# -- msgpack: the packer pool -------------------------------------------------


def test_a_failed_pack_leaves_no_bytes_behind_for_the_next_value() -> None:
    """A value refused halfway (after some of it was packed) does not leak into the next one."""
    ser = MsgpackSerializer()
    for bad in UNSUPPORTED.values():
        with pytest.raises(SerializationError):
            ser.dumps(bad)
        data = ser.dumps([1, "two", (3,)])
        assert data == ser.dumps([1, "two", (3,)])
        assert ser.loads(data) == [1, "two", (3,)]


def test_nested_ext_values_pack_as_packb_would() -> None:
    """Tuples and sets inside tuples pack through other packers: the outer one is not disturbed."""
    value = {"t": (1, (2, frozenset({3})), {4}), "u": [uuid.UUID(int=5), (dt.date(2026, 1, 2),)]}
    data = MsgpackSerializer().dumps(value)
    assert same(MsgpackSerializer().loads(data), value)


def test_packers_are_not_shared_between_threads(in_threads: Any) -> None:
    """Threads packing at once each get their own bytes (8 threads x 2,000 values, bounded)."""
    ser = MsgpackSerializer()
    wrong: list[tuple[int, int]] = []

    def worker(n: int) -> None:
        for i in range(2_000):
            value = {"thread": n, "i": i, "pad": "x" * (i % 300), "t": (n, i)}
            if ser.loads(ser.dumps(value)) != value:
                wrong.append((n, i))

    in_threads(worker, 8)
    assert wrong == []


def test_a_packer_that_packed_a_large_value_is_not_kept() -> None:
    """Buffers do not shrink: a packer grown by a large value is dropped, not pooled."""
    from tiercache import serialization

    ser = MsgpackSerializer()
    ser.dumps(1)  # at least one packer in the pool
    kept = list(serialization._packers)
    serialization._packers.clear()
    try:
        ser.dumps(b"x" * (serialization._PACKER_KEEP_BYTES + 1))
        assert serialization._packers == []
        ser.dumps(b"x" * 100)
        assert len(serialization._packers) == 1
    finally:
        serialization._packers[:] = kept


def test_serialization_error_is_a_tiercache_error() -> None:
    """SerializationError is caught by `except TiercacheError`."""
    with pytest.raises(tc.TiercacheError):
        MsgpackSerializer().dumps(object())


# -- format bytes --------------------------------------------------------------


def test_each_serializer_writes_its_format_byte() -> None:
    """The first byte of every encoded value names its format."""
    assert MsgpackSerializer().dumps(1)[0] == FORMAT_MSGPACK
    assert JSONSerializer().dumps(1)[0] == FORMAT_JSON
    assert PickleSerializer(hmac_key=HMAC_KEY).dumps(1)[0] == FORMAT_PICKLE
    assert len({FORMAT_MSGPACK, FORMAT_JSON, FORMAT_PICKLE}) == 3


def _serializers() -> list[Any]:
    return [MsgpackSerializer(), JSONSerializer(), PickleSerializer(hmac_key=HMAC_KEY)]


@pytest.mark.parametrize("reader", _serializers(), ids=["msgpack", "json", "pickle"])
@pytest.mark.parametrize("writer", _serializers(), ids=["msgpack", "json", "pickle"])
def test_loads_refuses_another_formats_bytes(reader: Any, writer: Any) -> None:
    """Bytes written by one serializer are refused by every other one."""
    data = writer.dumps({"a": 1})
    if type(reader) is type(writer):
        assert reader.loads(data) == {"a": 1}
    else:
        with pytest.raises(SerializationError):
            reader.loads(data)


GARBAGE = {
    "empty": b"",
    "format byte only": bytes([FORMAT_MSGPACK]),
    "never-used msgpack byte": bytes([FORMAT_MSGPACK, 0xC1]),
    "truncated map": bytes([FORMAT_MSGPACK]) + msgpack.packb({"a": [1, 2, 3]})[:-2],
    "trailing data": bytes([FORMAT_MSGPACK]) + msgpack.packb(1) + b"\x01",
    "unknown ext code": bytes([FORMAT_MSGPACK]) + msgpack.packb(msgpack.ExtType(99, b"x")),
    "bad datetime ext": bytes([FORMAT_MSGPACK]) + msgpack.packb(msgpack.ExtType(1, b"not a date")),
    "bad decimal ext": bytes([FORMAT_MSGPACK]) + msgpack.packb(msgpack.ExtType(3, b"1.2.3")),
    "bad uuid ext": bytes([FORMAT_MSGPACK]) + msgpack.packb(msgpack.ExtType(4, b"short")),
    "bad set ext": bytes([FORMAT_MSGPACK]) + msgpack.packb(msgpack.ExtType(5, b"\xc1")),
    "unhashable set ext": bytes([FORMAT_MSGPACK])
    + msgpack.packb(msgpack.ExtType(5, msgpack.packb([[1]]))),
    "plain text": b"hello, I am another program",
    "raw msgpack, no format byte": msgpack.packb({"a": 1}),
    "random": bytes(range(256)),
}


@pytest.mark.parametrize("data", list(GARBAGE.values()), ids=list(GARBAGE))
def test_msgpack_loads_refuses_garbage(data: bytes) -> None:
    """Empty, truncated, foreign or malformed bytes raise SerializationError, nothing else."""
    with pytest.raises(SerializationError):
        MsgpackSerializer().loads(data)


# -- JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -5, 2**70, 1.5, "héllo", [], {}, [1, "a", None], {"a": {"b": [1, 2.5, None]}}],
    ids=repr,
)
def test_json_round_trips_json_types(value: Any) -> None:
    """JSON types come back equal and of the same type."""
    assert same(round_trip(value, JSONSerializer()), value)


def test_json_tuples_come_back_as_lists() -> None:
    """JSON has no tuples: a tuple is written as an array (a documented limit)."""
    assert round_trip((1, 2), JSONSerializer()) == [1, 2]


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), {1, 2}, b"x", object(), dt.date(2020, 1, 1), Decimal("1.5")],
    ids=repr,
)
def test_json_refuses_what_it_cannot_encode(value: Any) -> None:
    """NaN, infinities, sets, bytes, dates, Decimals and objects raise SerializationError."""
    with pytest.raises(SerializationError):
        JSONSerializer().dumps(value)


@pytest.mark.parametrize(
    "data",
    [b"", bytes([FORMAT_JSON]), bytes([FORMAT_JSON]) + b"{", bytes([FORMAT_JSON]) + b"\xff\xfe",
     b'{"a": 1}'],
    ids=["empty", "header only", "truncated", "bad utf-8", "no format byte"],
)
def test_json_loads_refuses_garbage(data: bytes) -> None:
    """Malformed or foreign bytes raise SerializationError."""
    with pytest.raises(SerializationError):
        JSONSerializer().loads(data)


# -- pickle ----------------------------------------------------------------------

EXECUTED: list[str] = []


def _side_effect(marker: str, path: str) -> str:
    """What a planted payload runs when unpickled: a list append and a file creation."""
    EXECUTED.append(marker)
    Path(path).write_text("pwned")
    return marker


class Planted:
    """A pickle payload that runs code on load."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_side_effect, ("pwned", self.path))


@pytest.fixture
def planted(tmp_path: Path) -> Any:
    EXECUTED.clear()
    marker = tmp_path / "pwned.txt"
    yield Planted(marker), marker
    EXECUTED.clear()


def test_pickle_round_trips_python_objects() -> None:
    """Signed pickle round-trips objects msgpack refuses (e.g. a Counter)."""
    ser = PickleSerializer(hmac_key=HMAC_KEY)
    value = {"c": Counter("aab"), "t": dt.timedelta(3), "o": OrderedDict(a=(1, 2))}
    assert ser.loads(ser.dumps(value)) == value


@pytest.mark.parametrize(
    "key", [None, b"", b"short", "a text key of 32 chars.........", 12345, bytearray(b"x" * 32)],
    ids=repr,
)
def test_pickle_refuses_a_missing_or_weak_hmac_key(key: Any) -> None:
    """hmac_key must be at least 16 bytes: anything else raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        PickleSerializer(hmac_key=key)


def test_pickle_has_no_keyless_default() -> None:
    """PickleSerializer() without hmac_key is refused with a ConfigurationError."""
    with pytest.raises(tc.ConfigurationError, match="hmac_key"):
        PickleSerializer()


def test_the_planted_payload_is_live_when_correctly_signed(planted: Any) -> None:
    """Control: the payload really runs when the signature is right (so refusals mean something)."""
    payload, marker = planted
    ser = PickleSerializer(hmac_key=HMAC_KEY)
    assert ser.loads(ser.dumps(payload)) == "pwned"
    assert EXECUTED == ["pwned"] and marker.exists()


def _forged(payload: Any) -> dict[str, bytes]:
    raw = pickle.dumps(payload)
    header = bytes([FORMAT_PICKLE])
    ours = PickleSerializer(hmac_key=HMAC_KEY)
    other = PickleSerializer(hmac_key=b"another-key-of-16+bytes")
    return {
        "no signature": header + raw,
        "zero signature": header + b"\x00" * 32 + raw,
        "signed with another key": other.dumps(payload),
        "truncated signature": header + b"\x01" * 5,
        "good signature, payload swapped": ours.dumps("harmless")[:33] + raw,
    }


@pytest.mark.parametrize(
    "variant",
    ["no signature", "zero signature", "signed with another key", "truncated signature",
     "good signature, payload swapped"],
)
def test_pickle_refuses_planted_payload_without_executing_it(planted: Any, variant: str) -> None:
    """A payload with an absent or wrong signature raises SerializationError and never runs."""
    payload, marker = planted
    data = _forged(payload)[variant]
    EXECUTED.clear()
    with pytest.raises(SerializationError):
        PickleSerializer(hmac_key=HMAC_KEY).loads(data)
    assert EXECUTED == []
    assert not marker.exists()


def test_pickle_planted_in_redis_is_a_miss_and_never_runs(
    planted: Any, redis_url: str, redis_client: Any, prefix: str
) -> None:
    """Forged pickle bytes planted in Redis are read as a miss (counted), not executed."""
    import struct

    payload, marker = planted
    data = _forged(payload)["signed with another key"]
    EXECUTED.clear()
    redis_client.set(f"{prefix}:ns:s:k", b"T" + struct.pack(">Q", 0) + data)
    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, bus=False) as cache:
        ns = cache.namespace("ns", serializer=PickleSerializer(hmac_key=HMAC_KEY))
        assert ns.get("k", default="absent") == "absent"
        assert ns.stats()["tiers"]["L1:redis"]["undecodable"] == 1
    assert EXECUTED == [] and not marker.exists()


def test_pickle_repr_does_not_reveal_the_key() -> None:
    """repr/str of a PickleSerializer show neither the key nor its hex."""
    key = b"super-secret-hmac-key-0042"
    ser = PickleSerializer(hmac_key=key)
    for text in (repr(ser), str(ser)):
        assert "super-secret" not in text
        assert key.hex() not in text
        assert repr(key) not in text


# -- signed pickle: the identity a value is bound to ---------------------------------


def test_signed_value_of_one_prefix_is_refused_under_another(planted: Any) -> None:
    """Two tenants (prefixes) sharing one HMAC key refuse each other's values, unread."""
    payload, marker = planted
    ser = PickleSerializer(hmac_key=HMAC_KEY)
    tenant_a = signing_context("tenant-a", "users", "s:42")
    tenant_b = signing_context("tenant-b", "users", "s:42")
    assert ser.loads_for(ser.dumps_for({"id": 42}, tenant_a), tenant_a) == {"id": 42}
    EXECUTED.clear()
    with pytest.raises(SerializationError, match="signature"):
        ser.loads_for(ser.dumps_for(payload, tenant_a), tenant_b)
    assert EXECUTED == [] and not marker.exists()


@pytest.mark.parametrize(
    "other",
    [("p", "users", "s:43"), ("p", "orders", "s:42"), ("q", "users", "s:42")],
    ids=["key", "namespace", "prefix"],
)
def test_signed_value_is_bound_to_every_part_of_its_identity(other: tuple[str, str, str]) -> None:
    """Changing the key, the namespace or the prefix alone makes the signature fail."""
    ser = PickleSerializer(hmac_key=HMAC_KEY)
    data = ser.dumps_for("v", signing_context("p", "users", "s:42"))
    with pytest.raises(SerializationError):
        ser.loads_for(data, signing_context(*other))


@pytest.mark.parametrize(
    ("one", "two"),
    [(("a:b", "c", "d"), ("a", "b:c", "d")),
     (("a", "b", "c:d"), ("a", "b:c", "d")),
     (("ab", "", "c"), ("a", "b", "c")),
     (("a\x00\x00\x00\x01b", "c", "d"), ("a", "b", "c\x00\x00\x00\x01d"))],
)
def test_signing_contexts_of_different_identities_differ(
    one: tuple[str, str, str], two: tuple[str, str, str]
) -> None:
    """No two (prefix, namespace, key) triples share a context, whatever they hold."""
    assert signing_context(*one) != signing_context(*two)


def test_values_signed_for_the_bare_namespace_and_key_are_refused() -> None:
    """A value signed for 'namespace:key' (tiercache 0.1's context) is refused for its entry."""
    ser = PickleSerializer(hmac_key=HMAC_KEY)
    old = ser.dumps_for("v", b"users:s:42")
    with pytest.raises(SerializationError):
        ser.loads_for(old, signing_context("p", "users", "s:42"))
    with pytest.raises(SerializationError):  # nor is a value signed for no context at all
        ser.loads_for(ser.dumps("v"), signing_context("p", "users", "s:42"))


def test_pickle_serializer_has_the_signing_capability() -> None:
    """PickleSerializer is Signing; the unsigned formats are not."""
    assert isinstance(PickleSerializer(hmac_key=HMAC_KEY), Signing)
    assert not isinstance(MsgpackSerializer(), Signing)
    assert not isinstance(JSONSerializer(), Signing)


def test_tenants_sharing_an_hmac_key_refuse_each_others_values(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """A value signed under one cache prefix, copied under another's, is a counted miss."""
    tenant_a, tenant_b = f"{prefix}a", f"{prefix}b"
    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=tenant_a, bus=False) as a, \
            tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=tenant_b, bus=False) as b:
        ns_a = a.namespace("users", serializer=PickleSerializer(hmac_key=HMAC_KEY))
        ns_b = b.namespace("users", serializer=PickleSerializer(hmac_key=HMAC_KEY))
        try:
            ns_a.set("42", {"role": "admin"})
            raw = redis_client.get(ns_a.tier_key("42"))
            assert raw is not None
            redis_client.set(ns_b.tier_key("42"), raw)
            assert ns_b.get("42", default="absent") == "absent"
            assert ns_b.stats()["tiers"]["L1:redis"]["undecodable"] == 1
        finally:
            redis_client.delete(ns_a.tier_key("42"), ns_b.tier_key("42"))
