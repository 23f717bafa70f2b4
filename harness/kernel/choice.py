# SPDX-License-Identifier: MIT
"""`--kernel bookworm,trixie,sid`, `--kernel debug` or `--kernel PATH`: which guests the VM
fixtures boot.

A name is an image recipe in vm_images/ (its Debian kernel), or a kernel recipe in
vm_images/kernels/ (a kernel the harness builds from source, harness.kernel.recipe, booted
on the root filesystem of the image the recipe names); anything containing a slash or naming
an existing file or directory is a kernel the user built (see harness.kernel.custom),
booted on the default image's root filesystem. `all` is the image recipes only: kernel
recipes cost a kernel build, so they are asked for by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.kernel.fragments import BASE_FRAGMENT

if TYPE_CHECKING:
    from harness.kernel.recipe import KernelRecipe

DEFAULT_KERNELS = "bookworm"
ALL_KERNELS = ("bookworm", "trixie", "sid")
# A user's own kernel boots on this image's root filesystem.
CUSTOM_KERNEL_ROOTFS = "bookworm"
# Written by harness.kernel.build into each build directory it finished.
BUILD_RECORD = "kernel-build.json"


class KernelChoiceError(ValueError):
    """A --kernel value that names neither a recipe nor an existing path."""


@dataclass(frozen=True)
class KernelChoice:
    """One guest kernel: an image recipe, a kernel recipe, or a path to a user's kernel."""

    spec: str
    recipe: str  # the image: its root filesystem, and its kernel unless one of these is set
    custom_path: Path | None = None
    kernel_recipe: KernelRecipe | None = None
    label: str | None = None  # the test id, when it is not derived from the above

    @property
    def id(self) -> str:
        """The test id suffix: the recipe name, or a name for the user's kernel."""
        if self.label is not None:
            return self.label
        if self.kernel_recipe is not None:
            return self.kernel_recipe.name
        if self.custom_path is None:
            return self.recipe
        return f"custom-{self.custom_path.name or 'kernel'}"

    @property
    def own_kernel(self) -> bool:
        """Whether it boots a kernel other than its image's (so our module is built against
        that kernel's build tree, not in the image's chroot)."""
        return self.custom_path is not None or self.kernel_recipe is not None


def _known_recipes() -> tuple[str, ...]:
    from harness.images.build import recipe_dir

    return tuple(sorted(p.stem for p in recipe_dir().glob("*.toml")))


def build_dir_label(path: Path) -> str | None:
    """`<source tree>-<fragments but base>` (e.g. linux-debug) for a build directory made by
    kernel_build, whose own name is a hash; None for any other path."""
    try:
        record = json.loads((path / BUILD_RECORD).read_text(encoding="utf-8"))
        source = Path(str(record["source"])).name
        stems = [Path(str(f)).stem for f in record["fragments"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return "-".join([source, *(s for s in stems if s != BASE_FRAGMENT)])


def parse_kernels(
    value: str, known: tuple[str, ...] | None = None, kernel_dir: Path | None = None
) -> list[KernelChoice]:
    """Comma-separated names or paths, in order, without duplicates; `all` means every image
    recipe. `known` are the image recipes, `kernel_dir` holds the kernel recipes (defaults:
    vm_images/ and vm_images/kernels/)."""
    recipes = known if known is not None else _known_recipes()
    choices: list[KernelChoice] = []
    for raw in (part.strip() for part in value.split(",")):
        if not raw:
            continue
        if raw == "all":
            choices += [KernelChoice(name, name) for name in recipes]
            continue
        path = Path(raw).expanduser()
        if "/" in raw or path.exists():
            if not path.exists():
                raise KernelChoiceError(f"--kernel {raw}: no such file or directory")
            resolved = path.resolve()
            label = build_dir_label(resolved) if resolved.is_dir() else None
            choices.append(KernelChoice(raw, CUSTOM_KERNEL_ROOTFS, resolved, label=label))
        elif raw in recipes:
            choices.append(KernelChoice(raw, raw))
        else:
            choices.append(_kernel_recipe_choice(raw, recipes, kernel_dir))
    unique = list(dict.fromkeys(choices))
    if not unique:
        raise KernelChoiceError("--kernel: no kernel given")
    return unique


def _kernel_recipe_choice(
    name: str, images: tuple[str, ...], kernel_dir: Path | None
) -> KernelChoice:
    """The choice of kernel recipe `name`; only now are kernel recipes looked at."""
    from harness.images.recipe import RecipeError
    from harness.kernel.recipe import kernel_recipe_dir, kernel_recipe_names, load_kernel_recipe

    directory = kernel_dir if kernel_dir is not None else kernel_recipe_dir()
    names = kernel_recipe_names(directory)
    if name not in names:
        raise KernelChoiceError(
            f"--kernel {name}: not an image recipe ({', '.join(images)}, all), not a kernel "
            f"recipe ({', '.join(names) or f'none in {directory}'}) and not a path to a kernel"
        )
    try:
        recipe = load_kernel_recipe(directory / f"{name}.toml", images=images)
    except RecipeError as err:
        raise KernelChoiceError(f"--kernel {name}: {err}") from None
    return KernelChoice(name, recipe.rootfs, kernel_recipe=recipe)
