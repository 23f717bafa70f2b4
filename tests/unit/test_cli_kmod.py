# SPDX-License-Identifier: MIT
"""`vfio-harness kmod check`: findings printed one per line, exit 1 when there are any."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.commands import kmod
from harness.kmod.checkpatch import Checkpatch

BAD_C = "// SPDX-License-Identifier: GPL-2.0-only\nstatic int foo( int a )\n{\n\treturn a;\n}\n"
CLEAN_C = "// SPDX-License-Identifier: GPL-2.0-only\nstatic int foo(int a)\n{\n\treturn a;\n}\n"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vfio-harness")
    kmod.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_kmod_check_prints_findings_and_fails(
    checkpatch_tool: Checkpatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text(BAD_C)
    assert run(["kmod", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2: ERROR:SPACING: space prohibited after that open parenthesis" in out
    assert "    +static int foo( int a )" in out
    assert "2 errors, 0 warnings, 0 checks in 1 files" in out


def test_kmod_check_on_a_clean_file_passes(
    checkpatch_tool: Checkpatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = tmp_path / "clean.c"
    clean.write_text(CLEAN_C)
    assert run(["kmod", "check", str(clean)]) == 0
    assert "0 errors, 0 warnings, 0 checks" in capsys.readouterr().out


def test_kmod_sample_names_the_samples_it_knows(capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli
    from harness.cli_errors import EXIT_USAGE

    with pytest.raises(SystemExit) as exited:
        cli.main(["kmod", "sample", "mttyy"])
    assert exited.value.code == EXIT_USAGE
    assert (
        "invalid choice: 'mttyy' (choose from 'mtty', 'mdpy', 'mbochs')" in capsys.readouterr().err
    )
