# SPDX-License-Identifier: MIT
"""A VM test that cannot get a VM skips on a laptop and fails in CI."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

_VM_TEST = """
from harness.plugin.policy import vm_unavailable

def test_needs_a_vm():
    vm_unavailable("qemu-system-x86_64 not found")
"""


def test_missing_vm_skips_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARNESS_REQUIRE_VM", raising=False)
    pytester.makepyfile(_VM_TEST)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*qemu-system-x86_64 not found*"])


def test_missing_vm_fails_when_vms_are_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_REQUIRE_VM", "1")
    pytester.makepyfile(_VM_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*qemu-system-x86_64 not found*HARNESS_REQUIRE_VM=1*"])


def _plugin_args() -> list[str]:
    """Installed, pytest loads the plugin through its entry point; from a source tree, by -p."""
    installed = any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.plugin"]


def test_require_vm_option_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*_plugin_args(), "--help")
    result.stdout.fnmatch_lines(["*--require-vm*"])
