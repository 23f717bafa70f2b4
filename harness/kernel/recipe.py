# SPDX-License-Identifier: MIT
"""Kernel recipes: vm_images/kernels/<name>.toml, a kernel the harness builds from source.

    recipe = find_kernel_recipe("debug")        # vm_images/kernels/debug.toml
    build = build_recipe_kernel(recipe)         # kernel_build.build_kernel, cached
    prepare_custom_kernel(build.build_dir)      # booted on build_image(recipe.rootfs)

A recipe names the source (Debian's linux-source package by default, or a clean tree of your
own), the config fragments merged onto tinyconfig, in order, and the image recipe whose root
filesystem the kernel boots on. It holds no cache key of its own: kernel_build keys a build by
its source and the merged .config, so two recipes that resolve to the same kernel share one
build directory. Parsing never builds or downloads anything; a bad field is a RecipeError
naming the file and the field, like an image recipe's.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.progress import Progress, stderr_progress
from harness.images.build import recipe_dir
from harness.images.recipe import (
    NAME_PATTERN,
    PACKAGE_PATTERN,
    SUITE_PATTERN,
    FieldReader,
    RecipeError,
    read_toml,
)
from harness.kernel.build import (
    DEFAULT_PACKAGE,
    DEFAULT_SUITE,
    KernelBuild,
    KernelTree,
    build_kernel,
    debian_kernel_tree,
    fragment_dir,
    user_kernel_tree,
)

FRAGMENT_SUFFIX = ".config"
_TOP_FIELDS = {"name", "description", "rootfs", "fragments", "source", "coverage"}
_COVERAGE_DIR = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")  # relative, no "..": a tree dir
_SOURCE_FIELDS = {"package", "suite", "path"}


@dataclass(frozen=True)
class DebianSource:
    """Debian's kernel source package (its tarball is extracted once into the cache)."""

    package: str = DEFAULT_PACKAGE
    suite: str = DEFAULT_SUITE


@dataclass(frozen=True)
class TreeSource:
    """A developer's clean kernel tree (kernel_build refuses one that was built in place)."""

    path: Path


@dataclass(frozen=True)
class KernelRecipe:
    name: str
    rootfs: str  # an image recipe in vm_images/: the root filesystem the kernel boots on
    fragments: tuple[Path, ...]  # absolute paths, merged in this order
    source: DebianSource | TreeSource = DebianSource()
    description: str = ""
    file: Path | None = field(default=None, compare=False)
    # Source directories compiled for coverage (gcov and KCOV) when the config has them on;
    # only for Debian's source, which is ours to edit.
    coverage: tuple[str, ...] = ()


def kernel_recipe_dir() -> Path:
    """vm_images/kernels/: the kernel recipes live beside the fragments they name."""
    return fragment_dir()


def kernel_recipe_names(directory: Path | None = None) -> tuple[str, ...]:
    """The names of the kernel recipes, without parsing them (one bad recipe must not break
    `--kernel` for the others)."""
    root = directory if directory is not None else kernel_recipe_dir()
    return tuple(sorted(p.stem for p in root.glob("*.toml")))


def find_kernel_recipe(name: str, *, images: Collection[str] | None = None) -> KernelRecipe:
    """The kernel recipe called `name` in vm_images/kernels/."""
    return load_kernel_recipe(kernel_recipe_dir() / f"{name}.toml", images=images)


def load_kernel_recipe(path: Path, *, images: Collection[str] | None = None) -> KernelRecipe:
    """Read and validate one kernel recipe; `images` are the image recipe names its rootfs may
    be (default: the *.toml files in vm_images/)."""
    data = read_toml(path, "the kernel recipe")
    if images is None:
        images = tuple(p.stem for p in recipe_dir().glob("*.toml"))
    return parse_kernel_recipe(data, path, images)


