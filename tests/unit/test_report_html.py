# SPDX-License-Identifier: MIT
"""report.html: self-contained, and what a browser shows of it (Debian's chromium, headless:
the DOM after rendering, and a screenshot) matches the results it was made from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from harness.report.compare import compare
from harness.report.html import COLOURS, render
from harness.report.results import OUTCOMES, Results, RunInfo, Splat, TestResult

BROWSERS = ("chromium", "chromium-browser")


def result(test_id: str, kernel: str, outcome: str, seconds: float, **more: object) -> TestResult:
    test = TestResult(test_id, f"{test_id}[{kernel}]", kernel, outcome=outcome, duration_s=seconds)
    for name, value in more.items():
        setattr(test, name, value)
    return test


SPLAT = Splat("kasan", "89abcdef", "BUG: KASAN: slab-out-of-bounds in hmdev_dma_run")
RESULTS = Results(
    RunInfo(harness="0.1.0", qemu="QEMU emulator version 7.2.15", driver="vfio_harness_mdev"),
    [
        result("t.py::test_a[type1]", "bookworm", "passed", 1.5, area="dma"),
        result(
            "t.py::test_a[type1]",
            "debug",
            "failed",
            9.25,
            area="dma",
            message="expected EINVAL, got <ENOTTY>",
            splats=[SPLAT],
        ),
        result("t.py::test_b", "bookworm", "skipped", 0.1, area="irq"),
        result("t.py::test_b", "debug", "xfailed", 0.2, area="irq"),
        result("t.py::test_c", "bookworm", "error", 3.0, area="irq", message="VM did not start"),
        result("t.py::test_c", "debug", "passed", 2.0, area="irq"),
    ],
)
BASE = Results(RunInfo(), [result("t.py::test_a[type1]", "debug", "passed", 1.0)])


def test_the_page_is_self_contained_and_escapes_what_it_shows() -> None:
    page = render(RESULTS, compare(BASE, RESULTS, kernels=("debug", "debug")))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "fetches from elsewhere"
    assert "<script" not in page
    assert "got &lt;ENOTTY&gt;" in page
    assert "89abcdef" in page and "new splat" in page and "new failure" in page
    assert page.count("<rect") == 2  # one bar per kernel


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        message = "no chromium to render the report: vfio-harness setup --profile report"
        if os.environ.get("HARNESS_REQUIRE_VM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def headless(page: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu",
               "--no-first-run", f"--user-data-dir={page.parent / 'profile'}", *argv,
               page.as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def cells(dom: str, row_label: str) -> list[str]:
    """The texts of the cells of the row that starts with `row_label`, as rendered."""
    row = re.search(rf"<tr><td>{re.escape(row_label)}</td>(.*?)</tr>", dom, re.S)
    assert row, f"no row {row_label} in the rendered page"
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1])]


def test_a_browser_shows_the_runs_counts_and_matrix(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(RESULTS, compare(BASE, RESULTS, kernels=("debug", "debug"))))
    dom = headless(page, "--dump-dom").stdout
    assert "<h1>vfio-harness run</h1>" in dom
    for kernel in ("bookworm", "debug"):
        counts = Counter(t.outcome for t in RESULTS.tests if t.kernel == kernel)
        shown = cells(dom, kernel)[: len(OUTCOMES) + 1]
        assert shown == [str(counts[o]) for o in OUTCOMES] + [str(sum(counts.values()))]
    matrix = cells(dom, "t.py::test_a[type1]")
    assert matrix == ["passed", "failed"]
    assert f'style="background:{COLOURS["failed"]}"' in dom
    assert re.search(r'id="f-debug-t-py--test-a-type1--[0-9a-f]{8}"', dom)  # the failure linked
    screenshot = tmp_path / "report.png"
    headless(page, f"--screenshot={screenshot}", "--window-size=1200,1400")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000, "the screenshot is (nearly) blank"
