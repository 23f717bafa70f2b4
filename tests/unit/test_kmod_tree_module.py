# SPDX-License-Identifier: MIT
"""Our module for kernels built from source: the tree's identity in the cache key, the
compiler check, and when it builds (with the host make stood in for)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.kernel.choice import KernelChoice
from harness.kernel.custom import KernelBundle
from harness.kmod import tree_module
from harness.kmod.builder import ModuleBuild
from harness.kmod.module_cache import MODULE_FILE, VendorModuleError, VendorModuleRecord
from harness.kmod.tree_module import (
    build_tree_module,
    check_compiler,
    coverage_make_env,
    kernel_compiler,
    tree_identity,
    tree_problem,
)

GCC = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"


def quiet(_line: str) -> None:
    pass


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """What a kernel build directory holds for external modules."""
    build = tmp_path / "kernel-builds" / "linux-0123"
    (build / "include/config").mkdir(parents=True)
    (build / "include/config/kernel.release").write_text("6.12.117\n")
    (build / ".config").write_text(f'CONFIG_CC_VERSION_TEXT="{GCC}"\nCONFIG_KASAN=y\n')
    (build / "Module.symvers").write_text("0x00000000\tkmalloc\tvmlinux\tEXPORT_SYMBOL\t\n")
    (build / ".version").write_text("2\n")
    return build


@pytest.fixture
def source(tmp_path: Path) -> Path:
    kmod = tmp_path / "kmod"
    kmod.mkdir()
    (kmod / "Kbuild").write_text("obj-m := vfio_harness_mdev.o\n")
    (kmod / "main.c").write_text("int x;\n")
    return kmod


# --- the tree and its identity --------------------------------------------------------------


def test_a_tree_needs_config_release_and_symvers(tree: Path) -> None:
    assert tree_problem(tree) is None
    (tree / "Module.symvers").unlink()
    problem = tree_problem(tree)
    assert problem is not None
    assert "no Module.symvers: build the kernel's modules" in problem


@pytest.mark.parametrize(
    "changed",
    [".config", "Module.symvers", ".version", "include/config/kernel.release"],
)
def test_the_identity_follows_each_file(tree: Path, changed: str) -> None:
    before = tree_identity(tree)
    assert tree_identity(tree) == before
    with (tree / changed).open("a") as stream:
        stream.write("x\n")
    assert tree_identity(tree) != before


def test_the_identity_is_not_the_trees_path(tree: Path, tmp_path: Path) -> None:
    moved = shutil.copytree(tree, tmp_path / "elsewhere")
    assert tree_identity(moved) == tree_identity(tree)
    assert tree_identity(tree).startswith("tree-")


def test_the_kernels_compiler_comes_from_its_config() -> None:
    assert kernel_compiler(f'CONFIG_CC_VERSION_TEXT="{GCC}"\n') == GCC
    assert kernel_compiler('CONFIG_CC_VERSION_TEXT="cc \\"x\\" 1"\n') == 'cc "x" 1'
    assert kernel_compiler("CONFIG_A=y\n") is None


def test_another_host_compiler_is_refused_naming_both(tree: Path) -> None:
    check_compiler(tree, GCC)
    other = "gcc (Debian 14.2.0-19) 14.2.0"
    with pytest.raises(VendorModuleError) as caught:
        check_compiler(tree, other)
    message = str(caught.value)
    assert GCC in message
    assert other in message
    assert "CONFIG_CC_VERSION_TEXT" in message


# --- when it builds -------------------------------------------------------------------------


class FakeHostBuilds:
    """Stands in for build_module_host: writes a .ko, records the make arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, tuple[str, ...]]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(self, source: Path, kernel_build_dir: Path, **kwargs: Any) -> ModuleBuild:
        assert kwargs["extra_warnings"] is True, "W=1, as for the Debian kernels"
        self.calls.append((kernel_build_dir, tuple(kwargs["extra_make_args"])))
        self.envs.append(dict(kwargs.get("make_env") or {}))
        dest: Path = kwargs["dest"]
        ko = dest / MODULE_FILE
        ko.write_bytes(b"\x7fELF" + (source / "main.c").read_bytes())
        (dest / "build.log").write_text("make ...\n")
        return ModuleBuild((ko,), (), (), "make ...\n", dest / "build.log", "6.12.117", 0.5)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> FakeHostBuilds:
    fake = FakeHostBuilds()
    monkeypatch.setattr(tree_module, "build_module_host", fake)
    monkeypatch.setattr(tree_module, "host_compiler", lambda cc="gcc": GCC)
    return fake


