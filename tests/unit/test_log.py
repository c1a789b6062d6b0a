"""RateLimitedWarning: one warning per topic and interval, the rest counted."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tiercache._log import RateLimitedWarning
from tiercache.errors import ConfigurationError
from tiercache.testing.clock import FakeClock


def _warner(
    caplog: pytest.LogCaptureFixture, clock: FakeClock, interval: float = 10.0
) -> RateLimitedWarning:
    caplog.set_level(logging.WARNING, logger="tiercache.test_log")
    logger = logging.getLogger("tiercache.test_log")
    return RateLimitedWarning(logger, interval=interval, clock=clock)


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tiercache.test_log"]


def test_first_warning_is_logged_and_repeats_within_the_interval_are_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A topic logs once, then stays quiet until the interval has passed."""
    clock = FakeClock()
    warner = _warner(caplog, clock)
    assert warner.warn("tier0", "L1 failed: %s", "boom") is True
    clock.advance(9.999)
    assert warner.warn("tier0", "L1 failed: %s", "again") is False
    assert _messages(caplog) == ["L1 failed: boom"]


def test_next_warning_after_the_interval_counts_the_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the interval the next warning is logged with how many were dropped."""
    clock = FakeClock()
    warner = _warner(caplog, clock)
    warner.warn("bus", "bus down")
    for _ in range(3):
        clock.advance(1)
        warner.warn("bus", "bus down")
    clock.advance(10)
    assert warner.warn("bus", "bus down: %s", "100%") is True
    clock.advance(10)
    warner.warn("bus", "bus back")
    assert _messages(caplog) == ["bus down", "bus down: 100% (3 similar suppressed)", "bus back"]


def test_topics_are_independent(caplog: pytest.LogCaptureFixture) -> None:
    """One topic's warnings never silence another's."""
    clock = FakeClock()
    warner = _warner(caplog, clock)
    assert warner.warn("tier0", "a")
    assert warner.warn("tier1", "b")
    assert not warner.warn("tier0", "c")
    assert _messages(caplog) == ["a", "b"]


def test_zero_interval_logs_every_warning(caplog: pytest.LogCaptureFixture) -> None:
    """interval=0 turns the limit off."""
    warner = _warner(caplog, FakeClock(), interval=0)
    for i in range(3):
        assert warner.warn("t", "n=%d", i)
    assert _messages(caplog) == ["n=0", "n=1", "n=2"]


def test_message_without_args_is_not_formatted(caplog: pytest.LogCaptureFixture) -> None:
    """A pre-formatted message holding '%' is logged as it is."""
    clock = FakeClock()
    warner = _warner(caplog, clock)
    warner.warn("t", "key 'a%s' undecodable")
    warner.warn("t", "key 'a%s' undecodable")
    clock.advance(10)
    warner.warn("t", "key 'a%d' undecodable")
    assert _messages(caplog) == ["key 'a%s' undecodable",
                                 "key 'a%d' undecodable (1 similar suppressed)"]


def test_default_logger_is_tiercache(caplog: pytest.LogCaptureFixture) -> None:
    """Without a logger the warnings go to the 'tiercache' logger."""
    caplog.set_level(logging.WARNING, logger="tiercache")
    RateLimitedWarning(clock=FakeClock()).warn("t", "hello")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("tiercache", "hello")]


@pytest.mark.parametrize("interval", [-1, float("nan"), float("inf"), "10", True], ids=repr)
def test_bad_interval_is_refused(interval: Any) -> None:
    """A negative, NaN, infinite or non-numeric interval raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RateLimitedWarning(interval=interval)
