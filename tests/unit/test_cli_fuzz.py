# SPDX-License-Identifier: MIT
"""`vfio-harness fuzz`'s options: mistakes are one-line usage errors before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.cli_errors import EXIT_USAGE
from harness.commands import fuzz


def fuzz_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(["fuzz", *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("-n", "0"), "-n 0: give 1 or more VMs"),
        (("--iterations", "0"), "--iterations: give 1 or more"),
        (("--max-findings", "0"), "--max-findings: give 1 or more"),
        (("--vendor-sample", "mtty"), "a vendor's driver needs --mdev-type"),
        (("--vendor-sample", "mtty", "--mdev-type", "mtty-2", "--module-faults", "4"),
         "--module-faults is for our module's fault-injection build"),
        (("--vendor-sample", "mtty", "--vendor-src", "/x", "--mdev-type", "m"), "give one of"),
        (("--replay", "/nonexistent/test_x.py"), "--replay /nonexistent/test_x.py: no such file"),
    ],
)  # fmt: skip
def test_mistakes_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], said: str
) -> None:
    assert said in fuzz_error(capsys, *argv)


def test_a_duration_argparse_cannot_read(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["fuzz", "--duration", "ten"])
    assert exited.value.code == EXIT_USAGE
    assert "'ten': a duration like 90s, 10m or 1h" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_durations(given: str, seconds: float) -> None:
    assert fuzz.duration_arg(given) == seconds


def test_without_a_budget_a_campaign_runs_ten_minutes() -> None:
    args = cli.build_parser().parse_args(["fuzz"])
    fuzz.check_options(args)
    assert args.duration == 600.0 and args.iterations is None


def test_reports_hold_the_summary_the_timeline_and_this_run_s_reproducers(
    tmp_path: Path,
) -> None:
    finding = tmp_path / "cache" / "abc"
    finding.mkdir(parents=True)
    (finding / "test_finding_abc.py").write_text("def test_finding_abc(): pass\n")
    result: dict[str, object] = {"timeline": [[0.0, 0, 0], [10.0, 40, 928]], "programs": 40}
    (tmp_path / "reports").mkdir()
    fuzz.write_reports(tmp_path / "reports", result, [finding])
    assert (tmp_path / "reports" / "timeline.csv").read_text().splitlines() == [
        "seconds,programs,pcs",
        "0.0,0,0",
        "10.0,40,928",
    ]
    assert (tmp_path / "reports" / "findings" / "abc" / "test_finding_abc.py").exists()
