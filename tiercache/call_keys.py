"""Cache keys of function calls: the arguments bound to the signature, in a canonical form."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from ._types import Key
from .errors import InvalidKeyError, SerializationError
from .serialization import MsgpackSerializer

__all__ = ["call_key", "first_parameter", "function_namespace", "single_parameter"]

_P = inspect.Parameter
_SIMPLE = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)
_canonical = MsgpackSerializer()
_KEY_TYPES = (str, int)


def call_key(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Key]:
    """The function that turns a call's arguments into a cache key for ``fn``.

    The key is the call's arguments bound to the function's signature with
    defaults applied, so ``f(1)``, ``f(a=1)`` and ``f(b=2, a=1)`` (``b=2``
    the default) are one key; it is built from the values themselves, never
    from ``id()`` or a repr, so it is the same in every process and after a
    restart. A first parameter named ``self`` or ``cls`` is left out: a
    method's results are shared by its instances (pass ``key=`` when they
    must not be).

    One parameter: the key is the argument; several: a tuple of them. ``str``
    and ``int`` arguments stand as they are; ``bytes`` get a ``0x00`` byte in
    front and every other value becomes ``0xff`` + its canonical msgpack
    (dicts and sets sorted), so no two different calls share a key.

    Raises (from the returned function):
        InvalidKeyError: an argument has no canonical form (pass ``key=``).
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    skip = 1 if params and params[0].name in ("self", "cls") else 0
    simple = all(p.kind in _SIMPLE for p in params)
    arity = len(params)
    single = arity - skip == 1 and simple

    def make(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key:
        if simple and not kwargs and len(args) == arity:
            values: tuple[Any, ...] = args[skip:] if skip else args
        else:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidKeyError(f"{fn.__qualname__}: {exc}") from exc
            bound.apply_defaults()
            values = tuple(_flatten(params, bound.arguments))[skip:]
        if single:
            value = values[0]
            return value if type(value) in _KEY_TYPES else _keyable(value, fn)
        return tuple(v if type(v) in _KEY_TYPES else _keyable(v, fn) for v in values)

    return make


def _flatten(params: list[inspect.Parameter], arguments: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for p in params:
        value = arguments[p.name]
        if p.kind is _P.VAR_KEYWORD:
            out.append(tuple(sorted(value.items())))
        else:
            out.append(value)
    return out


def _keyable(value: Any, fn: Callable[..., Any]) -> Key:
    if type(value) is bytes:
        return b"\x00" + value
    try:
        return b"\xff" + _canonical.dumps(_normal(value))
    except (SerializationError, TypeError) as exc:
        raise InvalidKeyError(
            f"{fn.__qualname__}: argument {value!r:.60} has no stable key; pass key=: {exc}"
        ) from exc


def _normal(value: Any) -> Any:
    """A form whose msgpack is the same for equal values (dict and set order fixed)."""
    kind = type(value)
    if kind is dict:
        pairs = [(_normal(k), _normal(v)) for k, v in value.items()]
        pairs.sort(key=lambda kv: _canonical.dumps(kv[0]))
        return ("d", tuple(pairs))
    if kind is set or kind is frozenset:
        items = [_normal(v) for v in value]
        items.sort(key=_canonical.dumps)
        return ("s", tuple(items))
    if kind is list:
        return ("l", tuple(_normal(v) for v in value))
    if kind is tuple:
        return ("t", tuple(_normal(v) for v in value))
    return value


def single_parameter(fn: Callable[..., Any]) -> bool:
    """True for ``f(x)`` and ``obj.f(x)``: one plain parameter besides self/cls."""
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return len(params) == 1 and params[0].kind in _SIMPLE


def first_parameter(fn: Callable[..., Any]) -> str | None:
    params = list(inspect.signature(fn).parameters)
    return params[0] if params else None



def function_namespace(fn: Callable[..., Any]) -> str:
    """``fn.<module>.<qualname>`` with only name characters; hashed past 64."""
    raw = f"fn.{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}"
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", raw)
    if len(name) > 64:
        name = name[:51] + "." + hashlib.sha256(raw.encode()).hexdigest()[:12]
    return name
