"""Registers the marks that dogpile's shipped suites put on their slow tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Declare dogpile's ``time_intensive`` mark, which ``--strict-markers`` would refuse."""
    config.addinivalue_line("markers", "time_intensive: a slow test of dogpile's shipped suites")
