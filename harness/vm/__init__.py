# SPDX-License-Identifier: MIT
"""The VM layer: guest images built from the recipes in vm_images/ (more to come: the QEMU
launcher and the SSH layer).

Kernel command line the guest understands (set by the launcher):
  harness.authkey=<base64>  base64 of root's authorized_keys line (the run's public key)
  harness.root=<device>     the root disk for the initrd (default /dev/vda)
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
