# SPDX-License-Identifier: MIT
"""Guest images: the recipes in vm_images/ (recipe.py), the root filesystem mmdebstrap makes of
one (rootfs.py), the Debian kernel taken out of it (vmlinux.py) and its initrd (initrd.py), built
and cached (build.py, manifest.py). guest_init/ holds the scripts installed in every image.
"""

from harness.images.build import (
    BuiltImage,
    ImageBuildError,
    build_image,
    cached_image,
    image_key,
    resolve_recipe,
)
from harness.images.manifest import ImageManifest, ManifestError
from harness.images.recipe import BUILDER_VERSION, Recipe, RecipeError, load_recipe, load_recipes

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
