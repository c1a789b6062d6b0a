"""cache.wrap(): a repository behind a namespace: cached reads, writes through the policy,
typing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiercache as tc
from tiercache.testing.scheduler import ManualScheduler

ROOT = Path(__file__).resolve().parents[2]
MYPY = [sys.executable, "-m", "mypy"]  # the test extra installs mypy


class UserRepository:
    """An application's repository: a dict behind named methods, recording every call."""

    table = "users"

    def __init__(self, rows: dict[str, dict[str, Any]] | None = None) -> None:
        self.rows: dict[str, dict[str, Any]] = dict(rows or {})
        self.calls: list[tuple[str, Any]] = []
        self.fail: str | None = None

    def _call(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        if self.fail == name:
            raise ValueError(f"{name} failed")

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        self._call("get_user", user_id)
        return self.rows.get(user_id)

    def get_users(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        self._call("get_users", list(user_ids))
        return {u: self.rows[u] for u in user_ids if u in self.rows}

    def save_user(self, user_id: str, user: dict[str, Any]) -> None:
        self._call("save_user", (user_id, user))
        self.rows[user_id] = user

    def delete_user(self, user_id: str) -> None:
        self._call("delete_user", user_id)
        self.rows.pop(user_id, None)

    def count(self) -> int:
        return len(self.rows)

    def named(self, name: str) -> list[str]:
        return [u for u, row in self.rows.items() if row.get("name") == name]

    def calls_to(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]


ADA = {"name": "Ada"}
GRACE = {"name": "Grace"}


@pytest.fixture
def cache() -> Iterator[tc.Cache]:
    """An L1-only cache, no store of its own (wrap gives the namespace one)."""
    c = tc.Cache(tiers=[tc.MemoryTier()])
    yield c
    c.close()


def full_wrap(cache: tc.Cache, repo: UserRepository, **options: Any) -> UserRepository:
    """The repository wrapped with all four method names."""
    return cache.wrap(
        repo, namespace="users", get="get_user", get_many="get_users",
        save="save_user", delete="delete_user", **options,
    )


def test_reads_are_cached(cache: tc.Cache) -> None:
    """get_user twice: the repository is asked once; an absent user is None."""
    repo = UserRepository({"1": ADA})
    users = full_wrap(cache, repo)
    assert users.get_user("1") == ADA
    assert users.get_user("1") == ADA
    assert users.get_user("2") is None
    assert len(repo.calls_to("get_user")) + len(repo.calls_to("get_users")) == 2


def test_get_many_asks_the_repository_for_the_missing_keys_only(cache: tc.Cache) -> None:
    """get_users(ids): cached ids are not asked again; one repository call for the rest."""
    repo = UserRepository({"1": ADA, "2": GRACE})
    users = full_wrap(cache, repo)
    assert users.get_user("1") == ADA
    repo.calls.clear()
    assert users.get_users(["1", "2", "3"]) == {"1": ADA, "2": GRACE}
    assert repo.calls == [("get_users", ["2", "3"])]
    repo.calls.clear()
    assert users.get_users(["1", "2"]) == {"1": ADA, "2": GRACE}
    assert repo.calls == []


def test_wrap_with_get_many_only(cache: tc.Cache) -> None:
    """A repository with only a batch read serves single reads through it too."""
    repo = UserRepository({"1": ADA})
    users = cache.wrap(repo, namespace="batch", get_many="get_users")
    assert users.get_users(["1", "9"]) == {"1": ADA}
    assert users.get_users(["1"]) == {"1": ADA}
    assert repo.calls == [("get_users", ["1", "9"])]


def test_save_goes_through_to_the_repository_and_is_read_back(cache: tc.Cache) -> None:
    """save_user writes the repository first (WriteThrough); the next read sees it without a
    load."""
    repo = UserRepository({"1": ADA})
    users = full_wrap(cache, repo)
    assert users.get_user("1") == ADA
    users.save_user("1", GRACE)
    assert repo.rows["1"] == GRACE
    assert repo.calls_to("save_user") == [("1", GRACE)]
    reads_before = len(repo.calls_to("get_user"))
    assert users.get_user("1") == GRACE
    assert len(repo.calls_to("get_user")) == reads_before


def test_delete_removes_from_the_repository_and_the_cache(cache: tc.Cache) -> None:
    """delete_user deletes in the repository and drops the cached copy."""
    repo = UserRepository({"1": ADA})
    users = full_wrap(cache, repo)
    assert users.get_user("1") == ADA
    users.delete_user("1")
    assert "1" not in repo.rows
    assert repo.calls_to("delete_user") == ["1"]
    assert users.get_user("1") is None


def test_other_methods_and_attributes_pass_through(cache: tc.Cache) -> None:
    """Methods and attributes wrap() was not told about are the repository's own."""
    repo = UserRepository({"1": ADA, "2": ADA})
    users = full_wrap(cache, repo)
    assert users.count() == 2
    assert users.named("Ada") == ["1", "2"]
    assert users.table == "users"
    assert users.rows is repo.rows
    with pytest.raises(AttributeError):
        users.no_such_method()  # type: ignore[attr-defined]


def test_write_back_batches_saves_until_flush() -> None:
    """Under WriteBack(ManualScheduler) saves wait for flush(), coalesced per key; reads see
    them."""
    repo = UserRepository()
    with tc.Cache(tiers=[tc.MemoryTier()], scheduler=ManualScheduler()) as cache:
        users = full_wrap(cache, repo, write=tc.WriteBack())
        users.save_user("1", ADA)
        users.save_user("2", ADA)
        users.save_user("1", GRACE)
        assert repo.calls_to("save_user") == []
        assert users.get_user("1") == GRACE
        assert users.get_user("2") == ADA
        cache.flush()
        saves = repo.calls_to("save_user")
        assert sorted(saves, key=lambda s: s[0]) == [("1", GRACE), ("2", ADA)]
        assert repo.rows == {"1": GRACE, "2": ADA}


def test_repository_errors_arrive_as_store_error_with_cause(cache: tc.Cache) -> None:
    """An exception in a repository method reaches the caller as StoreError, __cause__ the
    original."""
    repo = UserRepository({"1": ADA})
    users = cache.wrap(repo, namespace="users", get="get_user", save="save_user")
    repo.fail = "get_user"
    with pytest.raises(tc.StoreError) as read_error:
        users.get_user("1")
    assert isinstance(read_error.value.__cause__, ValueError)
    repo.fail = "save_user"
    with pytest.raises(tc.StoreError) as write_error:
        users.save_user("1", GRACE)
    assert isinstance(write_error.value.__cause__, ValueError)
    repo.fail = None
    assert users.get_user("1") == ADA, "a failed save left a value in the cache"


def test_configuration_errors(cache: tc.Cache) -> None:
    """A misspelled method name, or neither get nor get_many, is a ConfigurationError."""
    repo = UserRepository()
    with pytest.raises(tc.ConfigurationError, match="get_usr"):
        cache.wrap(repo, namespace="a", get="get_usr")
    with pytest.raises(tc.ConfigurationError):
        cache.wrap(repo, namespace="b", get="get_user", save="store_user")
    with pytest.raises(tc.ConfigurationError):
        cache.wrap(repo, namespace="c", save="save_user", delete="delete_user")
    with pytest.raises(tc.ConfigurationError):
        cache.wrap(repo, namespace="d", get="table")  # an attribute, not a method


class AsyncUserRepository:
    """The same repository with coroutine methods."""

    def __init__(self, rows: dict[str, Any]) -> None:
        self.rows = dict(rows)
        self.calls: list[tuple[str, Any]] = []

    async def get_user(self, user_id: str) -> Any:
        self.calls.append(("get_user", user_id))
        await asyncio.sleep(0)
        return self.rows.get(user_id)

    async def get_users(self, user_ids: list[str]) -> dict[str, Any]:
        self.calls.append(("get_users", list(user_ids)))
        await asyncio.sleep(0)
        return {u: self.rows[u] for u in user_ids if u in self.rows}

    async def save_user(self, user_id: str, user: Any) -> None:
        self.calls.append(("save_user", user_id))
        await asyncio.sleep(0)
        self.rows[user_id] = user

    async def delete_user(self, user_id: str) -> None:
        self.calls.append(("delete_user", user_id))
        await asyncio.sleep(0)
        self.rows.pop(user_id, None)

    def count(self) -> int:
        return len(self.rows)


def test_async_repository_under_async_cache(redis_url: str, prefix: str) -> None:
    """Under AsyncCache (L1 + real Redis) coroutine methods are awaited; reads cached, writes
    through."""
    repo = AsyncUserRepository({"1": ADA})

    async def main() -> None:
        async with tc.AsyncCache(
            tiers=[tc.MemoryTier(), tc.RedisTier(redis_url, timeout=1.0)], prefix=prefix
        ) as cache:
            users = cache.wrap(
                repo, namespace="users", get="get_user", get_many="get_users",
                save="save_user", delete="delete_user",
            )
            assert await users.get_user("1") == ADA
            assert await users.get_user("1") == ADA
            assert repo.calls == [("get_users", ["1"])]
            await users.save_user("2", GRACE)
            assert repo.rows["2"] == GRACE
            assert await users.get_users(["1", "2"]) == {"1": ADA, "2": GRACE}
            await users.delete_user("1")
            assert "1" not in repo.rows
            assert await users.get_user("1") is None
            assert users.count() == 1

    asyncio.run(main())


def test_async_repository_under_sync_cache_is_refused(cache: tc.Cache) -> None:
    """A coroutine repository used from a sync Cache raises ConfigurationError, not a stray
    coroutine."""
    users = cache.wrap(AsyncUserRepository({"1": ADA}), namespace="async", get="get_user")
    with pytest.raises(tc.ConfigurationError, match="AsyncCache"):
        users.get_user("1")


_MYPY_CONFIG = """
[mypy]
strict = True
[mypy-tiercache.*]
follow_imports = silent
[mypy-redis.*,fakeredis.*,sqlalchemy.*,rich.*,msgpack.*,cachetools.*,psycopg.*,hypothesis.*]
follow_imports = skip
ignore_missing_imports = True
"""

_MYPY_PROGRAM = '''
import tiercache as tc


class UserRepository:
    def get_user(self, user_id: str) -> dict[str, str] | None:
        return None

    def save_user(self, user_id: str, user: dict[str, str]) -> None:
        pass

    def count(self) -> int:
        return 0


cache = tc.Cache(tiers=[tc.MemoryTier()])
repo: UserRepository = cache.wrap(
    UserRepository(), namespace="users", get="get_user", save="save_user"
)
reveal_type(cache.wrap(UserRepository(), namespace="users2", get="get_user"))
found: dict[str, str] | None = repo.get_user("1")
n: int = repo.count()
# Were wrap() typed Any this ignore would be unused, an error under --strict.
wrong: int = cache.wrap(  # type: ignore[assignment]
    UserRepository(), namespace="users3", get="get_user"
)
'''


def test_type_checkers_see_the_repository_type(tmp_path: Path) -> None:
    """mypy --strict: cache.wrap(repo, ...) is typed as the repository's class, not Any."""
    (tmp_path / "repo_check.py").write_text(textwrap.dedent(_MYPY_PROGRAM))
    (tmp_path / "mypy.ini").write_text(_MYPY_CONFIG)
    # The editable install hides tiercache from mypy; point it at the source tree.
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run(
        [*MYPY, "--config-file", "mypy.ini", "--cache-dir", str(tmp_path / ".mypy_cache"),
         "repo_check.py"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Revealed type is "repo_check.UserRepository"' in done.stdout, done.stdout
