# SPDX-License-Identifier: MIT
"""--shard K/N splits a run into disjoint parts that cover it; vfio-harness merge joins the
parts' results into the run's, and refuses parts that are not shards of one split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli
from harness.plugin.shard import parse_shard, shard_of
from harness.report.merge import MergeError, merge, missing_shards
from harness.report.results import KernelInfo, Results, RunInfo, TestResult, load

pytest_plugins = ["pytester"]

TESTS = """
import pytest

@pytest.mark.parametrize("n", range(30))
def test_x(n):
    assert n != 7
"""


def ran(pytester: pytest.Pytester, *argv: str) -> set[str]:
    result = pytester.runpytest("-p", "no:randomly", "--results=r.json", *argv)
    assert result.ret in (0, 1, 5)
    data = json.loads((pytester.path / "r.json").read_text())
    return {test["nodeid"] for test in data["tests"]}


def test_the_shards_are_disjoint_and_cover_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_s=TESTS)
    everything = ran(pytester)
    parts = [ran(pytester, f"--shard={k}/3") for k in (1, 2, 3)]
    assert set().union(*parts) == everything and len(everything) == 30
    assert sum(len(p) for p in parts) == 30
    assert all(parts), "a shard of 30 tests in 3 parts came out empty"
    assert parts[0] == ran(pytester, "--shard=1/3")  # stable


def test_an_empty_shard_is_a_green_job(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_only():\n    pass\n")
    statuses = [pytester.runpytest(f"--shard={k}/4").ret for k in (1, 2, 3, 4)]
    assert sorted(statuses) == [pytest.ExitCode.OK] * 4  # three of them ran nothing


def test_bad_shards_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_s=TESTS)
    for value in ("0/3", "4/3", "a/b", "3"):
        assert pytester.runpytest(f"--shard={value}").ret == pytest.ExitCode.USAGE_ERROR
    with pytest.raises(ValueError, match="between 1 and N"):
        parse_shard("5/4")
    assert shard_of("t.py::x[bookworm]", 4) == shard_of("t.py::x[bookworm]", 4)


def part(shard: str, kernel: str, *tests: tuple[str, str], status: int = 0) -> Results:
    run = RunInfo(harness="0.1.0", shard=shard, exit_status=status, started=f"2026-12-0{shard[0]}",
                  kernels=[KernelInfo(kernel, release="6.1.0-50-amd64")])  # fmt: skip
    return Results(run, [TestResult(t, f"{t}[{kernel}]", kernel, outcome=o) for t, o in tests])


def test_merged_parts_are_one_run() -> None:
    one = part("1/3", "bookworm", ("t.py::a", "passed"))
    two = part("3/3", "debug", ("t.py::a", "failed"), ("t.py::b", "passed"), status=1)
    merged = merge([one, two])
    assert [t.key for t in merged.tests] == [("bookworm", "t.py::a"), ("debug", "t.py::a"),
                                             ("debug", "t.py::b")]  # fmt: skip
    assert [k.choice for k in merged.run.kernels] == ["bookworm", "debug"]
    assert merged.run.exit_status == 1
    assert merged.run.started == "2026-12-01"
    assert merged.run.shard == "merged 1/3,3/3"
    assert missing_shards([one, two]) == ["2/3"]
    with pytest.raises(MergeError, match="in two parts"):
        merge([one, one])
    with pytest.raises(MergeError, match="different splits"):
        merge([one, part("1/2", "sid")])


def test_the_merge_command_writes_results_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, results in (("p1", part("1/2", "bookworm", ("t.py::a", "passed"))),
                          ("p2", part("2/2", "bookworm", ("t.py::b", "skipped")))):  # fmt: skip
        results.write(tmp_path / name / "results.json")
    out = tmp_path / "merged"
    assert cli.main(["merge", str(out), str(tmp_path / "p1"), str(tmp_path / "p2")]) == 0
    assert len(load(out / "results.json").tests) == 2
    assert "t.py::b" in (out / "report.html").read_text()
    assert "missing" not in capsys.readouterr().out
    assert cli.main(["merge", str(out), str(tmp_path / "p1"), str(tmp_path / "p1")]) == 64
