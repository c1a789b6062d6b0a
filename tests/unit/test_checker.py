"""The consistency checker on hand-made histories: strict and bounded modes."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

import tiercache as tc
from tiercache.testing.checker import History, Op, check


def history(*ops: tuple[str, str, object, float, float | None]) -> History:
    """A history of ``(kind, key, value, invoke, complete)`` on one client."""
    h = History("c1")
    for kind, key, value, invoke, complete in ops:
        h.add(kind, key, value, invoke, complete)  # type: ignore[arg-type]
    return h


def test_read_of_the_latest_completed_write_is_linearizable() -> None:
    """A read after a write completed returns that write's value: no violation."""
    h = history(("write", "k", 1, 0.0, 1.0), ("read", "k", 1, 2.0, 3.0))
    report = check(h, mode="strict")
    assert report.ok, report
    assert (report.reads, report.writes, report.keys) == (1, 1, 1)


def test_read_of_an_overwritten_value_is_a_strict_violation() -> None:
    """A read that began after a second write completed may not return the first value."""
    h = history(
        ("write", "k", "old", 0.0, 1.0),
        ("write", "k", "new", 2.0, 3.0),
        ("read", "k", "old", 4.0, 5.0),
    )
    report = check(h, mode="strict")
    assert not report.ok
    (violation,) = report.violations
    assert violation.key == "k"
    assert violation.read.value == "old"
    assert violation.allowed == ["new"]
    assert violation.stale_by == pytest.approx(1.0)
    assert report.stale_keys() == ["k"]
    assert "key 'k'" in str(report)


def test_read_concurrent_with_a_write_may_return_either_value() -> None:
    """A read overlapping a write may see the value before or after it."""
    h = history(
        ("write", "k", "old", 0.0, 1.0),
        ("write", "k", "new", 2.0, 4.0),
        ("read", "k", "old", 3.0, 3.5),
        ("read", "k", "new", 3.0, 3.5),
    )
    assert check(h, mode="strict").ok


def test_read_may_not_return_a_value_written_after_it_completed() -> None:
    """A value from the future is a violation: its write began after the read returned."""
    h = history(("read", "k", "later", 0.0, 1.0), ("write", "k", "later", 2.0, 3.0))
    report = check(h, mode="strict")
    (violation,) = report.violations
    assert violation.allowed == [tc.MISSING]
    assert violation.stale_by is None  # no write explains it at any age


def test_initial_value_allowed_until_a_write_completes() -> None:
    """Absent (or the given initial value) is allowed before any write completed."""
    h = history(
        ("write", "k", 1, 1.0, 3.0),
        ("read", "k", tc.MISSING, 0.0, 0.5),
        ("read", "k", tc.MISSING, 2.0, 2.5),  # the write is still running
        ("read", "k", tc.MISSING, 4.0, 4.5),  # the write completed before: stale
    )
    report = check(h, mode="strict")
    assert [v.read.invoke for v in report.violations] == [4.0]
    seeded = history(("read", "k", "seed", 0.0, 0.5))
    assert check(seeded, mode="strict", initial={"k": "seed"}).ok
    assert not check(seeded, mode="strict").ok


def test_delete_writes_absence() -> None:
    """After a delete completes, absent is the only allowed answer in strict mode."""
    h = history(
        ("write", "k", 1, 0.0, 1.0),
        ("delete", "k", None, 2.0, 3.0),
        ("read", "k", tc.MISSING, 4.0, 4.1),
        ("read", "k", 1, 4.0, 4.1),
    )
    report = check(h, mode="strict")
    (violation,) = report.violations
    assert violation.read.value == 1
    assert violation.allowed == [tc.MISSING]


def test_bounded_mode_allows_staleness_within_the_window() -> None:
    """In bounded mode a value overwritten less than ``window`` ago is allowed; older is not."""
    h = history(
        ("write", "k", "old", 0.0, 1.0),
        ("write", "k", "new", 2.0, 3.0),
        ("read", "k", "old", 3.5, 3.6),  # overwritten 0.5 s before: allowed by a 1 s window
    )
    assert not check(h, mode="strict").ok
    report = check(h, mode="bounded", window=1.0)
    assert report.ok, report
    assert report.max_staleness == pytest.approx(0.5)

    late = history(
        ("write", "k", "old", 0.0, 1.0),
        ("write", "k", "new", 2.0, 3.0),
        ("read", "k", "old", 4.5, 4.6),  # overwritten 1.5 s before: outside the window
    )
    report = check(late, mode="bounded", window=1.0)
    (violation,) = report.violations
    assert violation.stale_by == pytest.approx(1.5)
    assert check(late, mode="bounded", window=2.0).ok


def test_bounded_mode_still_rejects_values_never_written() -> None:
    """No window explains a value no write ever wrote."""
    h = history(("write", "k", 1, 0.0, 1.0), ("read", "k", 99, 1.2, 1.3))
    report = check(h, mode="bounded", window=10.0)
    (violation,) = report.violations
    assert violation.stale_by is None
    assert violation.allowed == [tc.MISSING, 1]


def test_incomplete_write_may_or_may_not_have_happened() -> None:
    """A write that raised may explain a later read, and never certainly overwrites another."""
    h = history(
        ("write", "k", "a", 0.0, 1.0),
        ("write", "k", "b", 2.0, None),  # raised: effect unknown
        ("read", "k", "a", 5.0, 5.1),
        ("read", "k", "b", 6.0, 6.1),
    )
    assert check(h, mode="strict").ok


