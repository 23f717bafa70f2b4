# SPDX-License-Identifier: MIT
"""What a --kernel choice boots when it is not an image's own kernel, built and prepared.

    bundle = choice_kernel(choice, progress)        # None: the image's Debian kernel

A kernel recipe (vm_images/kernels/) is built, or its build brought up to date, by
harness.kernel.recipe; a path is taken as the user built it. Either way the result is
prepared like any custom kernel (harness.kernel.custom) for the choice's root filesystem.
Our module for it is built by harness.kmod.tree_module.tree_module_for.

`vfio-harness run` builds recipe kernels before pytest starts and names their build
directories in $HARNESS_PREPARED_KERNELS (JSON, recipe name to directory), so its pytest and
every xdist worker boot them without running the configure step and make again (seconds of
both CPUs each, even when nothing changed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from harness.core.progress import Progress
from harness.images.recipe import RecipeError
from harness.kernel.build import KernelBuildError
from harness.kernel.choice import KernelChoice
from harness.kernel.custom import KernelBundle, prepare_custom_kernel
from harness.kernel.fragments import ConfigMismatchError
from harness.kernel.layout import CustomKernelError
from harness.kernel.recipe import build_recipe_kernel

# What choice_kernel raises for a kernel that cannot be built or booted (a user's problem to
# fix, shown as one message; anything else is a bug).
KERNEL_ERRORS: tuple[type[Exception], ...] = (
    KernelBuildError,
    ConfigMismatchError,
    CustomKernelError,
    RecipeError,
)


PREPARED_ENV = "HARNESS_PREPARED_KERNELS"


def prepared_env(builds: Mapping[str, Path]) -> dict[str, str]:
    """The environment entry that hands recipe kernels built just now to a pytest run."""
    return {PREPARED_ENV: json.dumps({name: str(path) for name, path in builds.items()})}


def prepared_build(name: str) -> Path | None:
    """The build directory of recipe `name` when the run that started us built it."""
    try:
        builds = json.loads(os.environ.get(PREPARED_ENV, "{}"))
    except ValueError:
        return None
    path = builds.get(name) if isinstance(builds, dict) else None
    return Path(path) if isinstance(path, str) and Path(path).is_dir() else None


def recipe_build_dir(choice: KernelChoice, progress: Progress) -> Path | None:
    """The build directory of `choice`'s kernel recipe (built now unless already prepared),
    or None when it is not a kernel recipe."""
    recipe = choice.kernel_recipe
    if recipe is None:
        return None
    prepared = prepared_build(recipe.name)
    if prepared is not None:
        progress(f"kernel {recipe.name}: built by vfio-harness run before pytest: {prepared}")
        return prepared
    return build_recipe_kernel(recipe, progress).build_dir


def choice_kernel(
    choice: KernelChoice, progress: Progress, *, build_dir: Path | None = None
) -> KernelBundle | None:
    """The kernel `choice` boots instead of its image's, built and prepared; None for none.
    `build_dir`: its recipe's build, when the caller has just made it."""
    path = build_dir or recipe_build_dir(choice, progress) or choice.custom_path
    if path is None:
        return None
    return prepare_custom_kernel(path, progress)
