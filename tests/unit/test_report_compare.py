# SPDX-License-Identifier: MIT
"""vfio-harness compare: every kind of change, the pairing of kernels, the exit status, and
results.json read back (or refused) by version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli
from harness.report.compare import CompareError, compare, render_table
from harness.report.results import (
    Results,
    ResultsError,
    RunInfo,
    Splat,
    TestResult,
    errnos_in,
    load,
)

SPLAT = Splat("warning", "0123abcd", "WARNING: CPU: 0 PID: 1 at hmdev_dma_run")


def result(
    test_id: str, outcome: str = "passed", kernel: str = "bookworm", **more: object
) -> TestResult:
    return TestResult(test_id, f"{test_id}[{kernel}]", kernel, outcome=outcome, **more)  # type: ignore[arg-type]


def results(*tests: TestResult) -> Results:
    return Results(RunInfo(harness="0.1.0"), list(tests))


BASE = results(
    result("t.py::ok"),
    result("t.py::breaks"),
    result("t.py::gets_fixed", "failed", errnos=["EINVAL"]),
    result("t.py::errno", "failed", errnos=["EINVAL"]),
    result("t.py::splats"),
    result("t.py::skips_now"),
    result("t.py::known_now"),
    result("t.py::gone"),
    result("t.py::runs_now", "skipped"),
    result("t.py::splat_goes", splats=[SPLAT]),
)
NEW = results(
    result("t.py::ok"),
    result("t.py::breaks", "failed", errnos=["ENOTTY"], message="expected EINVAL, got ENOTTY"),
    result("t.py::gets_fixed"),
    result("t.py::errno", "failed", errnos=["EFAULT"]),
    result("t.py::splats", "failed", splats=[SPLAT]),
    result("t.py::skips_now", "skipped"),
    result("t.py::known_now", "xfailed"),
    result("t.py::runs_now"),
    result("t.py::splat_goes"),
    result("t.py::added"),
)


def test_every_kind_of_change_is_found() -> None:
    found = {(c.kind, c.test) for c in compare(BASE, NEW).changes}
    assert found == {
        ("new failure", "t.py::breaks"),
        ("new failure", "t.py::splats"),
        ("new splat", "t.py::splats"),
        ("known failure", "t.py::known_now"),
        ("errno changed", "t.py::errno"),
        ("became skip", "t.py::skips_now"),
        ("fixed", "t.py::gets_fixed"),
        ("gone splat", "t.py::splat_goes"),
        ("now runs", "t.py::runs_now"),
        ("new test", "t.py::added"),
        ("gone test", "t.py::gone"),
    }


def test_regressions_come_first_and_say_what_changed() -> None:
    comparison = compare(BASE, NEW)
    kinds = [c.kind for c in comparison.changes]
    assert kinds.index("became skip") < kinds.index("fixed")
    assert {c.kind for c in comparison.regressions} == {
        "new failure", "known failure", "errno changed", "new splat", "became skip", "gone test"
    }  # fmt: skip
    table = render_table(comparison)
    assert "passed -> failed (ENOTTY)" in table
    assert "expected EINVAL, got ENOTTY" in table
    assert "failed (EINVAL) -> failed (EFAULT)" in table
    assert "0123abcd" in table
    assert comparison.compared == 9


def test_the_same_results_change_nothing() -> None:
    comparison = compare(BASE, BASE)
    assert comparison.changes == ()
    assert render_table(comparison).endswith("no change\n")


def test_two_kernels_of_one_run_or_one_kernel_each() -> None:
    run = results(result("t.py::x", kernel="bookworm"), result("t.py::x", "failed", kernel="debug"))
    comparison = compare(run, run, kernels=("bookworm", "debug"))
    assert [(c.kind, c.kernel) for c in comparison.changes] == [
        ("new failure", "bookworm -> debug")
    ]
    single = results(result("t.py::x", "failed", kernel="custom-linux-1"))
    assert compare(results(result("t.py::x")), single).pairs == (("bookworm", "custom-linux-1"),)
    with pytest.raises(CompareError, match="no kernel sid"):
        compare(run, run, kernels=("bookworm", "sid"))
    with pytest.raises(CompareError, match="share no kernel"):
        compare(run, results(result("a", kernel="x"), result("a", kernel="y")))


def test_a_known_failure_that_errors_now_or_passes_now() -> None:
    base = results(result("t.py::a", "xfailed"), result("t.py::b", "xfailed"))
    new = results(result("t.py::a", "error"), result("t.py::b", "passed"))
    assert [(c.kind, c.test) for c in compare(base, new).changes] == [
        ("new failure", "t.py::a"), ("fixed", "t.py::b")
    ]  # fmt: skip


def test_an_incomplete_run_and_a_gone_kernel_are_regressions() -> None:
    base = results(result("t.py::a", kernel="bookworm"), result("t.py::a", kernel="sid"))
    new = results(result("t.py::a", kernel="bookworm"), result("t.py::a", kernel="trixie"))
    new.run.exit_status = 2  # interrupted: half its tests never ran
    new.run.missing_shards = ["2/4"]
    comparison = compare(base, new)
    assert [(c.kind, c.kernel) for c in comparison.changes] == [
        ("incomplete run", ""), ("incomplete run", ""), ("gone kernel", "sid"),
        ("new kernel", "trixie"),
    ]  # fmt: skip
    assert "the new run exited 2" in render_table(comparison)
    assert "shards missing: 2/4" in render_table(comparison)


def test_errno_names_are_taken_from_messages() -> None:
    assert errnos_in("expected EINVAL or ENOTTY, got EFAULT (EINVAL)") == ["EINVAL", "ENOTTY",
                                                                          "EFAULT"]  # fmt: skip
    assert errnos_in("AssertionError: ERROR in EOF") == []
    assert errnos_in("RIP: 0010:hmdev_reset EFLAGS: 00010246 (EIO)") == ["EIO"]


def test_results_json_round_trips_and_other_versions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    NEW.write(path)
    assert load(path) == NEW
    data = json.loads(path.read_text())
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="version 99, this harness reads version 1"):
        load(path)
    path.write_text("[]")
    with pytest.raises(ResultsError, match=r"not a vfio-harness results\.json"):
        load(path)


def test_the_command_exits_1_on_regressions_and_0_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, side in (("base", BASE), ("new", NEW)):
        (tmp_path / name).mkdir()
        side.write(tmp_path / name / "results.json")
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "new")]) == 1
    assert "new failure" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "base")]) == 0
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "none")]) == 64
    assert "no results here" in capsys.readouterr().err