def parse_kernel_recipe(
    data: Mapping[str, Any], path: Path, images: Collection[str]
) -> KernelRecipe:
    reader = FieldReader(data, path, "")
    reader.reject_unknown(_TOP_FIELDS)
    name = reader.text("name", pattern=NAME_PATTERN)
    if name != path.stem:
        raise RecipeError(path, "name", f"is {name!r} but the file is {path.name}: make them match")
    if name in images:  # --kernel takes both kinds of name
        raise RecipeError(
            path, "name", f"{name!r} is also an image recipe: --kernel {name} would be ambiguous"
        )
    rootfs = reader.text("rootfs", pattern=NAME_PATTERN)
    if rootfs not in images:
        known = ", ".join(sorted(images)) or "none"
        raise RecipeError(path, "rootfs", f"no image recipe {rootfs!r} (image recipes: {known})")
    return KernelRecipe(
        name=name,
        description=reader.text("description", default=""),
        rootfs=rootfs,
        fragments=_fragments(reader, path),
        source=_source(FieldReader(reader.table("source", optional=True), path, "source."), path),
        file=path,
        coverage=_coverage(reader, path),
    )


def _coverage(reader: FieldReader, path: Path) -> tuple[str, ...]:
    dirs = tuple(reader.strings("coverage", default=()))
    for directory in dirs:
        if not _COVERAGE_DIR.match(directory):
            raise RecipeError(path, "coverage", f"{directory!r}: a directory of the tree, "
                              "relative, such as drivers/vfio")  # fmt: skip
    if dirs and "path" in reader.table("source", optional=True):
        raise RecipeError(
            path,
            "coverage",
            "needs Debian's source: the harness does not edit your tree's Makefiles (add "
            "GCOV_PROFILE := y there yourself)",
        )
    return dirs


def _fragments(reader: FieldReader, path: Path) -> tuple[Path, ...]:
    """Bare names ("debug") are fragments beside the recipe; anything with a slash is a path,
    relative to the recipe's directory."""
    names = reader.strings("fragments")
    if not names:
        raise RecipeError(path, "fragments", "must list at least one fragment (e.g. base)")
    resolved = []
    for name in names:
        if "/" in name:
            candidate = (path.parent / Path(name).expanduser()).resolve()
        else:
            stem = name.removesuffix(FRAGMENT_SUFFIX)
            candidate = (path.parent / f"{stem}{FRAGMENT_SUFFIX}").resolve()
        if not candidate.is_file():
            raise RecipeError(path, "fragments", f"{name!r}: no fragment file {candidate}")
        resolved.append(candidate)
    if len(set(resolved)) != len(resolved):
        raise RecipeError(path, "fragments", "lists a fragment twice")
    return tuple(resolved)


def _source(reader: FieldReader, path: Path) -> DebianSource | TreeSource:
    reader.reject_unknown(_SOURCE_FIELDS)
    if "path" in reader.data:
        if "package" in reader.data or "suite" in reader.data:
            raise RecipeError(
                path, "source.path", "give either a path or a Debian package (and suite), not both"
            )
        tree = (path.parent / Path(reader.text("path")).expanduser()).resolve()
        if not tree.is_dir():
            raise RecipeError(path, "source.path", f"{tree} is not a directory")
        return TreeSource(tree)
    return DebianSource(
        package=reader.text("package", pattern=PACKAGE_PATTERN, default=DEFAULT_PACKAGE),
        suite=reader.text("suite", pattern=SUITE_PATTERN, default=DEFAULT_SUITE),
    )


def recipe_tree(recipe: KernelRecipe, progress: Progress = stderr_progress) -> KernelTree:
    """The source tree a recipe builds (Debian's is extracted on first use)."""
    if isinstance(recipe.source, TreeSource):
        return user_kernel_tree(recipe.source.path)
    return debian_kernel_tree(recipe.source.package, recipe.source.suite, progress=progress)


def build_recipe_kernel(recipe: KernelRecipe, progress: Progress = stderr_progress) -> KernelBuild:
    """The recipe's kernel, built or brought up to date (a no-op make when nothing changed).

    Raises KernelBuildError or kernel_fragments.ConfigMismatchError like build_kernel.
    """
    progress(f"kernel {recipe.name}: {' + '.join(p.stem for p in recipe.fragments)}")
    return build_kernel(
        recipe_tree(recipe, progress),
        recipe.fragments,
        coverage_dirs=recipe.coverage,
        progress=progress,
    )
