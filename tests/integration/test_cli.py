"""`tiercache bench`, run as a real command in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_trace

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/x"
PASSWORD = "pw-9f3c1e7ab2"  # nothing else in a run's output can contain it by chance


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tiercache.bench bench ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tiercache.bench", "bench", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def bench_json(*args: str) -> dict[str, Any]:
    """Run bench with --json; it must succeed and print one JSON object."""
    done = bench("--json", *args)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_one_line_error(done: subprocess.CompletedProcess[str]) -> None:
    """A failure: non-zero status, one 'tiercache: error:' line on stderr, no traceback."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tiercache: error: ")


def trace_path(name: str) -> Path:
    return shared_trace(name)


def test_default_run_prints_the_cascade_table() -> None:
    """With only --requests, the embedded run exits 0 and prints a row per layer."""
    done = bench("--requests", "1000")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("│")}
    assert {"L1", "L2", "store"} <= rows
    assert "store loads avoided" in done.stdout
    assert "Belady" in done.stdout


def test_json_counts_add_up_for_a_read_only_workload() -> None:
    """Every read is answered by exactly one layer, and each layer sees the misses above it."""
    report = bench_json("--requests", "1500", "--keys", "500", "--l1-size", "100")
    layers = report["layers"]
    assert report["requests"] == report["reads"] == 1500
    assert min(layer["hits"] for layer in layers.values()) > 0
    assert layers["L1"]["hits"] + layers["L2"]["hits"] + report["store_loads"] == 1500
    assert layers["L1"]["requests"] == 1500
    assert layers["L2"]["requests"] == layers["L1"]["misses"]
    assert layers["store"]["requests"] == layers["L2"]["misses"] == report["store_loads"]
    assert report["store_loads_avoided"] == 1500 - report["store_loads"]
    assert sum(layer["absorbed"] for layer in layers.values()) == pytest.approx(1.0)
    assert sum(layer["served"] for layer in layers.values()) == 1500
    # Each key is loaded from the store once; later reads find it in L2 or L1.
    assert report["store_loads"] == report["workload"]["distinct_keys"]
    # L1 is a real cache of that size: never above the offline optimum.
    assert layers["L1"]["hit_rate"] <= report["reference"]["belady_hit_ratio"] + 1e-9


def test_json_same_seed_same_workload() -> None:
    """The seed fixes the key stream: two runs load the same keys the same number of times."""
    first = bench_json("--requests", "500", "--keys", "500", "--seed", "4")
    second = bench_json("--requests", "500", "--keys", "500", "--seed", "4")
    assert first["workload"] == second["workload"]
    assert first["reference"] == second["reference"]


def test_write_ratio_mixes_writes_in() -> None:
    """--write-ratio turns about that share of requests into write-through sets."""
    report = bench_json("--requests", "1000", "--keys", "500", "--write-ratio", "0.25")
    layers = report["layers"]
    assert 175 < report["writes"] < 325
    assert report["reads"] + report["writes"] == 1000
    assert layers["L1"]["hits"] + layers["L2"]["hits"] + report["store_loads"] == report["reads"]
    assert layers["store"]["sets"] == report["writes"]


@pytest.mark.parametrize("name", ["lirs_loop.trace.gz", "arc_OLTP.lis.xz"])
def test_trace_workload_runs(name: str) -> None:
    """trace:PATH replays the first --requests keys of a LIRS or ARC trace."""
    report = bench_json("--workload", f"trace:{trace_path(name)}", "--requests", "1500")
    assert report["requests"] == 1500
    layers = report["layers"]
    assert layers["L1"]["hits"] + layers["L2"]["hits"] + report["store_loads"] == 1500


def test_loop_trace_defeats_lru_l1_but_not_the_optimum() -> None:
    """The LIRS loop (1,011 keys round and round) gives an LRU of 1,000 entries no hit at all."""
    path = trace_path("lirs_loop.trace.gz")
    report = bench_json("--workload", f"trace:{path}", "--requests", "4000",
                        "--l1-admission", "lru")
    assert report["layers"]["L1"]["hits"] == 0
    assert report["reference"]["lru_hit_ratio"] == 0.0
    assert report["reference"]["belady_hit_ratio"] > 0.5
    assert report["layers"]["L2"]["hits"] == 4000 - report["workload"]["distinct_keys"]


