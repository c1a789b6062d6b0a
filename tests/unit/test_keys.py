"""Key encoding: canonical and injective, strict about types, names and long keys."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiercache as tc
from tiercache.errors import ConfigurationError, InvalidKeyError
from tiercache.keys import (
    MAX_KEY_LENGTH,
    check_name,
    decode_key,
    encode_key,
    hash_long_key,
    inline_prefixes,
    tier_key,
    tier_key_encoder,
)


def _keys() -> st.SearchStrategy[Any]:
    """str (any code point, surrogates included), int, bytes, and nested tuples of those."""
    base = st.one_of(
        st.text(max_size=12),
        st.integers(),
        st.binary(max_size=8),
    )
    return st.recursive(base, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=10)


def _typed(key: Any) -> Any:
    """A structure that is equal only for keys of the same types and values (True != 1)."""
    if type(key) is tuple:
        return ("tuple", tuple(_typed(k) for k in key))
    return (type(key).__name__, key)


# -- injectivity ---------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(_keys(), _keys())
def test_distinct_keys_have_distinct_encodings(a: Any, b: Any) -> None:
    """Two keys that differ in value or type never share a canonical form."""
    if _typed(a) != _typed(b):
        assert encode_key(a) != encode_key(b)
    else:
        assert encode_key(a) == encode_key(b)


@settings(max_examples=300, deadline=None)
@given(_keys())
def test_encoding_round_trips_through_decode_key(key: Any) -> None:
    """decode_key(encode_key(k)) gives back k with the same types."""
    assert _typed(decode_key(encode_key(key))) == _typed(key)


@settings(max_examples=200, deadline=None)
@given(st.lists(_keys(), min_size=2, max_size=6, unique_by=lambda k: repr(_typed(k))))
def test_a_batch_of_distinct_keys_has_as_many_encodings(keys: list[Any]) -> None:
    """Encoding a batch of distinct keys never collapses two of them."""
    assert len({encode_key(k) for k in keys}) == len(keys)


def test_int_str_bytes_and_tuple_spellings_of_one_differ() -> None:
    """1, "1", b"1" and (1,) are four different keys."""
    forms = [encode_key(k) for k in (1, "1", b"1", (1,), ("1",), (b"1",), ((1,),))]
    assert len(set(forms)) == len(forms)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("ab", "c"), ("a", "bc")),
        (("a:b",), ("a", "b")),
        ((("a",), "b"), ("a", ("b",))),
        (("",), ()),
        (((),), ()),
        (("s:1",), ("s", 1)),
        ("t:", ()),
        ("i:1", 1),
        ("b:31", b"1"),
        (-1, "-1"),
        (b"", ""),
    ],
)
def test_look_alike_keys_do_not_collide(a: Any, b: Any) -> None:
    """Keys built to look like each other's encoding stay distinct."""
    assert encode_key(a) != encode_key(b)


def test_encoding_is_canonical_and_deterministic() -> None:
    """The same key always encodes to the same documented form."""
    assert encode_key("hello") == "s:hello"
    assert encode_key(42) == "i:42"
    assert encode_key(b"hi") == "b:6869"
    assert encode_key(("a", 42)) == encode_key(("a", 42))


# -- refused types -------------------------------------------------------------


class _Str(str):
    pass


@pytest.mark.parametrize(
    "key",
    [True, False, 1.0, 1.5, float("nan"), None, [1], ["a"], {"a": 1}, {1}, frozenset({1}),
     object(), bytearray(b"a"), _Str("a"), ("a", 1.5), ("a", None), ("a", True), (["a"],),
     ("a", ("b", [1]))],
    ids=repr,
)
def test_unsupported_key_types_are_refused(key: Any) -> None:
    """bool, float, None, list, dict, sets, other objects (also inside tuples) raise
    InvalidKeyError."""
    with pytest.raises(InvalidKeyError):
        encode_key(key)


def test_invalid_key_error_is_a_tiercache_error_and_a_type_error() -> None:
    """InvalidKeyError is catchable as TiercacheError and as TypeError."""
    with pytest.raises(tc.TiercacheError):
        encode_key(1.5)
    with pytest.raises(TypeError):
        encode_key(None)


@pytest.mark.parametrize("bad", ["", "x", "s", "s1:a", "q:1", "i:abc", "b:zz", "t:s5:ab", "t:sx:a"])
def test_decode_key_refuses_non_canonical_text(bad: str) -> None:
    """decode_key raises InvalidKeyError for text that no key encodes to."""
    with pytest.raises(InvalidKeyError):
        decode_key(bad)


# -- names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "users", "A-b_c.d", "0", "x" * 64, "v1.2-beta_3"])
def test_check_name_accepts_simple_names(name: str) -> None:
    """1-64 characters of A-Z a-z 0-9 _ . - are accepted and returned unchanged."""
    assert check_name("namespace", name) == name


