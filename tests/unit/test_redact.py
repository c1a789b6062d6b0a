"""redact(): the one rule that keeps passwords out of reprs, errors and logs."""

from __future__ import annotations

import pytest

import tiercache as tc
from tiercache._redact import redact, redact_repr
from tiercache.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:secret@127.0.0.1:6379/0", "redis://user:***@127.0.0.1:6379/0"),
        ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:secret@h:1/0", "rediss://user:***@h:1/0"),
        ("redis://user:se@cret@h:1/0", "redis://user:***@h:1/0"),
        ("redis://user:se/cret@h:1/0", "redis://user:***@h:1/0"),
        ("unix://:secret@/tmp/redis.sock?db=1", "unix://:***@/tmp/redis.sock?db=1"),
        ("redis://h:1/0?password=secret", "redis://h:1/0?password=***"),
        ("redis://h:1/0?db=1&PASSWORD=secret&x=1", "redis://h:1/0?db=1&PASSWORD=***&x=1"),
        ("postgresql+psycopg://u:secret@h/db?sslpassword=secret&connect_timeout=5",
         "postgresql+psycopg://u:***@h/db?sslpassword=***&connect_timeout=5"),
        ("mssql+pyodbc://h/db?odbc_connect=x;PWD=secret;UID=u",
         "mssql+pyodbc://h/db?odbc_connect=x;PWD=***;UID=u"),
        ("postgresql://u@h/db?user=a@b", "postgresql://u@h/db?user=a@b"),
    ],
)
def test_passwords_are_masked_and_the_rest_kept(url: str, shown: str) -> None:
    """Every password spelling becomes ***; user, host, path and other parameters stay."""
    assert redact(url) == shown
    assert "secret" not in redact(url)


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "redis://user@h:1/0", "sqlite:///tmp/a:b@c.db", "app.db",
     "postgresql+psycopg://postgres@127.0.0.1:5432/test", ""],
)
def test_urls_without_a_password_are_unchanged(url: str) -> None:
    """A URL with no password comes back as it was."""
    assert redact(url) == url


@pytest.mark.parametrize(
    ("value", "shown"),
    [("redis://u:secret@h", "'redis://u:***@h'"), (b"redis://u:secret@h", "b'redis://u:***@h'"),
     (6379, "6379"), (None, "None")],
)
def test_redact_repr_masks_str_and_bytes(value: object, shown: str) -> None:
    """redact_repr shows any option as repr, a str or bytes URL without its password."""
    assert redact_repr(value) == shown


@pytest.mark.xfail(
    strict=True,
    reason="tiers/redis.py keeps a _redact of its own that shows bytes URLs and passwords "
    "holding '/'; the lead switches it to tiercache._redact (redact, redact_repr)",
)
@pytest.mark.parametrize(
    "url", [b"redis://u:pw-3e1a@127.0.0.1:1/0", "redis://u:pw/3e1a@127.0.0.1:1/0"]
)
def test_redis_tier_shows_urls_by_the_shared_rule(url: object) -> None:
    """RedisTier's errors and repr hide these passwords too (the part after '/' included)."""
    try:
        tier = tc.RedisTier(url, timeout=0.1)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        text = str(exc)
    else:
        text = repr(tier)
        tier.close()
    assert "3e1a" not in text