def test_loop_trace_is_where_tinylfu_beats_lru() -> None:
    """The default L1 (W-TinyLFU) keeps part of the loop that an LRU of the same size loses."""
    path = trace_path("lirs_loop.trace.gz")
    report = bench_json("--workload", f"trace:{path}", "--requests", "4000")
    assert report["layers"]["L1"]["hits"] > 1000


@pytest.mark.redis
def test_real_redis_run_leaves_no_keys_behind(redis_url: str, redis_client: Any) -> None:
    """--redis uses the real server under a unique prefix and removes every key at the end."""
    report = bench_json("--redis", redis_url, "--requests", "1500", "--keys", "500",
                        "--l1-size", "100", "--write-ratio", "0.1")
    prefix = report["config"]["prefix"]
    assert prefix.startswith("tcbench-")
    assert report["config"]["l2"] == redis_url
    assert report["layers"]["L2"]["hits"] > 0
    assert list(redis_client.scan_iter(match=f"{prefix}*", count=1000)) == []


@pytest.mark.postgres
def test_postgres_store_works_and_drops_its_table(postgres_url: str) -> None:
    """--store with a PostgreSQL URL loads from a table of its own and drops it at the end."""
    import sqlalchemy as sa

    report = bench_json("--store", postgres_url, "--requests", "1000", "--keys", "500")
    store = report["config"]["store"]
    assert store["kind"] == "SQLStore" and store["table"].startswith("tiercache_bench_")
    assert report["store_loads"] == report["workload"]["distinct_keys"] > 0
    engine = sa.create_engine(postgres_url)
    try:
        assert not sa.inspect(engine).has_table(store["table"])
    finally:
        engine.dispose()


def test_sqlite_store_in_an_existing_file_keeps_the_file_and_drops_the_table(
    tmp_path: Path,
) -> None:
    """--store PATH of an existing database: its other tables stay, the bench's table goes."""
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mine (x)")
    conn.close()
    report = bench_json("--store", f"sqlite:///{db}", "--requests", "300")
    assert report["config"]["store"]["kind"] == "SQLiteStore"
    conn = sqlite3.connect(db)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert tables == {"mine"}


def test_sqlite_store_in_a_new_file_leaves_nothing_behind(tmp_path: Path) -> None:
    """--store PATH of a file that did not exist: the file is removed at the end."""
    report = bench_json("--store", str(tmp_path / "new.db"), "--requests", "300")
    assert report["store_loads"] > 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--workload", "foo"],
        ["--workload", "zipf:0"],
        ["--workload", "zipf:-1"],
        ["--workload", "zipf:abc"],
        ["--workload", "trace:/nonexistent/trace.gz"],
        ["--workload", "trace:"],
        ["--requests", "-5"],
        ["--keys", "-1"],
        ["--l1-size", "0"],
        ["--write-ratio", "1.5"],
        ["--l2-ttl", "-3"],
        ["--no-such-option"],
        ["--redis", "http://127.0.0.1:6379"],
        ["--store", "nosuchdialect://x"],
    ],
)
def test_bad_options_are_one_line_usage_errors(args: list[str]) -> None:
    """A bad option: exit status 2 and one 'tiercache: error:' line, no traceback."""
    done = bench(*args, "--requests", "10") if "--requests" not in args else bench(*args)
    assert_one_line_error(done)
    assert done.returncode == 2


def test_unreadable_trace_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that is not a trace is refused before anything runs."""
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a trace\n")
    done = bench("--workload", f"trace:{junk}", "--requests", "10")
    assert_one_line_error(done)
    assert done.returncode == 2


@pytest.mark.parametrize(
    "args", [["--redis", "redis://127.0.0.1:1"], ["--store", UNREACHABLE_POSTGRES]]
)
def test_unreachable_servers_are_one_line_runtime_errors(args: list[str]) -> None:
    """No server at the URL: exit status 1 and one 'tiercache: error:' line, no traceback."""
    done = bench(*args, "--requests", "10", timeout=60)
    assert_one_line_error(done)
    assert done.returncode == 1


def test_plot_without_matplotlib_names_the_extra() -> None:
    """--plot with matplotlib missing: one line naming tiercache[bench], exit status 2."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from tiercache.bench.cli import main\n"
        "raise SystemExit(main(['bench', '--requests', '10', '--plot', 'x.png']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert_one_line_error(done)
    assert done.returncode == 2
    assert "install" in done.stderr and "tiercache[bench]" in done.stderr