def test_failed_reads_are_not_checked() -> None:
    """A read that did not complete returned nothing to check."""
    h = history(("write", "k", 1, 0.0, 1.0), ("read", "k", 42, 2.0, None))
    report = check(h, mode="strict")
    assert report.ok and report.reads == 0


def test_keys_are_checked_independently() -> None:
    """One key's writes never explain another key's reads."""
    h = history(
        ("write", "a", 1, 0.0, 1.0),
        ("write", "b", 2, 0.0, 1.0),
        ("read", "a", 2, 2.0, 2.1),
        ("read", "b", 2, 2.0, 2.1),
    )
    report = check(h, mode="strict")
    assert report.stale_keys() == ["a"]
    assert report.keys == 2


def test_values_compare_by_canonical_json() -> None:
    """A tuple read back as a list (JSON round trip) is the same value; dict order is irrelevant."""
    h = history(
        ("write", "k", {"a": 1, "b": (1, 2)}, 0.0, 1.0),
        ("read", "k", {"b": [1, 2], "a": 1}, 2.0, 2.1),
    )
    assert check(h, mode="strict").ok


def test_recording_times_calls_and_marks_failures() -> None:
    """read/write/delete time the call; a call that raises is recorded incomplete and re-raised."""
    ticks = iter(range(100))
    h = History("p", clock=lambda: float(next(ticks)))
    h.write("k", 1, lambda: None)
    assert h.read("k", lambda: 1) == 1
    with pytest.raises(RuntimeError):
        h.write("k", 2, _boom)
    h.delete("k", lambda: None)
    write, read, failed, delete = h.ops
    assert (write.invoke, write.complete, write.value) == (0.0, 1.0, 1)
    assert (read.invoke, read.complete, read.value) == (2.0, 3.0, 1)
    assert failed.complete is None and failed.value == 2
    assert delete.kind == "delete" and delete.value is tc.MISSING
    pending = h.invoke("read", "k")
    pending.ok(7)
    with pytest.raises(RuntimeError):
        pending.ok(8)


def _boom() -> None:
    raise RuntimeError("boom")


def test_history_is_thread_safe() -> None:
    """Many threads recording at once lose no operation."""
    h = History("threads")
    barrier = threading.Barrier(8, timeout=10)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(500):
            h.write(f"k{i % 5}", (n, i), lambda: None)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(h) == 8 * 500
    assert len({op.id for op in h.ops}) == 8 * 500


def test_json_lines_round_trip_and_merge() -> None:
    """Histories serialize to JSON lines and merge; MISSING and incomplete ops survive."""
    p1 = History("p1")
    p1.add("write", "k", "old", 0.0, 1.0)
    p1.add("delete", "k", None, 2.0, None)
    p2 = History("p2")
    p2.add("write", "k", "new", 3.0, 4.0)
    p2.add("read", "k", "old", 5.0, 5.1)
    p2.add("read", "k", tc.MISSING, 5.0, 5.1)
    buffer = io.StringIO()
    p1.dump(buffer)
    merged = History.merge(History.loads(buffer.getvalue()), History.loads(p2.dumps()))
    assert len(merged) == 5
    assert {op.process for op in merged} == {"p1", "p2"}
    deleted = next(op for op in merged if op.kind == "delete")
    assert deleted.value is tc.MISSING and deleted.complete is None
    report = check(merged, mode="strict")
    # "old" was overwritten by "new" (completed at 4.0) before the read at 5.0;
    # absent is allowed because the delete never completed (it may land any time).
    assert [v.read.value for v in report.violations] == ["old"]
    assert Op.from_json(merged.ops[0].to_json()) == merged.ops[0]


def test_save_and_load_file(tmp_path: Path) -> None:
    """save() and load() round-trip a history through a file."""
    path = tmp_path / "h.jsonl"
    h = History("p")
    h.add("write", ("t", 1), [1, 2], 0.0, 1.0)
    h.save(path)
    loaded = History.load(path)
    assert [(o.key, o.value) for o in loaded] == [(str(("t", 1)), [1, 2])]


def test_bad_arguments_are_refused() -> None:
    """Unknown modes and kinds, negative windows and backwards times raise ValueError."""
    h = History()
    with pytest.raises(ValueError, match="mode must be"):
        check(h, mode="eventual")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window must be"):
        check(h, mode="bounded", window=-1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        h.add("update", "k", 1, 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot complete"):
        h.add("write", "k", 1, 2.0, 1.0)


def test_large_history_is_checked_quickly() -> None:
    """Thousands of operations per key check in well under a second of work (bisect + index)."""
    h = History("big")
    t = 0.0
    for i in range(3000):
        h.add("write", "k", i, t, t + 0.001)
        h.add("read", "k", i, t + 0.002, t + 0.003)
        t += 0.004
    report = check(h, mode="strict")
    assert report.ok and report.reads == 3000


def test_staleness_is_measured_from_the_most_recent_matching_write() -> None:
    """A value written twice is as stale as its latest write, not its first."""
    h = history(
        ("delete", "k", None, 0.0, 1.0),
        ("write", "k", 1, 2.0, 3.0),  # overwrites the first delete at 3.0
        ("delete", "k", None, 4.0, 5.0),  # current from 5.0 on
        ("read", "k", tc.MISSING, 6.0, 6.1),
    )
    report = check(h, mode="bounded", window=0.5)
    assert report.ok, report
    assert report.max_staleness == 0.0
