# SPDX-License-Identifier: MIT
"""--kernel parsing and how it parametrizes VM tests (collection only: nothing boots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plugin.kernels import CUSTOM_KERNEL_ROOTFS, KernelChoiceError, parse_kernels

pytest_plugins = ["pytester"]

KNOWN = ("bookworm", "sid", "trixie")
RECIPES = Path(__file__).resolve().parents[2] / "vm_images"


@pytest.fixture(autouse=True)
def recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytester runs in a scratch directory, and tox installs the package as a wheel: point
    the plugin at the checkout's recipes."""
    monkeypatch.setenv("HARNESS_VM_IMAGES", str(RECIPES))


def test_names_in_order_without_duplicates() -> None:
    choices = parse_kernels("trixie,bookworm,trixie", KNOWN)
    assert [c.recipe for c in choices] == ["trixie", "bookworm"]
    assert [c.id for c in choices] == ["trixie", "bookworm"]
    assert all(c.custom_path is None for c in choices)


def test_all_means_every_recipe() -> None:
    assert [c.id for c in parse_kernels("all", KNOWN)] == list(KNOWN)


def test_a_path_is_a_custom_kernel_on_the_default_rootfs(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    tree.mkdir()
    (choice,) = parse_kernels(str(tree), KNOWN)
    assert choice.custom_path == tree
    assert choice.recipe == CUSTOM_KERNEL_ROOTFS
    assert choice.id == "custom-linux"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bookwurm", "not an image recipe"),
        ("./no/such/kernel", "no such file or directory"),
        (",", "no kernel given"),
    ],
)
def test_bad_values_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(KernelChoiceError, match=message):
        parse_kernels(value, KNOWN)


VM_TESTS = """
def test_uses_vm(vm):
    pass

def test_uses_fresh_vm(fresh_vm):
    pass

def test_plain():
    pass
"""


def test_vm_tests_are_parametrized_by_kernel_and_marked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VM_TESTS)
    result = pytester.runpytest("--collect-only", "-q", "--kernel", "trixie,bookworm")
    # Grouped by kernel, in --kernel order, so a worker finishes with one VM before the next.
    result.stdout.fnmatch_lines(
        [
            "*test_uses_vm[[]trixie[]]",
            "*test_uses_fresh_vm[[]trixie[]]",
            "*test_uses_vm[[]bookworm[]]",
            "*test_uses_fresh_vm[[]bookworm[]]",
            "*test_plain",
        ]
    )
    unmarked = pytester.runpytest("--collect-only", "-q", "-m", "not vm", "--kernel", "sid")
    unmarked.stdout.fnmatch_lines(["*test_plain", "*1/3 tests collected (2 deselected)*"])


def test_an_unknown_kernel_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VM_TESTS)
    result = pytester.runpytest("--collect-only", "--kernel", "bookwurm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kernel bookwurm: not an image recipe*"])