def test_plot_writes_a_png(tmp_path: Path) -> None:
    """--plot FILE.png draws the cascade when matplotlib is installed."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "cascade.png"
    done = bench("--requests", "300", "--plot", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


def test_version_and_missing_command() -> None:
    """--version prints the version; no command at all is a one-line usage error."""
    done = subprocess.run(
        [sys.executable, "-m", "tiercache.bench", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("tiercache ")
    done = subprocess.run(
        [sys.executable, "-m", "tiercache.bench"], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert_one_line_error(done)
    assert done.returncode == 2


@pytest.fixture
def redis_with_password(redis_url: str, tmp_path: Path) -> Iterator[int]:
    """A redis-server of the test's own that requires PASSWORD; its port. Stopped by pid."""
    import redis

    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", PASSWORD, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=PASSWORD, socket_timeout=0.5,
                         socket_connect_timeout=0.5, retry=None)
    try:
        for _ in range(500):  # up to ~10 s for the server to answer
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if proc.poll() is not None:
                    pytest.fail("redis-server exited at start")
                with socket.socket() as probe:
                    probe.settimeout(0.02)
                    probe.connect_ex(("127.0.0.1", port))
        else:
            pytest.fail("redis-server did not answer")
        yield port
    finally:
        client.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def assert_no_password(done: subprocess.CompletedProcess[str]) -> None:
    """The run's whole output (stdout, and stderr where the logs go) never holds PASSWORD."""
    assert PASSWORD not in done.stdout
    assert PASSWORD not in done.stderr


@pytest.mark.redis
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_redis_password_never_appears_in_the_output(redis_with_password: int, form: str) -> None:
    """bench --redis with a password: the table, the JSON and the logs show *** instead."""
    port = redis_with_password
    url = (f"redis://:{PASSWORD}@127.0.0.1:{port}/0" if form == "userinfo"
           else f"redis://127.0.0.1:{port}/0?password={PASSWORD}")
    done = bench("--json", "--redis", url, "--requests", "300", "--keys", "100", "--l1-size", "10")
    assert done.returncode == 0, done.stderr
    assert_no_password(done)
    report = json.loads(done.stdout)
    assert report["layers"]["L2"]["hits"] > 0  # the password did reach the server
    assert "***" in report["config"]["l2"]
    done = bench("--redis", url, "--requests", "300", "--keys", "100")
    assert done.returncode == 0, done.stderr
    assert_no_password(done)
    assert "***" in done.stdout


@pytest.mark.redis
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_wrong_redis_password_error_does_not_repeat_it(
    redis_with_password: int, form: str
) -> None:
    """A refused password: a one-line error naming the server, without the password."""
    port, wrong = redis_with_password, PASSWORD + "x"
    url = (f"redis://:{wrong}@127.0.0.1:{port}/0" if form == "userinfo"
           else f"redis://127.0.0.1:{port}/0?password={wrong}")
    done = bench("--redis", url, "--requests", "10")
    assert_one_line_error(done)
    assert_no_password(done)
    assert f"127.0.0.1:{port}" in done.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_store_password_never_appears_in_the_output(postgres_url: str, form: str) -> None:
    """bench --store with a password (trust auth ignores it): the output shows *** instead."""
    url = (postgres_url.replace("postgres@", f"postgres:{PASSWORD}@") if form == "userinfo"
           else f"{postgres_url}?password={PASSWORD}")
    assert PASSWORD in url
    done = bench("--json", "--store", url, "--requests", "200", "--keys", "100")
    assert done.returncode == 0, done.stderr
    assert_no_password(done)
    assert "***" in json.loads(done.stdout)["config"]["store"]["url"]


def test_store_url_refused_by_sqlalchemy_does_not_repeat_its_password() -> None:
    """An unparsable store URL: a one-line usage error without the password."""
    done = bench("--store", f"postgresql+psycopg://u:{PASSWORD}@h:notaport/db", "--requests", "10")
    assert_one_line_error(done)
    assert_no_password(done)


def test_console_script_runs_the_bench_cli() -> None:
    """The installed `tiercache` command is tiercache.bench.cli:main."""
    script = Path(sys.executable).parent / "tiercache"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("tiercache "), done.stderr
