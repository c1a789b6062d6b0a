"""Marks of dogpile's shipped suites, and a runner for the HTTP examples."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Declare dogpile's ``time_intensive`` mark, which ``--strict-markers`` would refuse."""
    config.addinivalue_line("markers", "time_intensive: a slow test of dogpile's shipped suites")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def exercise_example(redis_url: str, prefix: str) -> Callable[[str], None]:
    """``exercise_example(script)``: run examples/<script> on 127.0.0.1 and check its cache.

    The example runs as a subprocess on a free port against the real Redis;
    it is stopped by its pid, within bounded waits.
    """

    def run(script: str) -> None:
        port = _free_port()
        command = [sys.executable, str(EXAMPLES / script), "--port", str(port),
                   "--redis", redis_url, "--prefix", prefix]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    httpx.get(base + "/me", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"{script} did not start"
                    time.sleep(0.1)
            _check_example(base)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    return run


def _check_example(base: str) -> None:
    first = httpx.get(base + "/now", timeout=10)
    second = httpx.get(base + "/now", timeout=10)
    assert first.status_code == 200 and second.text == first.text  # served from the cache
    assert "age" in second.headers and second.headers["cache-control"] == "public, max-age=5"
    etag = second.headers["etag"]
    assert httpx.get(base + "/now", headers={"If-None-Match": etag}, timeout=10).status_code == 304
    tagged = httpx.get(base + "/users/7", timeout=10)
    assert tagged.headers["surrogate-key"] == "user:7 users" and "x-cache-tags" not in tagged.headers
    assert httpx.get(base + "/users/7", timeout=10).text == tagged.text
    assert httpx.get(base + "/me", timeout=10).text != httpx.get(base + "/me", timeout=10).text
