"""What type checkers see: the async facade's coroutines, and @cache.cached's signatures."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

SNIPPET = textwrap.dedent(
    """
    import tiercache as tc

    cache = tc.Cache(tiers=[tc.MemoryTier()])

    @cache.cached(ttl=60)
    def square(n: int) -> int:
        return n * n

    @cache.cached(ttl=60)
    async def shout(word: str) -> str:
        return word.upper()

    async def forgets(ans: tc.AsyncNamespace) -> None:
        ans.set("k", 1)  # line 15: the forgotten await

    async def remembers(ans: tc.AsyncNamespace) -> None:
        await ans.set("k", 1)
        value: dict[tc.Key, object] = await ans.get_many(["k"])

    def calls() -> None:
        square("seven")  # line 22: the wrong argument type
        total: int = square(7)
        square.invalidate(7)
        again: int = square.refresh(7)

    async def async_calls() -> None:
        word: str = await shout("hi")
        await shout.invalidate("hi")
        shout.refresh("hi")  # line 30: refresh of a coroutine function is a coroutine
    """
)


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """mypy --strict's error lines for SNIPPET, checked against the installed tiercache."""
    root: Path = tmp_path_factory.mktemp("typing")
    snippet = root / "snippet.py"
    snippet.write_text(SNIPPET)
    stdout, _stderr, _status = mypy_api.run(
        ["--strict", "--cache-dir", str(root / "cache"), "--show-error-codes", str(snippet)]
    )
    return [line for line in stdout.splitlines() if ": error:" in line]


def errors_at(report: list[str], line: int) -> list[str]:
    return [e for e in report if f"snippet.py:{line}:" in e]


def test_forgetting_await_on_async_set_is_a_type_error(mypy_report: list[str]) -> None:
    """mypy reports ``ans.set(...)`` without ``await``: AsyncNamespace.set is an explicit
    coroutine."""
    assert any("unused-coroutine" in e for e in errors_at(mypy_report, 15)), mypy_report


def test_cached_keeps_the_signature_for_type_checkers(mypy_report: list[str]) -> None:
    """A decorated function rejects a wrong argument type, as the undecorated one would."""
    assert any("arg-type" in e for e in errors_at(mypy_report, 22)), mypy_report


def test_refresh_of_a_cached_coroutine_function_is_awaitable(mypy_report: list[str]) -> None:
    """``refresh`` of a cached ``async def`` returns a coroutine, which must be awaited."""
    assert any("unused-coroutine" in e for e in errors_at(mypy_report, 30)), mypy_report


def test_correct_uses_type_check_cleanly(mypy_report: list[str]) -> None:
    """Only the three planted mistakes are reported: awaited calls and typed results pass."""
    assert len(mypy_report) == 3, mypy_report
