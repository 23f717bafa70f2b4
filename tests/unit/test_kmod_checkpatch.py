# SPDX-License-Identifier: MIT
"""checkpatch.pl fetched from Debian's linux-source and run on small C files, and its output
parser. The fetch is real (cached after the first run); a failed fetch is a test failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.kmod.checkpatch import (
    Checkpatch,
    CheckpatchError,
    checkpatch_argv,
    run_checkpatch,
    source_package_for,
)
from harness.kmod.checkpatch_report import CheckpatchOutputError, parse_checkpatch_output

BAD_C = """\
// SPDX-License-Identifier: GPL-2.0-only
#include <linux/module.h>

int foo( int a )
{
    int b = a;
\tif (b == 1) {
\t\treturn 1;
\t}
\treturn recieve(b);
}
"""

CLEAN_C = """\
// SPDX-License-Identifier: GPL-2.0-only
#include <linux/module.h>

static int foo(int a)
{
\treturn a + 1;
}
"""

CLEAN_H = """\
/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef CLEAN_H
#define CLEAN_H

int bar(int a);

#endif /* CLEAN_H */
"""

BAD_FINDINGS = [
    (4, "ERROR", "SPACING"),  # "foo( "
    (4, "ERROR", "SPACING"),  # " )"
    (6, "WARNING", "LEADING_SPACE"),
    (7, "WARNING", "BRACES"),
    (10, "CHECK", "TYPO_SPELLING"),  # --strict only
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- real runs -----------------------------------------------------------------------------


def test_a_bad_file_reports_its_errors_warnings_and_checks(
    checkpatch_tool: Checkpatch, tmp_path: Path
) -> None:
    bad = write(tmp_path, "bad.c", BAD_C)
    report = run_checkpatch([bad], strict=True, checkpatch=checkpatch_tool)
    assert [(m.line, m.level, m.type) for m in report.messages] == BAD_FINDINGS
    assert (report.errors, report.warnings, report.checks) == (2, 2, 1)
    assert not report.clean
    assert {m.file for m in report.messages} == {str(bad)}
    assert report.messages[3].context == ("+\tif (b == 1) {", "+\t\treturn 1;", "+\t}")
    assert "'recieve' may be misspelled" in report.messages[4].text
    assert report.lines_checked == 11


def test_without_strict_there_are_no_checks(checkpatch_tool: Checkpatch, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.c", BAD_C)
    report = run_checkpatch([bad], strict=False, checkpatch=checkpatch_tool)
    assert (report.errors, report.warnings, report.checks) == (2, 2, 0)
    assert "TYPO_SPELLING" not in {m.type for m in report.messages}


def test_clean_files_report_nothing(checkpatch_tool: Checkpatch, tmp_path: Path) -> None:
    paths = [write(tmp_path, "clean.c", CLEAN_C), write(tmp_path, "clean.h", CLEAN_H)]
    report = run_checkpatch(paths, strict=True, checkpatch=checkpatch_tool)
    assert report.clean, report.summary()
    assert report.messages == ()
    assert report.files == tuple(str(p) for p in paths)


def test_files_are_named_as_given_and_counted_together(
    checkpatch_tool: Checkpatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "bad.c", BAD_C)
    write(tmp_path, "clean.c", CLEAN_C)
    monkeypatch.chdir(tmp_path)
    report = run_checkpatch([Path("bad.c"), Path("clean.c")], checkpatch=checkpatch_tool)
    assert report.files == ("bad.c", "clean.c")
    assert {m.file for m in report.messages} == {"bad.c"}
    assert report.errors == 2


def test_a_checkpatch_conf_in_home_or_cwd_changes_nothing(
    checkpatch_tool: Checkpatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write(tmp_path, "bad.c", BAD_C)
    write(tmp_path, ".checkpatch.conf", "--ignore SPACING,LEADING_SPACE,BRACES\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    report = run_checkpatch([bad], checkpatch=checkpatch_tool)
    assert report.errors == 2


def test_ignored_types_are_not_reported(checkpatch_tool: Checkpatch, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.c", BAD_C)
    report = run_checkpatch([bad], ignore=["SPACING", "BRACES"], checkpatch=checkpatch_tool)
    assert [m.type for m in report.messages] == ["LEADING_SPACE", "TYPO_SPELLING"]


def test_a_missing_file_is_an_error_not_a_clean_report(
    checkpatch_tool: Checkpatch, tmp_path: Path
) -> None:
    with pytest.raises(CheckpatchError, match=r"not files: .*nope\.c"):
        run_checkpatch([tmp_path / "nope.c"], checkpatch=checkpatch_tool)
    with pytest.raises(CheckpatchError, match="no files"):
        run_checkpatch([], checkpatch=checkpatch_tool)


def test_the_cached_checkpatch_is_the_host_release_s(checkpatch_tool: Checkpatch) -> None:
    assert checkpatch_tool.script.name == "checkpatch.pl"
    for name in ("spelling.txt", "const_structs.checkpatch"):
        assert (checkpatch_tool.script.parent / name).is_file()
    assert checkpatch_tool.package.startswith("linux-source-")


# --- pure parts ----------------------------------------------------------------------------


def test_unknown_suites_say_which_are_known() -> None:
    assert source_package_for("bookworm") == ("bookworm", "linux-source-6.1")
    with pytest.raises(CheckpatchError, match="bookworm, trixie"):
        source_package_for("buster")


def test_argv_is_file_mode_without_a_tree() -> None:
    argv = checkpatch_argv(Path("/c/checkpatch.pl"), ["/k/a.c"], strict=True, ignore=["X", "Y"])
    assert argv[:2] == ["perl", "/c/checkpatch.pl"]
    assert {"--no-tree", "--file", "--strict", "--summary-file", "--ignore=X,Y"} <= set(argv)
    assert argv[-1] == "/k/a.c"
    assert "--strict" not in checkpatch_argv(Path("/c/checkpatch.pl"), ["a.c"], strict=False)


SAMPLE = """\
-----
/k/a.c
-----
/k/a.c:3: WARNING:LONG_LINE: line length of 120 exceeds 100 columns
#3: FILE: /k/a.c:3:
+\tstatic const char text[] = "...";

/k/a.c total: 0 errors, 1 warnings, 0 checks, 9 lines checked

/k/a.c has style problems, please review.
/k/b.h total: 0 errors, 0 warnings, 0 checks, 4 lines checked
"""


def test_parse_counts_findings_and_names_files_as_given() -> None:
    report = parse_checkpatch_output(SAMPLE, {"/k/a.c": "kmod/a.c", "/k/b.h": "kmod/b.h"})
    assert report.files == ("kmod/a.c", "kmod/b.h")
    assert (report.errors, report.warnings, report.checks, report.lines_checked) == (0, 1, 0, 13)
    (message,) = report.messages
    assert str(message) == "kmod/a.c:3: WARNING:LONG_LINE: line length of 120 exceeds 100 columns"
    assert message.context == ('+\tstatic const char text[] = "...";',)
    assert "kmod/a.c:3: WARNING:LONG_LINE" in report.summary()


def test_parse_without_strict_has_no_checks_field() -> None:
    text = "/k/a.c total: 1 errors, 0 warnings, 5 lines checked\n"
    with pytest.raises(CheckpatchOutputError, match="do not match"):
        parse_checkpatch_output(text)
    text = "/k/a.c:1: ERROR:X: y\n" + text
    assert parse_checkpatch_output(text).errors == 1


def test_output_without_totals_is_an_error() -> None:
    with pytest.raises(CheckpatchOutputError, match="did not finish"):
        parse_checkpatch_output("Global symbol requires explicit package name\n")
