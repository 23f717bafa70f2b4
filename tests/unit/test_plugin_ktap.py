# SPDX-License-Identifier: MIT
"""--ktap output and the per-kernel summary, from a real pytest run (pytester)."""

from __future__ import annotations

from pathlib import Path

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

def test_fails_on_7(kernel):
    assert not kernel.startswith("7")

def test_skips(kernel):
    pytest.skip("no /dev/iommu # here")

@pytest.mark.xfail(reason="known")
def test_xfails(kernel):
    assert False

def test_on_the_host():
    pass
"""

EXPECTED = """\
KTAP version 1
1..3
    KTAP version 1
    1..4
    ok 1 test_ktap.py::test_passes[6.1.0-50-amd64]
    ok 2 test_ktap.py::test_fails_on_7[6.1.0-50-amd64]
    ok 3 test_ktap.py::test_skips[6.1.0-50-amd64] # SKIP no /dev/iommu # here
    ok 4 test_ktap.py::test_xfails[6.1.0-50-amd64] # XFAIL
ok 1 6.1.0-50-amd64
    KTAP version 1
    1..4
    ok 1 test_ktap.py::test_passes[7.2.13+deb14-amd64]
    not ok 2 test_ktap.py::test_fails_on_7[7.2.13+deb14-amd64]
    ok 3 test_ktap.py::test_skips[7.2.13+deb14-amd64] # SKIP no /dev/iommu # here
    ok 4 test_ktap.py::test_xfails[7.2.13+deb14-amd64] # XFAIL
not ok 2 7.2.13+deb14-amd64
    KTAP version 1
    1..1
    ok 1 test_ktap.py::test_on_the_host
ok 3 host
"""


def test_ktap_file_of_a_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_ktap=TESTS)
    out = tmp_path / "results.ktap"
    result = pytester.runpytest("-p", "no:randomly", "--ktap", str(out))
    result.assert_outcomes(passed=4, failed=1, skipped=2, xfailed=2)
    text = out.read_text()
    # The parametrized tests run grouped by parameter; compare as sets of lines per block.
    assert sorted(text.splitlines()) == sorted(EXPECTED.splitlines())
    assert text.startswith("KTAP version 1\n1..3\n")
    result.stdout.fnmatch_lines(
        [
            "*vfio-harness: results per kernel*",
            "6.1.0-50-amd64*tcg*2*0*2",  # an xfail counts as skipped
            "7.2.13+deb14-amd64*tcg*1*1*2",
        ]
    )


def test_names_never_contain_what_ends_a_ktap_name() -> None:
    assert ktap_name("t.py::test_x[a b#c]") == "t.py::test_x[a_b_c]"


def test_a_group_fails_when_any_of_its_tests_does() -> None:
    text = render({"k": {"a": KtapResult("a"), "b": KtapResult("b", failed=True)}})
    assert text.splitlines()[-1] == "not ok 1 k"
