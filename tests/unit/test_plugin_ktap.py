# SPDX-License-Identifier: MIT
"""--ktap output and the per-kernel summary, from a real pytest run (pytester), read back by
the kernel's own KTAP parser (tools/testing/kunit/kunit_parser.py from Debian's linux-source)
with the same counts as the run's JUnit file."""

from __future__ import annotations

import importlib
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from harness.plugin.ktap import KtapResult, ktap_name, render

pytest_plugins = ["pytester"]

TESTS = """
import pytest

@pytest.fixture(params=["6.1.0-50-amd64", "7.2.13+deb14-amd64"])
def kernel(request, record_property):
    record_property("kernel", request.param)
    record_property("accelerator", "tcg")
    return request.param

def test_passes(kernel):
    pass

def test_fails_on_7(kernel, record_property):
    if kernel.startswith("7"):
        record_property("kernel_splat", "warning 0123abcd WARNING: at hmdev_dma_run")
    assert not kernel.startswith("7"), "EINVAL expected\\nsecond line"

def test_skips(kernel):
    pytest.skip("no /dev/iommu # here")

@pytest.mark.xfail(reason="known")
def test_xfails(kernel):
    assert False

def test_on_the_host():
    pass

@pytest.fixture
def debug_vm(record_property):
    record_property("kernel_choice", "debug")  # its VM never started: no release known
    record_property("interrupted", "error")
    raise RuntimeError("no VM")

def test_in_a_vm_that_never_started(debug_vm):
    pass

def test_that_hangs(record_property):
    record_property("kernel_choice", "debug")
    record_property("interrupted", "timeout")
    assert False, "hung for 90 s"
"""

EXPECTED = """\
KTAP version 1
1..4
    KTAP version 1
    # Subtest: 6.1.0-50-amd64
    1..4
    ok 1 test_ktap.py::test_passes
    ok 2 test_ktap.py::test_fails_on_7
    ok 3 test_ktap.py::test_skips # SKIP no /dev/iommu # here
    ok 4 test_ktap.py::test_xfails # XFAIL known
ok 1 6.1.0-50-amd64
    KTAP version 1
    # Subtest: 7.2.13+deb14-amd64
    1..4
    ok 1 test_ktap.py::test_passes
    # failure (call): AssertionError: EINVAL expected
    # splat: warning 0123abcd WARNING: at hmdev_dma_run
    not ok 2 test_ktap.py::test_fails_on_7
    ok 3 test_ktap.py::test_skips # SKIP no /dev/iommu # here
    ok 4 test_ktap.py::test_xfails # XFAIL known
not ok 2 7.2.13+deb14-amd64
    KTAP version 1
    # Subtest: debug
    1..2
    # failure (setup): RuntimeError: no VM
    not ok 1 test_ktap.py::test_in_a_vm_that_never_started # ERROR RuntimeError: no VM
    # failure (call): AssertionError: hung for 90 s
    not ok 2 test_ktap.py::test_that_hangs # TIMEOUT AssertionError: hung for 90 s
not ok 3 debug
    KTAP version 1
    # Subtest: host
    1..1
    ok 1 test_ktap.py::test_on_the_host
ok 4 host
"""


def run_with_ktap(pytester: pytest.Pytester, *outputs: str) -> pytest.RunResult:
    pytester.makepyfile(test_ktap=TESTS)
    options = [f"--ktap={output}" for output in outputs]
    return pytester.runpytest("-p", "no:randomly", "--junitxml=junit.xml", *options)


def blocks(text: str) -> list[list[str]]:
    """The KTAP text's kernel blocks, each as its lines in order (the tests of a block run
    grouped by parameter, so blocks are compared, not the whole text)."""
    found: list[list[str]] = []
    for line in text.splitlines()[2:]:
        if line == "    KTAP version 1":
            found.append([])
        found[-1].append(line)
    return found


def test_ktap_file_of_a_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    out = tmp_path / "results.ktap"
    result = run_with_ktap(pytester, str(out))
    result.assert_outcomes(passed=4, failed=2, skipped=2, xfailed=2, errors=1)
    text = out.read_text()
    assert text.startswith("KTAP version 1\n1..4\n")
    for block in blocks(text):
        assert sorted(block) in [sorted(b) for b in blocks(EXPECTED)]
    assert len(blocks(text)) == 4
    result.stdout.fnmatch_lines(
        [
            "*vfio-harness: results per kernel*",
            "6.1.0-50-amd64*tcg*2*0*2",  # an xfail counts as skipped
            "7.2.13+deb14-amd64*tcg*1*1*2",
        ]
    )


def test_ktap_to_standard_output_as_well(pytester: pytest.Pytester, tmp_path: Path) -> None:
    out = tmp_path / "results.ktap"
    result = run_with_ktap(pytester, str(out), "-")
    printed = result.stdout.str()
    start = printed.index("KTAP version 1\n1..4\n")
    assert printed[start:].startswith(out.read_text())


def test_names_never_contain_what_ends_a_ktap_name() -> None:
    assert ktap_name("t.py::test_x[a b#c]") == "t.py::test_x[a_b_c]"


def test_a_group_fails_when_any_of_its_tests_does() -> None:
    text = render({"k": {"a": KtapResult("a"), "b": KtapResult("b", failed=True)}})
    assert text.splitlines()[-1] == "not ok 1 k"


# -- the kernel's own parser ----------------------------------------------------------------

KUNIT_FILES = ("kunit_parser.py", "kunit_printer.py")


@pytest.fixture(scope="module")
def kunit_parser() -> Iterator[ModuleType]:
    """kunit_parser.py of the host's Debian release (linux-source, extracted once)."""
    from harness.debian.linux_source import LinuxSourceError, source_files

    members = {f"tools/testing/kunit/{name}": name for name in KUNIT_FILES}
    try:
        entry = source_files("kunit-parser", None, members)
    except LinuxSourceError as exc:
        pytest.skip(f"no kernel KTAP parser to check against: {exc}")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(entry.path))
        yield importlib.import_module("kunit_parser")
        for name in KUNIT_FILES:
            sys.modules.pop(name.removesuffix(".py"), None)


def junit_outcomes(path: Path) -> Counter[str]:
    """Each test case of a JUnit file as KTAP sees it: an expected failure is "ok"."""
    outcomes: Counter[str] = Counter()
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag: child for child in case}
        if "failure" in tags or "error" in tags:
            outcomes["failed"] += 1
        elif "skipped" in tags:
            xfail = tags["skipped"].get("type") == "pytest.xfail"
            outcomes["passed" if xfail else "skipped"] += 1
        else:
            outcomes["passed"] += 1
    return outcomes


def test_the_kernels_ktap_parser_reads_the_junit_counts(
    pytester: pytest.Pytester, tmp_path: Path, kunit_parser: ModuleType
) -> None:
    out = tmp_path / "results.ktap"
    run_with_ktap(pytester, str(out))
    parsed = kunit_parser.parse_run_tests(out.read_text().splitlines())
    counts = parsed.counts
    assert counts.errors == 0, "kunit_parser found the KTAP malformed"
    assert [sub.name for sub in parsed.subtests] == ["6.1.0-50-amd64", "7.2.13+deb14-amd64",
                                                    "debug", "host"]  # fmt: skip
    junit = junit_outcomes(pytester.path / "junit.xml")
    assert junit == Counter(passed=6, failed=3, skipped=2)  # 4 passed, 2 xfailed
    assert (counts.passed, counts.failed, counts.skipped, counts.crashed) == (
        junit["passed"],
        junit["failed"],
        junit["skipped"],
        0,
    )
