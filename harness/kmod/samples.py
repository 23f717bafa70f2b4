# SPDX-License-Identifier: MIT
"""The kernel's own sample mdev drivers (samples/vfio-mdev/), as a vendor's driver source.

    source = sample_source("mtty", "bookworm")   # a directory with mtty.c and a Kbuild
    build_vendor_module(build_image("bookworm"), source=source)

Drivers we did not write, to try the suite on as a vendor would (`vfio-harness run
--vendor-src "$(vfio-harness kmod sample mtty)" --mdev-parent mtty --mdev-type mtty-2`).
Debian builds none of them (CONFIG_SAMPLES is off), so their sources are taken from the
linux-source package of the guest kernel's Debian release (harness.debian.linux_source),
with a one-line Kbuild of ours, and built out of tree like any vendor's driver.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.debian import linux_source

if TYPE_CHECKING:
    from harness.kernel.choice import KernelChoice

# Sample -> its files in samples/vfio-mdev/ (mdpy-fb.c is the guest's framebuffer driver).
SAMPLES: dict[str, tuple[str, ...]] = {
    "mtty": ("mtty.c",),
    "mdpy": ("mdpy.c", "mdpy-defs.h"),
    "mbochs": ("mbochs.c",),
}
SAMPLES_DIR = "samples/vfio-mdev"


class SampleError(RuntimeError):
    """No such sample, or its source could not be fetched; the message says what to do."""


def sample_source(
    name: str,
    suite: str = "bookworm",
    *,
    mirror: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Path:
    """A directory holding sample `name` from the linux-source of Debian `suite`, with a
    Kbuild: `<cache>/kernel-samples/<name>/<package>_<version>/<name>/`."""
    if name not in SAMPLES:
        raise SampleError(f"no kernel sample {name!r}: the mdev samples are {', '.join(SAMPLES)}")
    members = {f"{SAMPLES_DIR}/{file}": f"{name}/{file}" for file in SAMPLES[name]}
    kbuild = f"# Written by vfio-harness: the sample as an out-of-tree module.\nobj-m := {name}.o\n"
    try:
        entry = linux_source.source_files(
            f"kernel-samples/{name}",
            suite,
            members,
            extra={f"{name}/Kbuild": kbuild},
            mirror=mirror,
            progress=progress,
        )
    except linux_source.LinuxSourceError as exc:
        raise SampleError(f"kernel sample {name}: {exc}") from None
    return entry.path / name


def sample_for(name: str, choice: KernelChoice, progress: Callable[[str], None] = print) -> Path:
    """The sample's source of the Debian release whose kernel `choice` boots: its image's
    suite, or a kernel recipe's source suite. A kernel of your own has no such release."""
    from harness.images.build import resolve_recipe
    from harness.kernel.recipe import DebianSource

    if choice.kernel_recipe is not None:
        source = choice.kernel_recipe.source
        if not isinstance(source, DebianSource):
            raise SampleError(
                f"{choice.id}: built from a tree of yours: take {name} from it and pass "
                "--vendor-src (the kernel's samples/vfio-mdev/)"
            )
        suite = source.suite
    elif choice.custom_path is not None:
        raise SampleError(
            f"{choice.id}: a kernel of yours: build {name} from its tree (samples/vfio-mdev/) "
            "and pass --vendor-src or --vendor-module"
        )
    else:
        suite = resolve_recipe(choice.recipe).suite
    return sample_source(name, suite, progress=progress)
