# SPDX-License-Identifier: MIT
"""Kernel recipes (vm_images/kernels/*.toml): parsing and the errors that name file and field.

Nothing is built: build_recipe_kernel is checked with build_kernel stood in for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.images.recipe import RecipeError
from harness.kernel import recipe as kernel_recipe
from harness.kernel.build import DEFAULT_PACKAGE, DEFAULT_SUITE, KernelBuild, KernelTree
from harness.kernel.recipe import (
    DebianSource,
    KernelRecipe,
    TreeSource,
    build_recipe_kernel,
    kernel_recipe_names,
    load_kernel_recipe,
)

VM_IMAGES = Path(__file__).resolve().parents[2] / "vm_images"
IMAGES = ("bookworm", "sid", "trixie")

GOOD = """\
name = "mine"
description = "a test kernel"
rootfs = "bookworm"
fragments = ["base", "extra.config", "../own/lock.config"]
"""
FRAGMENTS = '["base", "extra.config", "../own/lock.config"]'


@pytest.fixture
def kernels(tmp_path: Path) -> Path:
    """A kernels/ directory with fragments, and one more fragment outside it."""
    directory = tmp_path / "kernels"
    directory.mkdir()
    for name in ("base", "extra"):
        (directory / f"{name}.config").write_text("CONFIG_A=y\n")
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "lock.config").write_text("CONFIG_B=y\n")
    return directory


def write(directory: Path, text: str, name: str = "mine") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_recipe_parses(kernels: Path, tmp_path: Path) -> None:
    recipe = load_kernel_recipe(write(kernels, GOOD), images=IMAGES)
    assert recipe.name == "mine"
    assert recipe.rootfs == "bookworm"
    assert recipe.fragments == (
        kernels / "base.config",
        kernels / "extra.config",
        tmp_path / "own" / "lock.config",
    )
    assert recipe.source == DebianSource(DEFAULT_PACKAGE, DEFAULT_SUITE)  # the default


def test_source_path_is_relative_to_the_recipe(kernels: Path, tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    tree.mkdir()
    recipe = load_kernel_recipe(
        write(kernels, GOOD + '[source]\npath = "../linux"\n'), images=IMAGES
    )
    assert recipe.source == TreeSource(tree)


def test_the_shipped_debug_recipe() -> None:
    recipe = load_kernel_recipe(VM_IMAGES / "kernels" / "debug.toml", images=IMAGES)
    assert recipe.rootfs == "bookworm"
    assert [p.name for p in recipe.fragments] == ["base.config", "debug.config"]
    assert recipe.source == DebianSource("linux-source-6.12", "trixie")
    assert "debug" in kernel_recipe_names(VM_IMAGES / "kernels")
    assert recipe.coverage == ("drivers/vfio", "drivers/vfio/mdev")


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (lambda t: t.replace('"mine"', '"other"'), "name", "the file is mine.toml"),
        (lambda t: t.replace('rootfs = "bookworm"', 'rootfs = "buster"'), "rootfs", "no image"),
        (lambda t: t.replace('rootfs = "bookworm"\n', ""), "rootfs", "is missing"),
        (lambda t: t.replace('"base", ', '"nosuch", '), "fragments", "'nosuch': no fragment"),
        (lambda t: t.replace('"extra.config"', '"base"'), "fragments", "twice"),
        (lambda t: t.replace(FRAGMENTS, "[]"), "fragments", "at least one"),
        (lambda t: t + "colour = 1\n", "colour", "unknown field"),
        (lambda t: t + '[source]\npath = "nowhere"\n', "source.path", "is not a directory"),
        (lambda t: t + '[source]\npath = "/"\npackage = "x"\n', "source.path", "not both"),
        (lambda t: t + '[source]\nsuite = "Trixie"\n', "source.suite", "does not match"),
        (lambda t: t + '[source]\nbranch = "x"\n', "source.branch", "unknown field"),
        (lambda t: t + 'source = "debian"\n', "source", "must be a table"),
        (lambda t: t + 'coverage = ["../etc"]\n', "coverage", "relative, such as drivers/vfio"),
        (lambda t: t + 'coverage = ["/drivers"]\n', "coverage", "relative"),
        (
            lambda t: t + 'coverage = ["drivers/vfio"]\n[source]\npath = "/"\n',
            "coverage",
            "needs Debian's source",
        ),
    ],
)
def test_bad_fields_name_the_file_and_field(
    kernels: Path, edit: Callable[[str], str], field: str, problem: str
) -> None:
    path = write(kernels, edit(GOOD))
    with pytest.raises(RecipeError) as caught:
        load_kernel_recipe(path, images=IMAGES)
    assert caught.value.field_name == field
    assert str(caught.value).startswith(f"{path}: field '{field}': ")
    assert problem in str(caught.value)


def test_a_name_shared_with_an_image_recipe_is_ambiguous(kernels: Path) -> None:
    path = write(kernels, GOOD.replace('"mine"', '"sid"'), name="sid")
    with pytest.raises(RecipeError, match="would be ambiguous"):
        load_kernel_recipe(path, images=IMAGES)


def test_bad_toml_names_the_file(kernels: Path) -> None:
    path = write(kernels, "name = \n")
    with pytest.raises(RecipeError, match=r"mine\.toml: not valid TOML"):
        load_kernel_recipe(path, images=IMAGES)


def test_names_are_listed_without_parsing(kernels: Path) -> None:
    write(kernels, "not toml at all [", name="broken")
    write(kernels, GOOD)
    assert kernel_recipe_names(kernels) == ("broken", "mine")


def test_build_uses_the_recipe_source_and_fragments(
    kernels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = KernelTree(tmp_path / "src", "linux-source-6.12_1")
    asked: list[object] = []

    def fake_debian_tree(package: str, suite: str, progress: object) -> KernelTree:
        asked.append((package, suite))
        return tree

    def fake_build(
        source: KernelTree,
        fragments: tuple[Path, ...],
        *,
        coverage_dirs: tuple[str, ...],
        progress: object,
    ) -> KernelBuild:
        asked.append((source, fragments))
        assert coverage_dirs == ("drivers/vfio",)
        return KernelBuild(tmp_path / "b", "6.12.117", "0" * 16, (), 1, 0, 1, 1.0, 0)

    monkeypatch.setattr(kernel_recipe, "debian_kernel_tree", fake_debian_tree)
    monkeypatch.setattr(kernel_recipe, "build_kernel", fake_build)
    recipe = KernelRecipe(
        "mine", "bookworm", (kernels / "base.config",), coverage=("drivers/vfio",)
    )
    build = build_recipe_kernel(recipe, progress=lambda _line: None)
    assert build.release == "6.12.117"
    assert asked == [(DEFAULT_PACKAGE, DEFAULT_SUITE), (tree, (kernels / "base.config",))]
