# SPDX-License-Identifier: MIT
"""--results: results.json from a real pytest run (pytester), with what the plugin's report
properties say (kernel as asked for and as booted, IOMMU mode, splats, severity)."""

from __future__ import annotations

import pytest

from harness.report.results import load, without_kernel

pytest_plugins = ["pytester"]

TESTS = """
import pytest

@pytest.fixture(params=["type1", "iommufd"])
def mode(request, record_property):
    record_property("kernel_choice", "debug")
    record_property("kernel", "6.12.117")
    record_property("accelerator", "tcg")
    record_property("iommu_mode", request.param)
    record_property("area", "dma")
    return request.param

def test_passes(mode):
    pass

def test_fails(mode, record_property):
    if mode == "iommufd":
        record_property("kernel_splat", "kasan 89abcdef BUG: KASAN: slab-out-of-bounds")
    assert False, "expected EINVAL, got ENOTTY"

def test_skips(mode):
    pytest.skip("no vfio cdev")

@pytest.mark.xfail(reason="known driver bug")
def test_xfails(mode):
    assert False

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

def test_errors(broken):
    pass
"""


def test_results_json_of_a_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_r=TESTS)
    result = pytester.runpytest("-p", "no:randomly", "--results=out/results.json")
    result.assert_outcomes(passed=2, failed=2, skipped=2, xfailed=2, errors=1)
    found = load(pytester.path / "out" / "results.json")
    assert found.run.exit_status == 1
    assert [k.choice for k in found.run.kernels] == ["debug", "host"]
    assert found.run.kernels[0].release == "6.12.117"
    tests = {(t.kernel, t.id): t for t in found.tests}
    failed = tests["debug", "test_r.py::test_fails[iommufd]"]
    assert (failed.outcome, failed.when, failed.iommu_mode) == ("failed", "call", "iommufd")
    assert failed.errnos == ["EINVAL", "ENOTTY"]
    assert failed.message == "AssertionError: expected EINVAL, got ENOTTY"
    assert [s.fingerprint for s in failed.splats] == ["89abcdef"]
    assert failed.severity == "safety"  # a splat makes any failure a safety one
    assert tests["debug", "test_r.py::test_fails[type1]"].severity == "uapi"
    assert tests["debug", "test_r.py::test_xfails[type1]"].outcome == "xfailed"
    assert tests["debug", "test_r.py::test_skips[type1]"].message == "no vfio cdev"
    errored = tests["host", "test_r.py::test_errors"]
    assert (errored.outcome, errored.when) == ("error", "setup")
    assert {t.outcome for t in found.tests} == {"passed", "failed", "skipped", "xfailed", "error"}


def test_the_kernel_leaves_the_test_id() -> None:
    assert without_kernel("t.py::test_x[type1-bookworm]", "bookworm") == "t.py::test_x[type1]"
    assert without_kernel("t.py::test_x[debug]", "debug") == "t.py::test_x"
    assert without_kernel("t.py::test_x[debugger]", "debug") == "t.py::test_x[debugger]"
