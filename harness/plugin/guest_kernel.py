# SPDX-License-Identifier: MIT
"""What a --kernel choice boots, and our module for it, when it is not an image's own kernel.

    bundle = choice_kernel(choice, progress)        # None: the image's Debian kernel
    ko = tree_module_for(choice, bundle, progress)  # kmod/ built against that kernel's tree

A kernel recipe (vm_images/kernels/) is built, or its build brought up to date, by
harness.vm.kernel_recipe; a path is taken as the user built it. Either way the result is
prepared like any custom kernel (harness.vm.custom_kernel) for the choice's root filesystem.
Our module is then built on the host against the kernel's build tree (harness.kmod.tree_module),
which a recipe's build directory always is, and a user's path is when it holds .config and
Module.symvers. Imported lazily: it pulls in the VM and module layers.

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

from harness.kmod.module_cache import VendorModuleError
from harness.kmod.tree_module import build_tree_module, tree_problem
from harness.plugin.kernels import KernelChoice
from harness.vm.custom_kernel import KernelBundle, prepare_custom_kernel
from harness.vm.images import Progress
from harness.vm.kernel_build import KernelBuildError
from harness.vm.kernel_fragments import ConfigMismatchError
from harness.vm.kernel_layout import CustomKernelError
from harness.vm.kernel_recipe import build_recipe_kernel
from harness.vm.recipe import RecipeError

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


def tree_module_for(
    choice: KernelChoice,
    bundle: KernelBundle | None,
    progress: Progress,
    *,
    source: Path | None = None,
    faults: bool = False,
) -> Path:
    """Our module (or `source`) built against the build tree of `choice`'s kernel.

    VendorModuleError when the kernel has no build tree to build against (a bare image, an
    install without headers), when the tree cannot build modules, or when this host's
    compiler is not the one that built the kernel.
    """
    build_dir = bundle.build_dir if bundle is not None else None
    problem = tree_problem(build_dir) if build_dir is not None else "no build tree known"
    if build_dir is None or problem is not None:
        where = choice.custom_path or build_dir or choice.spec
        raise VendorModuleError(
            f"{choice.id}: our module is built against the kernel's build tree, and {where} "
            f"gives none ({problem}): pass --kernel the kernel's build directory, or build "
            "kmod/ against your kernel and pass --vendor-module PATH.ko"
        )
    return build_tree_module(build_dir, progress, source=source, faults=faults)
