# SPDX-License-Identifier: MIT
"""The VM layer: guest images (images.py, from the recipes in vm_images/), kernels of your own
(custom_kernel.py), QEMU (qemu_cmdline.py, qmp.py), disposable VMs (machine.py: cold boot;
saved_state.py: restore), their clean-up (run_dir.py, watchdog.py) and SSH (ssh*.py).
It knows nothing of VFIO beyond checking that the guest loaded its modules.

Kernel command line the guest understands (set by the launcher):
  harness.authkey=<base64>  base64 of root's authorized_keys line (the run's public key)
  harness.root=<device>     the root disk for the initrd (default /dev/vda)
  harness.modules=<device>  a custom kernel's modules disk (/dev/vdb), mounted read-only
"""

from harness.vm.images import (
    BuiltImage,
    ImageBuildError,
    build_image,
    cached_image,
    image_key,
    resolve_recipe,
)
from harness.vm.manifest import ImageManifest, ManifestError
from harness.vm.recipe import BUILDER_VERSION, Recipe, RecipeError, load_recipe, load_recipes

__all__ = [
    "BUILDER_VERSION",
    "BuiltImage",
    "ImageBuildError",
    "ImageManifest",
    "ManifestError",
    "Recipe",
    "RecipeError",
    "build_image",
    "cached_image",
    "image_key",
    "load_recipe",
    "load_recipes",
    "resolve_recipe",
]
