# SPDX-License-Identifier: MIT
"""Coverage from gcov (harness/coverage): real counters and notes made by this host's gcc
from a small C file, read with its gcov; a guest's counters archive unpacked safely; a raw set
as a VM leaves it summed into the per-file table and lcov's tracefile."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.coverage import guest
from harness.coverage.gcov import (
    NotesDir,
    lcov_tracefile,
    line_counts,
    merge,
    notes_for,
    renamed,
    run_gcov,
)
from harness.coverage.report import read_run, table, write_reports, write_set
from harness.ssh.command import CommandResult

DRIVER = """\
int touched(int x)
{
\tif (x > 3)
\t\treturn 1;
\treturn 0;
}

int main(void)
{
\treturn touched(1);
}
"""


def compile_and_run(build: Path) -> Path:
    """main.c built with --coverage in `build` and run once: main.gcno and main.gcda."""
    if shutil.which("gcc") is None or shutil.which("gcov") is None:
        pytest.skip("no gcc/gcov: vfio-harness setup --profile unit")
    build.mkdir(parents=True)
    (build / "main.c").write_text(DRIVER)
    subprocess.run(["gcc", "--coverage", "-O0", "-o", "main", "main.c"], cwd=build, check=True)
    subprocess.run([str(build / "main")], cwd=build, check=False)
    gcda = next(build.glob("*.gcda"))
    return gcda


def test_gcov_reads_which_lines_ran(tmp_path: Path) -> None:
    gcda = compile_and_run(tmp_path / "build")
    counts = line_counts(run_gcov(gcda, gcda.with_suffix(".gcno")))
    lines = counts[str(tmp_path / "build" / "main.c")]
    assert lines[4] == 0  # `return 1` never ran: x was 1
    assert lines[3] == 1 and lines[5] == 1 and lines[10] == 1


def test_notes_are_found_in_a_module_entry_or_beside_the_object(tmp_path: Path) -> None:
    notes = tmp_path / "entry" / "gcov"
    (notes / "sub").mkdir(parents=True)
    (notes / "sub" / "dma.gcno").write_bytes(b"")
    module = NotesDir(notes, "/tmp/kmod-build-x/kmod-y", tmp_path / "kmod")
    assert notes_for("/tmp/kmod-build-x/kmod-y/sub/dma.gcda", [module]) == notes / "sub/dma.gcno"
    assert notes_for("/tmp/kmod-build-x/kmod-y/main.gcda", [module]) is None
    kernel_object = tmp_path / "kbuild" / "drivers/vfio/vfio_main.gcno"
    kernel_object.parent.mkdir(parents=True)
    kernel_object.write_bytes(b"")
    assert notes_for(str(kernel_object.with_suffix(".gcda")), [module]) == kernel_object


def test_counts_merge_and_build_paths_become_source_paths() -> None:
    total = merge({"/b/x.c": {1: 1, 2: 0}}, {"/b/x.c": {2: 3}, "/b/y.c": {1: 0}})
    assert total == {"/b/x.c": {1: 1, 2: 3}, "/b/y.c": {1: 0}}
    assert renamed(total, [("/b", Path("/src"))]) == {"/src/x.c": {1: 1, 2: 3}, "/src/y.c": {1: 0}}


def test_lcov_tracefile_lists_lines_found_and_hit() -> None:
    text = lcov_tracefile({"/src/x.c": {2: 3, 1: 0}}, "t")
    assert text.splitlines() == [
        "TN:t", "SF:/src/x.c", "DA:1,0", "DA:2,3", "LF:2", "LH:1", "end_of_record",
    ]  # fmt: skip


def _archive(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


def test_a_guest_archive_unpacks_counters_only(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(_archive({"./tmp/k/main.gcda": b"data", "./tmp/k/main.gcno": b"n"}))
    assert guest.extract_counters(archive, tmp_path / "out") == 1
    assert (tmp_path / "out/tmp/k/main.gcda").read_bytes() == b"data"
    assert not (tmp_path / "out/tmp/k/main.gcno").exists()
    for bad in (_archive({"../evil.gcda": b"x"}), _archive({}, links=("./link.gcda",))):
        archive.write_bytes(bad)
        with pytest.raises(guest.CounterCopyError, match="unexpected entry"):
            guest.extract_counters(archive, tmp_path / "out2")


class FakeShell:
    def __init__(self, status: int, archive: bytes = b"") -> None:
        self.status, self.archive = status, archive
        self.commands: list[str] = []

    def run(self, command: str, timeout: float, *, check: bool = True) -> CommandResult:
        self.commands.append(command)
        return CommandResult(command, self.status, "", "no space left", 0.1)

    def get(self, remote: str, local: str | Path) -> None:
        Path(local).write_bytes(self.archive)


def test_fetching_from_a_kernel_without_gcov_gets_nothing(tmp_path: Path) -> None:
    assert guest.fetch_counters(FakeShell(guest.NO_GCOV_EXIT), tmp_path) == 0
    with pytest.raises(guest.CounterCopyError, match="no space left"):
        guest.fetch_counters(FakeShell(1), tmp_path)
    shell = FakeShell(0, _archive({"./x/a.gcda": b"1"}))
    assert guest.fetch_counters(shell, tmp_path) == 1
    assert 'cat "$f"' in shell.commands[0]  # debugfs sizes are 0: copied by reading, not by tar


def test_a_run_sums_its_vms_per_source_line(tmp_path: Path) -> None:
    """Two VMs ran the same module build: counts add up, named by the driver's source."""
    gcda = compile_and_run(tmp_path / "build" / "kmod-x")
    notes = tmp_path / "entry" / "gcov"
    notes.mkdir(parents=True)
    shutil.copyfile(gcda.with_suffix(".gcno"), notes / "main.gcno")
    source = tmp_path / "kmod"
    source.mkdir()
    shutil.copyfile(tmp_path / "build/kmod-x/main.c", source / "main.c")
    module = NotesDir(notes, str(tmp_path / "build/kmod-x"), source)
    run = tmp_path / "coverage"
    for number in (1, 2):
        where = run / "raw" / f"gw0-{number}"
        counters = where / "counters" / str(tmp_path / "build/kmod-x").lstrip("/")
        counters.mkdir(parents=True)
        shutil.copyfile(gcda, counters / "main.gcda")
        write_set(where, "debug", 1, [module])
    coverage = read_run(run)
    assert coverage.kernels == {"debug": 2} and not coverage.problems
    lines = coverage.part("driver")[str(source / "main.c")]
    assert lines[3] == 2 and lines[4] == 0
    shown = table(coverage)
    assert shown[0] == "driver: 5 of 6 lines executed (83.3%)"
    assert shown[1].split() == ["main.c", "5", "of", "6", "83.3%"]
    written = write_reports(coverage, run)
    assert (run / "lcov.info").read_text().count("SF:") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["driver"] == {"executed": 5, "lines": 6} and summary["vfio"]["lines"] == 0
    if shutil.which("genhtml") is None:
        message = "no genhtml to check the pages: vfio-harness setup --profile coverage"
        if os.environ.get("HARNESS_REQUIRE_VM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    page = (run / "html" / "index.html").read_text()
    assert "83.3" in page and ">kmod<" in page, written  # a directory per source root


def test_counters_without_notes_are_reported_once_per_kernel(tmp_path: Path) -> None:
    """A campaign's VMs each bring the same unmatched counters: one line says so, not one
    per VM."""
    gcda = compile_and_run(tmp_path / "build" / "kmod-x")
    run = tmp_path / "coverage"
    for number in (1, 2, 3):
        where = run / "raw" / f"gw0-{number}"
        counters = where / "counters" / "elsewhere"
        counters.mkdir(parents=True)
        shutil.copyfile(gcda, counters / "main.gcda")
        write_set(where, "debug", 1, [])
    coverage = read_run(run)
    assert coverage.problems == [
        "debug: 3 counter file(s) in 3 VM set(s) without their notes (.gcno), not counted: a "
        "module built outside the harness (--vendor-module, --vendor-sample), or a kernel "
        "build that is gone"
    ]


def test_coverage_with_no_kernel_that_has_gcov_is_refused_before_the_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli_errors import UsageError
    from harness.commands.run import check_coverage

    def kernel(name: str, config: str) -> Any:
        path = tmp_path / f"{name}.config"
        path.write_text(config)
        choice = SimpleNamespace(id=name)
        return SimpleNamespace(
            choice=choice, bundle=None, image=SimpleNamespace(kernel_config=path)
        )

    bookworm = kernel("bookworm", "# CONFIG_GCOV_KERNEL is not set\n")
    debug = kernel("debug", "CONFIG_GCOV_KERNEL=y\n")
    with pytest.raises(
        UsageError, match=r"no kernel of this run has gcov.*bookworm.*--kernel debug"
    ):
        check_coverage([bookworm])
    check_coverage([bookworm, debug])
    assert "bookworm has no gcov" in capsys.readouterr().err


def test_counters_are_named_by_the_object_path_the_compiler_was_given(tmp_path: Path) -> None:
    """What the kernel's debugfs shows (gcov_info's filename) is the object's path as given to
    gcc with -o, wherever make ran: kbuild gives an M= build's objects as $(M)/x.o."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc: vfio-harness setup --profile unit")
    module = tmp_path / "staged"
    module.mkdir()
    (module / "x.c").write_text(DRIVER)
    elsewhere = tmp_path / "kernel-tree"
    elsewhere.mkdir()
    compile_ = ["gcc", "--coverage", "-c", "-o", str(module / "x.o"), str(module / "x.c")]
    subprocess.run(compile_, cwd=elsewhere, check=True)
    link = ["gcc", "--coverage", "-o", str(tmp_path / "prog"), str(module / "x.o")]
    subprocess.run(link, cwd=elsewhere, check=True)
    subprocess.run([str(tmp_path / "prog")], cwd=tmp_path, check=False)
    assert (module / "x.gcda").is_file() and not list(elsewhere.glob("*.gcda"))


class DeadGuest:
    """A guest whose SSH session has gone: every command raises."""

    class _Ssh:
        def run(self, *_args: object, **_kwargs: object) -> CommandResult:
            from harness.ssh.errors import SshError

            raise SshError("the SSH session is closed")

    def __init__(self) -> None:
        self.vm = SimpleNamespace(ssh=self._Ssh(), accelerator=SimpleNamespace(timeout_scale=1.0))

    def answers(self, timeout: float) -> bool:  # as GuestVm.answers: the probe's SSH raises
        return bool(self.vm.ssh.run("true", timeout, check=False).ok)

    def scaled(self, seconds: float) -> float:
        return seconds


def test_a_guest_that_cannot_give_its_counters_does_not_end_the_run(tmp_path: Path) -> None:
    from harness.plugin.coverage import CoverageCollector

    line = CoverageCollector(tmp_path, "gw0").collect(DeadGuest(), "debug", None)  # type: ignore[arg-type]
    assert line.startswith("debug: coverage: counters not copied") and "closed" in line
    assert not list(tmp_path.rglob("set.json"))
