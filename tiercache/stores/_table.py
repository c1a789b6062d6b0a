"""The table-name rule shared by SQLiteStore and SQLStore: which table a name owns."""

from __future__ import annotations

import hashlib
import re

from ..errors import ConfigurationError
from ..keys import check_name

__all__ = ["DEFAULT_TABLE", "check_table", "namespace_table"]

DEFAULT_TABLE = "tiercache"
"""Table of a store created without ``table=``; its namespaces get ``tiercache_<name>``."""

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_PLAIN_NAMESPACE = re.compile(r"[a-z0-9_]{1,53}\Z")  # "tiercache_" + 53 = 63 characters
_DIGEST_CHARS = 12
# The tail every hashed table ends with. A plain name ending like this could
# equal another name's hashed table, so such a name is hashed too.
_HASHED_TAIL = re.compile(rf"_[0-9a-f]{{{_DIGEST_CHARS}}}\Z")


def check_table(table: object) -> str:
    """Validate a table name: an SQL identifier of at most 63 characters.

    Raises:
        ConfigurationError: the name is not ``[A-Za-z_][A-Za-z0-9_]{0,62}``, or
            it starts with ``sqlite_`` (reserved by SQLite).
    """
    if not isinstance(table, str) or not _TABLE.match(table) or table.lower().startswith("sqlite_"):
        raise ConfigurationError(
            "table must be 1-63 characters of A-Z a-z 0-9 _, not starting with a digit "
            f"or 'sqlite_', got {table!r}"
        )
    return table


def namespace_table(namespace: str) -> str:
    """Return the table of ``namespace``'s sibling of a store on the default table.

    Two namespace names never get one table. A name of lowercase letters,
    digits and ``_`` (53 at most) gets ``tiercache_<namespace>``. Any other
    name would collide with another after ``-``/``.`` become ``_`` (``a-b``,
    ``a.b``, ``a_b``), or after case folding (SQLite and MySQL compare table
    names case-insensitively), or be truncated (PostgreSQL keeps 63 bytes):
    it gets the folded name plus a hash of the original,
    ``tiercache_a_b_<12 hex>``. A plain name that itself ends in ``_`` and 12
    hex digits is hashed as well, so it cannot be spelled like another
    name's hashed table: plain tables never end that way, hashed ones always
    do, and two hashed ones differ in their hash.

    Raises:
        ConfigurationError: ``namespace`` is not a valid namespace name.
    """
    check_name("namespace", namespace)
    if _PLAIN_NAMESPACE.match(namespace) and not _HASHED_TAIL.search(namespace):
        return f"{DEFAULT_TABLE}_{namespace}"
    folded = namespace.lower().replace("-", "_").replace(".", "_")
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{DEFAULT_TABLE}_{folded[:40]}_{digest}"
