# SPDX-License-Identifier: MIT
"""What a --kernel choice boots and which module it gets (builds stood in for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.kernel import prepare
from harness.kernel.build import KernelBuild
from harness.kernel.choice import KernelChoice
from harness.kernel.custom import KernelBundle
from harness.kernel.prepare import choice_kernel
from harness.kernel.recipe import KernelRecipe


def quiet(_line: str) -> None:
    pass


def bundle(build_dir: Path | None) -> KernelBundle:
    return KernelBundle(
        "custom-6.12", Path("/k/vmlinux"), None, (), "6.12.117", build_dir, None, {}
    )


def test_an_image_recipe_boots_its_own_kernel() -> None:
    assert choice_kernel(KernelChoice("bookworm", "bookworm"), quiet) is None


def test_a_kernel_recipe_is_built_then_prepared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = KernelRecipe("debug", "bookworm", (tmp_path / "base.config",))
    built = KernelBuild(tmp_path / "build", "6.12.117", "0" * 16, (), 1, 0, 1, 1.0, 0)
    steps: list[Any] = []

    def fake_build(given: KernelRecipe, progress: object) -> KernelBuild:
        steps.append(given)
        return built

    def fake_prepare(path: Path, progress: object) -> KernelBundle:
        steps.append(path)
        return bundle(path)

    monkeypatch.setattr(prepare, "build_recipe_kernel", fake_build)
    monkeypatch.setattr(prepare, "prepare_custom_kernel", fake_prepare)
    result = choice_kernel(KernelChoice("debug", "bookworm", kernel_recipe=recipe), quiet)
    assert result is not None
    assert result.build_dir == built.build_dir
    assert steps == [recipe, built.build_dir]


def test_a_kernel_prepared_by_the_run_is_not_built_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = KernelRecipe("debug", "bookworm", (tmp_path / "base.config",))
    choice = KernelChoice("debug", "bookworm", kernel_recipe=recipe)
    build_dir = tmp_path / "build"
    build_dir.mkdir()

    def no_build(given: KernelRecipe, progress: object) -> KernelBuild:
        raise AssertionError("built again")

    monkeypatch.setattr(prepare, "build_recipe_kernel", no_build)
    for name, value in prepare.prepared_env({"debug": build_dir}).items():
        monkeypatch.setenv(name, value)
    lines: list[str] = []
    assert prepare.recipe_build_dir(choice, lines.append) == build_dir
    assert "built by vfio-harness run before pytest" in lines[0]
    other = KernelChoice("x", "bookworm", kernel_recipe=KernelRecipe("x", "bookworm", ()))
    with pytest.raises(AssertionError, match="built again"):
        prepare.recipe_build_dir(other, quiet)  # not prepared: built
    monkeypatch.setenv(prepare.PREPARED_ENV, "not json")
    with pytest.raises(AssertionError, match="built again"):
        prepare.recipe_build_dir(choice, quiet)
