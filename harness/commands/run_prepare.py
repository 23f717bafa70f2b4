# SPDX-License-Identifier: MIT
"""What `vfio-harness run` makes before pytest starts, with progress, errors stopping it: each
kernel's image, the kernels built from source, and the driver module for each kernel (ours, a
--vendor-src build, or the --vendor-module file as given)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli_errors import UsageError, UserError

if TYPE_CHECKING:
    from harness.images.build import BuiltImage
    from harness.kernel.choice import KernelChoice
    from harness.kernel.custom import KernelBundle


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Prepared:
    choice: KernelChoice
    image: BuiltImage
    bundle: KernelBundle | None  # what it boots instead of the image's kernel
    build_dir: Path | None  # a kernel recipe's build directory
    module: Path  # the driver's .ko for this kernel


def prepare(
    kernels: str,
    *,
    vendor_module: Path | None = None,
    faults: bool = False,
    source: Path | None = None,
    sample: str | None = None,
) -> list[Prepared]:
    """Everything each kernel of `kernels` needs, built or taken from the cache."""
    from harness.debian import AptError, MirrorNotFoundError
    from harness.images.build import ImageBuildError, build_image
    from harness.images.recipe import RecipeError
    from harness.kernel.choice import KernelChoiceError, parse_kernels
    from harness.kmod.module_cache import VendorModuleError, build_vendor_module
    from harness.kmod.samples import SampleError, sample_for

    try:
        choices = parse_kernels(kernels)
    except (KernelChoiceError, RecipeError) as exc:
        raise UsageError(str(exc)) from None
    prepared = []
    try:
        for choice in choices:
            image = build_image(choice.recipe, progress=progress)
            build_dir, bundle = _own_kernel(choice) if choice.own_kernel else (None, None)
            if sample is not None:
                source = sample_for(sample, choice, progress)
            if vendor_module is not None:
                module = vendor_module
            elif choice.own_kernel:
                module = _tree_module(choice, bundle, faults=faults, source=source)
            else:
                module = build_vendor_module(image, progress, source=source, faults=faults)
            prepared.append(Prepared(choice, image, bundle, build_dir, module))
    except (ImageBuildError, AptError, MirrorNotFoundError, VendorModuleError, SampleError) as exc:
        raise UserError(str(exc)) from None
    return prepared


def without_gcov(prepared: list[Prepared]) -> list[str]:
    """The kernels (ids) whose config has no CONFIG_GCOV_KERNEL: no coverage from their VMs."""
    from harness.kernel.config import parse_config

    missing = []
    for p in prepared:
        config = p.bundle.config if p.bundle is not None else p.image.kernel_config
        try:
            text = config.read_text(encoding="utf-8", errors="replace") if config else ""
        except OSError:
            text = ""
        if parse_config(text).get("GCOV_KERNEL") != "y":
            missing.append(p.choice.id)
    return missing


def recipe_builds(prepared: list[Prepared]) -> dict[str, Path]:
    """The build directory of each kernel recipe, for pytest (harness.kernel.prepare)."""
    return {
        p.choice.kernel_recipe.name: p.build_dir
        for p in prepared
        if p.choice.kernel_recipe is not None and p.build_dir is not None
    }


def _own_kernel(choice: KernelChoice) -> tuple[Path | None, KernelBundle | None]:
    """Build (a recipe) and prepare the kernel: its recipe build, and what it boots."""
    from harness.kernel.prepare import KERNEL_ERRORS, choice_kernel, recipe_build_dir

    try:
        build = recipe_build_dir(choice, progress)
        return build, choice_kernel(choice, progress, build_dir=build)
    except KERNEL_ERRORS as exc:
        raise UserError(f"{choice.id}: {exc}") from None


def _tree_module(
    choice: KernelChoice, bundle: KernelBundle | None, *, faults: bool, source: Path | None
) -> Path:
    from harness.kmod.tree_module import tree_module_for

    return tree_module_for(choice, bundle, progress, source=source, faults=faults)
