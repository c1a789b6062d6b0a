"""tiercache.testing as a user meets it: the pytest plugin, strategies and state machine in a user's
suite.

Each test writes a user's test file to a temporary directory and runs pytest
on it in a subprocess, so the plugin is found the way a user's run finds it
(the ``pytest11`` entry point), with no conftest from this repository.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
HEADING = "### Testing your own code"

USER_TESTS = '''
"""A user's own tests of code that uses tiercache."""

import tiercache as tc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiercache.testing.state_machine import CacheMachine, same_value
from tiercache.testing.strategies import keys, namespace_names, small_keys, values


def test_cached_function_with_the_fixture(tiercache_cache, tiercache_clock):
    calls = []

    @tiercache_cache.cached(namespace="profiles", ttl=60)
    def profile(user_id: int) -> dict:
        calls.append(user_id)
        return {"id": user_id}

    assert tiercache_cache.clock is tiercache_clock
    assert profile(7) == profile(user_id=7) == {"id": 7}
    assert calls == [7]
    profile.invalidate(7)
    assert profile(7) == {"id": 7}
    assert calls == [7, 7]


def test_write_back_runs_when_the_scheduler_says(tiercache_cache, tiercache_scheduler):
    orders = tiercache_cache.namespace("orders", write=tc.WriteBack())
    orders.set("o1", {"total": 3})
    assert tiercache_cache.store.load_many(["o1"]) == {}
    tiercache_scheduler.run_pending()
    assert tiercache_cache.store.load_many(["o1"]) == {"o1": {"total": 3}}


def test_fixture_isolation_first(tiercache_cache):
    tiercache_cache.namespace("shared").set("k", "written by the first test")


def test_fixture_isolation_second(tiercache_cache):
    assert tiercache_cache.namespace("shared").get("k") is None


def test_clock_moves_only_when_told(tiercache_clock):
    start = tiercache_clock()
    assert tiercache_clock() == start
    assert tiercache_clock.advance(2.5) == start + 2.5


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys(), value=values())
def test_any_key_and_value_round_trip(tiercache_cache, key, value):
    ns = tiercache_cache.namespace("round_trip")
    ns.set(key, value)
    ns.invalidate(key)
    assert same_value(value, ns.get(key, default=tc.MISSING))


@settings(max_examples=25, deadline=None)
@given(name=namespace_names(), key=small_keys(), value=st.integers(-(2**63), 2**63 - 1))
def test_generated_names_are_accepted(name, key, value):
    with tc.Cache(tiers=[tc.MemoryTier()], prefix=name) as cache:
        ns = cache.namespace(name)
        ns.set(key, value)
        assert ns.get(key) == value


class MyStackMachine(CacheMachine):
    ttl = 30.0

    def make_tiers(self):
        return [tc.MemoryTier(maxsize=4), tc.RedisTier.embedded()]

    def make_store(self):
        return tc.MappingStore()


TestMyStack = MyStackMachine.TestCase
TestMyStack.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)
'''
USER_TEST_COUNT = 8


def run_user_suite(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess[str]:
    """Write ``source`` as ``tmp_path/name`` and run pytest on it the way a user would."""
    (tmp_path / name).write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


def passed(output: str) -> int:
    """The number in pytest's 'N passed' summary (0 when absent)."""
    found = re.search(r"(\d+) passed", output)
    return int(found.group(1)) if found else 0


def test_user_suite_with_fixtures_strategies_and_state_machine(tmp_path: Path) -> None:
    """A user's file using the plugin fixtures, strategies and a CacheMachine subclass passes."""
    done = run_user_suite(tmp_path, "test_user_cache.py", textwrap.dedent(USER_TESTS))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert passed(output) == USER_TEST_COUNT, output
    assert "failed" not in output and "error" not in output.lower(), output


def readme_testing_example() -> str:
    """The first ```python block of the README's testing section (before the next heading)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    if HEADING not in lines:
        pytest.fail(f"README has no testing example: no {HEADING!r} heading")
    block: list[str] | None = None
    for line in lines[lines.index(HEADING) + 1:]:
        if block is not None:
            if line.startswith("```"):
                return "\n".join(block) + "\n"
            block.append(line)
        elif line.startswith("```python"):
            block = []
        elif line.startswith("#"):
            break  # the next heading: the section had no python block
    pytest.fail(f"README has no testing example: no ```python block under {HEADING!r}")


def test_readme_testing_example_runs(tmp_path: Path) -> None:
    """The README's 'Testing your own code' example passes as a user's test file."""
    source = readme_testing_example()
    expected = len(re.findall(r"^def test_\w+\(", source, re.MULTILINE))
    assert expected >= 1, "the README example defines no test"
    done = run_user_suite(tmp_path, "test_readme_example.py", source)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert passed(output) == expected, output
