# SPDX-License-Identifier: MIT
"""--kernel parsing and how it parametrizes VM tests (collection only: nothing boots)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.kernel.choice import CUSTOM_KERNEL_ROOTFS, KernelChoiceError, parse_kernels

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


def test_a_kernel_recipe_boots_on_its_rootfs_and_is_named_by_it() -> None:
    (choice,) = parse_kernels("debug", KNOWN)
    assert choice.kernel_recipe is not None
    assert choice.kernel_recipe.name == "debug"
    assert choice.recipe == "bookworm"  # debug.toml's rootfs
    assert choice.custom_path is None
    assert choice.own_kernel
    assert choice.id == "debug"
    assert [c.id for c in parse_kernels("bookworm,debug,debug", KNOWN)] == ["bookworm", "debug"]


def test_all_is_the_images_only() -> None:
    assert [c.id for c in parse_kernels("all", KNOWN)] == list(KNOWN)
    assert not any(c.own_kernel for c in parse_kernels("all", KNOWN))


def test_kernel_recipes_are_read_only_when_named(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / "broken.toml").write_text("not toml [")
    assert [c.id for c in parse_kernels("sid", KNOWN, kernels)] == ["sid"]
    with pytest.raises(KernelChoiceError, match=r"--kernel broken: .*broken\.toml: not valid TOML"):
        parse_kernels("broken", KNOWN, kernels)
    with pytest.raises(KernelChoiceError, match=r"not a kernel recipe \(broken\)"):
        parse_kernels("nosuch", KNOWN, kernels)


def test_a_harness_build_directory_is_named_by_its_tree_and_fragments(tmp_path: Path) -> None:
    build = tmp_path / "linux-source-6.12_6.12.117-1-3659c3e591eee9e6"
    build.mkdir()
    record = {"source": "/src/linux", "fragments": ["base.config", "debug.config"]}
    (build / "kernel-build.json").write_text(json.dumps(record))
    (choice,) = parse_kernels(str(build), KNOWN)
    assert choice.custom_path == build
    assert choice.id == "linux-debug"
    (build / "kernel-build.json").unlink()  # any other directory keeps its name
    assert parse_kernels(str(build), KNOWN)[0].id == f"custom-{build.name}"


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


GUEST_SUITE_TEST = """
import pytest

@pytest.mark.parametrize("mode", ["type1", "iommufd"])
def test_region_info(mode):
    pass
"""


def test_a_kernel_recipe_reads_as_its_name_in_test_ids(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VM_TESTS)
    guest = pytester.mkdir("guest")
    (guest / "test_guest.py").write_text(GUEST_SUITE_TEST)
    # Collection only: nothing is built or booted.
    result = pytester.runpytest(
        "--collect-only", "-q", "--kernel", "bookworm,debug", "--guest-suite=guest"
    )
    result.stdout.fnmatch_lines(
        [
            "*test_region_info[[]type1-bookworm[]]",
            "*test_region_info[[]iommufd-bookworm[]]",
            "*test_region_info[[]type1-debug[]]",
            "*test_region_info[[]iommufd-debug[]]",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*test_uses_vm[[]debug[]]"])


def test_an_unknown_kernel_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VM_TESTS)
    result = pytester.runpytest("--collect-only", "--kernel", "bookwurm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kernel bookwurm: not an image recipe*"])
