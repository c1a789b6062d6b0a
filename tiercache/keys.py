"""Key validation and canonical, injective key encoding."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError, InvalidKeyError

__all__ = [
    "MAX_KEY_LENGTH",
    "check_name",
    "decode_key",
    "encode_key",
    "hash_long_key",
    "inline_prefixes",
    "tier_key",
    "tier_key_encoder",
]

MAX_KEY_LENGTH = 200
"""Keys longer than this (in characters, prefix included) are hashed in Redis."""

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")


def check_name(kind: str, name: object) -> str:
    """Validate a namespace or prefix name: 1-64 of ``A-Za-z0-9_.-``.

    Raises:
        ConfigurationError: the name is empty, too long, not a ``str``, or has
            a character that could break key parsing or a Redis SCAN pattern.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"{kind} name must be 1-64 characters of A-Z a-z 0-9 _ . -, got {name!r}"
        )
    return name


def encode_key(key: Any) -> str:
    """Return the canonical form of ``key``.

    A key is ``str``, ``int``, ``bytes`` or a tuple of those. Its canonical
    form is a tag and a payload, ``s:hello``, ``i:42``, ``b:6869``,
    ``t:s1:ai2:42``, where tuple elements are length-prefixed, so the code
    is prefix-free and no two distinct keys share a form. ``1`` and ``"1"``
    differ; ``bool`` is refused because ``True == 1`` would make two
    spellings of one dict key.

    Raises:
        InvalidKeyError: ``key`` is not ``str``, ``int``, ``bytes`` or a tuple
            of those (``bool`` and ``float`` included).
    """
    kind = type(key)
    if kind is str:
        return "s:" + (key if key.isascii() else _text(key))
    if kind is int:
        return "i:" + str(key)
    if kind is bytes:
        return "b:" + bytes(key).hex()
    if kind is tuple:
        return "t:" + "".join(_element(item) for item in key)
    raise InvalidKeyError(
        f"keys must be str, int, bytes or tuples of those, not {kind.__name__}: {key!r}"
    )


def inline_prefixes(prefix: str) -> tuple[str, str]:
    """The heads of an ASCII ``str`` key's and an ``int`` key's tier key under ``prefix``.

    ``heads[0] + s == tier_key(prefix, s)`` for an ASCII ``str`` ``s`` and
    ``heads[1] + str(i) == tier_key(prefix, i)`` for an ``int`` ``i``
    (``tests/unit/test_keys.py`` checks both). The L1 hit paths join these
    inline, where a call to the encoder would cost a fifth of the hit; every
    other key, and every other path, goes through :func:`tier_key_encoder`.
    """
    return prefix + "s:", prefix + "i:"


def tier_key_encoder(prefix: str) -> Callable[[Any], str]:
    """The encoder of full tier keys under ``prefix``: ``prefix + encode_key(key)``.

    Every path that turns a caller's key into a tier key calls the function
    this returns (the hot paths included), so the rule lives here alone; an
    ASCII ``str`` or an ``int`` costs one concatenation, with the prefixes
    joined once.

    Raises (from the returned function):
        InvalidKeyError: as :func:`encode_key`.
    """
    str_prefix, int_prefix = inline_prefixes(prefix)

    def encode(key: Any) -> str:
        kind = type(key)
        if kind is str and key.isascii():
            return str_prefix + key  # type: ignore[no-any-return]
        if kind is int:
            return int_prefix + str(key)
        return prefix + encode_key(key)

    return encode


def tier_key(prefix: str, key: Any) -> str:
    """``prefix`` + the canonical form of ``key``: the full key in every tier.

    Raises:
        InvalidKeyError: as :func:`encode_key`.
    """
    return tier_key_encoder(prefix)(key)


def _text(text: str) -> str:
    """``text`` if it can be stored (UTF-8 encodable: no lone surrogates)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidKeyError(f"str keys must be valid Unicode text: {text!r}") from exc
    return text


def _element(item: Any) -> str:
    """Length-prefixed form of one tuple element (prefix-free, so injective)."""
    kind = type(item)
    if kind is str:
        tag, payload = "s", _text(item)
    elif kind is int:
        tag, payload = "i", str(item)
    elif kind is bytes:
        tag, payload = "b", item.hex()
    elif kind is tuple:
        tag, payload = "t", "".join(_element(inner) for inner in item)
    else:
        raise InvalidKeyError(
            "tuple key elements must be str, int, bytes or tuples, "
            f"not {kind.__name__}: {item!r}"
        )
    return f"{tag}{len(payload)}:{payload}"


def hash_long_key(full_key: str) -> str:
    """Shorten a ``prefix:namespace:canonical`` key by hashing its canonical part.

    The result keeps the readable ``prefix:namespace:`` head and replaces the
    canonical key with ``h:<sha256>``; the ``h`` tag is used by no other form,
    so a hashed key never equals an unhashed one. Prefix and namespace names
    cannot hold ``:`` (see :func:`check_name`), so the head ends at the second.
    """
    keep = full_key.index(":", full_key.index(":") + 1) + 1
    digest = hashlib.sha256(full_key[keep:].encode("utf-8", "surrogatepass")).hexdigest()
    return full_key[:keep] + "h:" + digest


def decode_key(encoded: str) -> Any:
    """Inverse of :func:`encode_key`: the key whose canonical form is ``encoded``.

    Raises:
        InvalidKeyError: ``encoded`` is not a canonical form (a hashed ``h:``
            form cannot be decoded).
    """
    tag, sep, payload = encoded.partition(":")
    if not sep:
        raise InvalidKeyError(f"not a canonical key: {encoded!r}")
    if tag == "t":
        return _decode_elements(payload)
    return _decode_scalar(tag, payload, encoded)


def _decode_scalar(tag: str, payload: str, whole: str) -> Any:
    try:
        if tag == "s":
            return payload
        if tag == "i":
            return int(payload)
        if tag == "b":
            return bytes.fromhex(payload)
    except ValueError as exc:
        raise InvalidKeyError(f"not a canonical key: {whole!r}") from exc
    raise InvalidKeyError(f"not a canonical key: {whole!r}")


def _decode_elements(text: str) -> tuple[Any, ...]:
    items: list[Any] = []
    pos = 0
    while pos < len(text):
        colon = text.find(":", pos)
        if colon <= pos + 1:
            raise InvalidKeyError(f"not a canonical tuple key: {text!r}")
        tag, length = text[pos], text[pos + 1 : colon]
        if not length.isdigit():
            raise InvalidKeyError(f"not a canonical tuple key: {text!r}")
        end = colon + 1 + int(length)
        if end > len(text):
            raise InvalidKeyError(f"not a canonical tuple key: {text!r}")
        payload = text[colon + 1 : end]
        items.append(
            _decode_elements(payload) if tag == "t" else _decode_scalar(tag, payload, text)
        )
        pos = end
    return tuple(items)
