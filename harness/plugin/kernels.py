# SPDX-License-Identifier: MIT
"""`--kernel bookworm,trixie,sid` or `--kernel PATH`: which guests the VM fixtures boot.

A name is an image recipe in vm_images/ (its Debian kernel); anything containing a slash or
naming an existing file or directory is a kernel the user built (see harness.vm.custom_kernel),
booted on the default image's root filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_KERNELS = "bookworm"
ALL_KERNELS = ("bookworm", "trixie", "sid")
# A user's own kernel boots on this image's root filesystem.
CUSTOM_KERNEL_ROOTFS = "bookworm"


class KernelChoiceError(ValueError):
    """A --kernel value that names neither a recipe nor an existing path."""


@dataclass(frozen=True)
class KernelChoice:
    """One guest kernel: a recipe name, or a path to a user's kernel."""

    spec: str
    recipe: str
    custom_path: Path | None = None

    @property
    def id(self) -> str:
        """The test id suffix: the recipe name, or the kernel directory's name."""
        if self.custom_path is None:
            return self.recipe
        return f"custom-{self.custom_path.name or 'kernel'}"


def _known_recipes() -> tuple[str, ...]:
    from harness.vm.images import recipe_dir

    return tuple(sorted(p.stem for p in recipe_dir().glob("*.toml")))


def parse_kernels(value: str, known: tuple[str, ...] | None = None) -> list[KernelChoice]:
    """Comma-separated names or paths, in order, without duplicates; `all` means every recipe."""
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
            choices.append(KernelChoice(raw, CUSTOM_KERNEL_ROOTFS, path.resolve()))
        elif raw in recipes:
            choices.append(KernelChoice(raw, raw))
        else:
            raise KernelChoiceError(
                f"--kernel {raw}: not an image recipe ({', '.join(recipes)}, all) "
                "and not a path to a kernel"
            )
    unique = list(dict.fromkeys(choices))
    if not unique:
        raise KernelChoiceError("--kernel: no kernel given")
    return unique