@pytest.mark.parametrize(
    "name",
    ["", "a:b", "a b", "x" * 65, None, 5, b"abc", "a*", "a?", "a[b]", "a\n", "a\\b", "a/b",
     "#bus", "é", "a\x00"],
    ids=repr,
)
def test_check_name_refuses_malformed_names(name: Any) -> None:
    """Empty, too long, non-str names and names with : space * ? [ ] # etc. raise
    ConfigurationError."""
    with pytest.raises(ConfigurationError):
        check_name("namespace", name)


# -- long keys -----------------------------------------------------------------


def test_hash_long_key_keeps_prefix_and_namespace_head() -> None:
    """A hashed key keeps "prefix:namespace:" and replaces the rest with h:<sha256>."""
    full = "app:users:s:" + "x" * 300
    hashed = hash_long_key(full)
    digest = hashlib.sha256(("s:" + "x" * 300).encode()).hexdigest()
    assert hashed == "app:users:h:" + digest
    assert len(hashed) <= MAX_KEY_LENGTH


def test_hash_long_key_is_injective_on_different_tails() -> None:
    """Two long keys differing only at the end hash differently."""
    assert hash_long_key("p:n:s:" + "a" * 300) != hash_long_key("p:n:s:" + "a" * 299 + "b")


def test_hash_long_key_handles_lone_surrogates() -> None:
    """A key holding a lone surrogate still hashes (surrogatepass), without an exception."""
    assert hash_long_key("p:n:s:" + "\ud800" * 300).startswith("p:n:h:")


def _full_key(prefix: str, ns: str, key: str) -> str:
    return f"{prefix}:{ns}:s:{key}"


def _seed(ns: tc.Namespace, items: dict[Any, Any]) -> None:
    """Cache items in every tier the way a read that loaded them does."""
    ns.get_many(list(items), loader=lambda keys: {k: items[k] for k in keys})


def test_redis_tier_hashes_keys_longer_than_max_key_length(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """A key over MAX_KEY_LENGTH is stored in Redis under its hashed name; reads find it."""
    key = "k" * 300
    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, bus=False) as cache:
        ns = cache.namespace("users")
        _seed(ns, {key: "long value"})
        full = _full_key(prefix, "users", key)
        expected = f"{prefix}:users:h:" + hashlib.sha256(f"s:{key}".encode()).hexdigest()
        assert hash_long_key(full) == expected
        names = {k.decode() for k in redis_client.scan_iter(match=f"{prefix}:*", count=1000)}
        assert names == {expected}
        assert ns.get(key) == "long value"
        ns.delete(key)
        assert redis_client.exists(expected) == 0


def test_redis_tier_key_length_boundary(redis_url: str, redis_client: Any, prefix: str) -> None:
    """A full key of exactly MAX_KEY_LENGTH is stored as is; one character more is hashed."""
    head = len(_full_key(prefix, "n", ""))
    at_limit = "a" * (MAX_KEY_LENGTH - head)
    over = "b" * (MAX_KEY_LENGTH - head + 1)
    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, bus=False) as cache:
        ns = cache.namespace("n")
        _seed(ns, {at_limit: 1, over: 2})
        assert len(_full_key(prefix, "n", at_limit)) == MAX_KEY_LENGTH
        assert redis_client.exists(_full_key(prefix, "n", at_limit)) == 1
        assert redis_client.exists(_full_key(prefix, "n", over)) == 0
        assert redis_client.exists(hash_long_key(_full_key(prefix, "n", over))) == 1
        assert (ns.get(at_limit), ns.get(over)) == (1, 2)


def test_hashed_keys_are_removed_by_invalidate_all(
    redis_url: str, redis_client: Any, prefix: str
) -> None:
    """Hashed keys keep the namespace head, so invalidate_all's SCAN finds and removes them."""
    with tc.Cache(tiers=[tc.RedisTier(redis_url)], prefix=prefix, bus=False) as cache:
        ns = cache.namespace("n")
        _seed(ns, {"x" * 250: 1, ("t", "y" * 250): 2, "short": 3})
        assert len(list(redis_client.scan_iter(match=f"{prefix}:n:*", count=1000))) == 3
        ns.invalidate_all()
        assert list(redis_client.scan_iter(match=f"{prefix}:n:*", count=1000)) == []


@pytest.mark.parametrize("key", ["", "a", "users:42", "x" * 300, 0, 7, -3, 10**30])
def test_inline_prefixes_agree_with_the_encoder(key: Any) -> None:
    """The L1 hit paths' inline forms (ASCII str, int) equal the one encoder's output."""
    str_head, int_head = inline_prefixes("app:users:")
    inline = str_head + key if type(key) is str else int_head + str(key)
    assert inline == tier_key_encoder("app:users:")(key) == tier_key("app:users:", key)