def build(tree: Path, source: Path, *, faults: bool = False) -> Path:
    return build_tree_module(tree, quiet, source=source, faults=faults)


def test_built_once_per_tree_state(tree: Path, source: Path, builds: FakeHostBuilds) -> None:
    first = build(tree, source)
    assert build(tree, source) == first
    assert builds.calls == [(tree.resolve(), ())]
    record = VendorModuleRecord.read(first.parent)
    assert record.kernel_release == "6.12.117"
    assert record.compiler == GCC
    assert first.parent.name.startswith("6.12.117-")
    (tree / ".version").write_text("3\n")  # the kernel was relinked
    relinked = build(tree, source)
    assert relinked != first
    assert len(builds.calls) == 2


def test_the_fault_build_is_its_own_entry(tree: Path, source: Path, builds: FakeHostBuilds) -> None:
    normal = build(tree, source)
    faulty = build(tree, source, faults=True)
    assert faulty != normal
    assert faulty.parent.name.startswith("6.12.117-faults-")
    calls: Sequence[tuple[Path, tuple[str, ...]]] = builds.calls
    assert [args for _, args in calls] == [(), ("HMDEV_FAULTS=1",)]


def test_a_compiler_mismatch_builds_nothing(
    tree: Path, source: Path, builds: FakeHostBuilds, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree_module, "host_compiler", lambda cc="gcc": "clang version 19")
    with pytest.raises(VendorModuleError, match="clang version 19"):
        build(tree, source)
    assert builds.calls == []


def test_a_tree_without_symvers_says_what_to_build(
    tree: Path, source: Path, builds: FakeHostBuilds
) -> None:
    (tree / "Module.symvers").unlink()
    with pytest.raises(VendorModuleError, match=r"cannot build our module against .*make modules"):
        build(tree, source)


def _bundle(build_dir: Path | None) -> KernelBundle:
    return KernelBundle(
        "custom-6.12", Path("/k/vmlinux"), None, (), "6.12.117", build_dir, None, {}
    )


def test_a_choice_gets_the_module_built_against_its_kernels_build_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "build"
    (tree / "include/config").mkdir(parents=True)
    for name in (".config", "Module.symvers", "include/config/kernel.release"):
        (tree / name).write_text("x\n")
    asked: list[tuple[Path, bool]] = []

    def fake_tree_module(build_dir: Path, progress: object, **kwargs: Any) -> Path:
        asked.append((build_dir, kwargs["faults"]))
        return tmp_path / "m.ko"

    monkeypatch.setattr(tree_module, "build_tree_module", fake_tree_module)
    choice = KernelChoice(str(tree), "bookworm", tree)
    assert tree_module.tree_module_for(choice, _bundle(tree), quiet, faults=True) == (
        tmp_path / "m.ko"
    )
    assert asked == [(tree, True)]


def test_a_choice_without_a_build_tree_says_to_pass_one_or_a_module(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    choice = KernelChoice(str(image), "bookworm", image)
    with pytest.raises(VendorModuleError, match=r"no build tree known.*--vendor-module"):
        tree_module.tree_module_for(choice, _bundle(None), quiet)
    (tmp_path / "build").mkdir()
    with pytest.raises(VendorModuleError, match=r"has no \.config"):
        tree_module.tree_module_for(choice, _bundle(tmp_path / "build"), quiet)


def test_a_kernel_with_gcov_and_kcov_gets_modules_compiled_for_them(
    tree: Path, source: Path, builds: FakeHostBuilds
) -> None:
    assert coverage_make_env("CONFIG_GCOV_KERNEL=y\nCONFIG_KCOV=y\n") == {
        "GCOV_PROFILE": "y",
        "KCOV_INSTRUMENT": "y",
    }
    assert coverage_make_env("# CONFIG_GCOV_KERNEL is not set\nCONFIG_KCOV=y\n") == {
        "KCOV_INSTRUMENT": "y"
    }
    plain = build(tree, source)
    config = tree / ".config"
    config.write_text(config.read_text() + "CONFIG_GCOV_KERNEL=y\n")
    instrumented = build(tree, source, faults=True)
    assert builds.envs[-1] == {"GCOV_PROFILE": "y"} and builds.calls[-1][1] == ("HMDEV_FAULTS=1",)
    assert "-gcov_profile" in VendorModuleRecord.read(instrumented.parent).env_key
    assert plain.parent != instrumented.parent
