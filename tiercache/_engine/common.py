"""Sentinels and constants the engine's parts share."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["NEGATIVE", "NOTHING", "perf"]

NOTHING: Any = object()
"""'This tier has nothing for the key', distinct from MISSING (a cached absence)."""

NEGATIVE = b""
"""A cached 'the store has no such key': no serializer writes empty bytes."""

perf = time.perf_counter
"""The latency clock of the stats (never the cache's own, injected clock)."""
