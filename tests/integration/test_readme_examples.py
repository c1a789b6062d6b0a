"""Every ```python block of the README runs as written and passes mypy --strict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE_PREFIX = "myapp"
"""The cache prefix the README's examples use on the real Redis; cleaned after each run."""

mypy_api = pytest.importorskip("mypy.api")


def readme_examples() -> list[tuple[int, str]]:
    """(first line number, source) of each ```python block of the README."""
    blocks: list[tuple[int, str]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.startswith("```python"):
            current, start = [], number + 1
        elif current is not None and line.startswith("```"):
            blocks.append((start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


EXAMPLES = readme_examples()


def test_the_readme_has_examples() -> None:
    """The parser finds the README's examples (an empty list would make the rest vacuous)."""
    assert len(EXAMPLES) >= 8


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """mypy --strict's error lines per example, from one run over all of them."""
    root = tmp_path_factory.mktemp("readme")
    paths = {line: root / f"readme_line{line}.py" for line, _ in EXAMPLES}
    for line, source in EXAMPLES:
        paths[line].write_text(source, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(ROOT)  # pyproject.toml's [tool.mypy] settings, as .ci/run uses them
    try:
        stdout, stderr, status = mypy_api.run(
            ["--strict", "--cache-dir", str(root / "cache"), *map(str, paths.values())]
        )
    finally:
        os.chdir(cwd)
    errors = {line: [e for e in stdout.splitlines() if e.startswith(str(path))]
              for line, path in paths.items()}
    if status != 0 and not any(errors.values()):
        pytest.fail(f"mypy failed outside the examples:\n{stdout}{stderr}")
    return errors


@pytest.mark.parametrize("line", [n for n, _ in EXAMPLES], ids=[f"line{n}" for n, _ in EXAMPLES])
def test_readme_example_type_checks(line: int, mypy_errors: dict[int, list[str]]) -> None:
    """mypy --strict accepts the example, against the installed tiercache and the repo's config."""
    assert mypy_errors[line] == [], f"README line {line}"


@pytest.mark.redis
@pytest.mark.parametrize(("line", "source"), EXAMPLES, ids=[f"line{n}" for n, _ in EXAMPLES])
def test_readme_example_runs(
    line: int, source: str, tmp_path: Path, redis_url: str
) -> None:
    """The example runs to completion in a fresh interpreter (files it makes go to a temp dir)."""
    path = tmp_path / f"readme_line{line}.py"
    path.write_text(source, encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
            timeout=120, check=False,
        )
    finally:
        _forget(redis_url)
    assert done.returncode == 0, f"README line {line}:\n{done.stdout}\n{done.stderr}"


def _forget(redis_url: str) -> None:
    """Remove the keys the examples left under their prefix on the real Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{EXAMPLE_PREFIX}:*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()
