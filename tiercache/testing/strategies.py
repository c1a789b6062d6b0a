"""Hypothesis strategies for keys, values and names that tiercache accepts.

Use them in your own property tests::

    from hypothesis import given
    from tiercache.testing.strategies import keys, values

    @given(keys(), values())
    def test_round_trip(key, value): ...

Every value drawn from :func:`values` round-trips through the default
:class:`~tiercache.MsgpackSerializer` to an equal value of the same types
(NaN is left out, since it is never equal to itself).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from .._types import Key

__all__ = ["KEY_SPACE", "keys", "namespace_names", "scalars", "small_keys", "values"]

KEY_SPACE: tuple[Key, ...] = ("a", "b", "1", 1, 2, ("a", 1), b"a", "L" * 200)
"""A small key space where collisions are likely: ``1`` and ``"1"`` are different keys,
and one key is long enough to be hashed in Redis."""

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def _text(max_size: int = 12) -> st.SearchStrategy[str]:
    # Lone surrogates cannot be encoded as UTF-8, which msgpack needs.
    return st.text(st.characters(codec="utf-8"), max_size=max_size)


def keys(max_depth: int = 2) -> st.SearchStrategy[Key]:
    """Any valid key: ``str``, ``int``, ``bytes`` and tuples of those, nested up to
    ``max_depth``."""
    base: st.SearchStrategy[Any] = st.one_of(
        _text(20), st.integers(), st.binary(max_size=16)
    )
    strategy = base
    for _ in range(max_depth):
        strategy = base | st.lists(strategy, max_size=3).map(tuple)
    return strategy


def small_keys() -> st.SearchStrategy[Key]:
    """A key from :data:`KEY_SPACE`: few enough that operations keep hitting one key."""
    return st.sampled_from(KEY_SPACE)


def _timezones() -> st.SearchStrategy[dt.tzinfo | None]:
    offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
    )
    return st.none() | offsets | st.just(dt.timezone.utc)


def _decimals() -> st.SearchStrategy[Decimal]:
    # Built from digits and an exponent: several times cheaper to draw than
    # st.decimals(), and as varied in what matters here (sign, scale, size).
    finite = st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(-(10**20), 10**20),
        st.integers(-12, 12),
    )
    special = st.sampled_from(
        [Decimal("Infinity"), Decimal("-Infinity"), Decimal("-0"), Decimal("1.00")]
    )
    return finite | special


def scalars() -> st.SearchStrategy[Any]:
    """Leaf values: None, bool, int, float, text, bytes, datetime, date, Decimal, UUID."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=_INT64_MIN, max_value=_UINT64_MAX),
        st.floats(allow_nan=False),
        _text(),
        st.binary(max_size=12),
        st.datetimes(timezones=_timezones()),
        st.dates(),
        _decimals(),
        st.uuids(),
    )


def _hashables() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=_INT64_MIN, max_value=_UINT64_MAX),
        _text(6),
        st.binary(max_size=6),
        st.tuples(st.integers(min_value=-100, max_value=100), _text(4)),
    )


def values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Values the default msgpack serializer round-trips exactly.

    Scalars (see :func:`scalars`), and lists, tuples, dicts (``str`` or
    ``int`` keys), sets and frozensets of them, nested.
    """
    containers_of_hashables: st.SearchStrategy[Any] = st.one_of(
        # Lists mapped to sets: cheaper than st.sets, which redraws duplicates.
        st.lists(_hashables(), max_size=4).map(set),
        st.lists(_hashables(), max_size=4).map(frozenset),
    )
    return st.recursive(
        scalars() | containers_of_hashables,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(_text(6) | st.integers(-1000, 1000), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def namespace_names() -> st.SearchStrategy[str]:
    """Valid namespace (and prefix) names: 1-64 characters of ``A-Za-z0-9_.-``."""
    return st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
