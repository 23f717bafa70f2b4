# SPDX-License-Identifier: MIT
"""Build guest images from recipes into the harness cache, once per recipe content.

An image lives in `<cache>/images/<name>-<hash>/`, where the hash covers the parsed recipe,
BUILDER_VERSION and the guest init files. Its directory appears by one rename of a complete
build (manifest.json included), so a directory that exists is a finished image; a warm lookup
reads one small JSON file. Parallel workers serialise on a per-key fcntl lock, and the loser
finds the winner's image when it gets the lock. Progress goes to `progress` (stderr by
default) as one line per phase with its elapsed time.

The content key does not follow the archive: a new kernel upload to the suite reaches the
image only when the recipe (or BUILDER_VERSION) changes, or with `rebuild=True`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build, prune
from harness.core.progress import Progress, phase, stderr_progress
from harness.core.resources import RECIPES
from harness.debian import DebianMirror, debian_mirror
from harness.images.initrd import build_initrd
from harness.images.manifest import MANIFEST_NAME, ImageManifest, ManifestError, disk_usage
from harness.images.recipe import BUILDER_VERSION, Recipe, load_recipe
from harness.images.rootfs import (
    MMDEBSTRAP_TIMEOUT_SECONDS,
    RootfsError,
    installed_kernel,
    make_ext4,
    mmdebstrap_argv,
    remove_tree,
    run_logged,
)
from harness.images.vmlinux import extract_vmlinux

BuildFunction = Callable[[Recipe, str, DebianMirror, Path, Progress], "ImageManifest"]
GUEST_INIT_PACKAGE = "harness.images.guest_init"
GUEST_INIT_FILES = (
    "customize.sh",
    "guest_setup.sh",
    "harness-guest.service",
    "harness_init.sh",
    "initrd_init.sh",
    "power.sh",
)
RECIPE_DIR_ENV = RECIPES.env


class ImageBuildError(RuntimeError):
    """Building an image failed; the message says which phase and what to try."""


@dataclass(frozen=True)
class BuiltImage:
    """A finished image directory and its manifest."""

    directory: Path
    manifest: ImageManifest

    @property
    def rootfs(self) -> Path:
        return self.directory / self.manifest.rootfs

    @property
    def vmlinux(self) -> Path:
        return self.directory / self.manifest.vmlinux

    @property
    def initrd(self) -> Path:
        return self.directory / self.manifest.initrd

    @property
    def kernel_config(self) -> Path:
        return self.directory / self.manifest.kernel_config

    @property
    def kernel_release(self) -> str:
        return self.manifest.kernel_release

    @property
    def host_key(self) -> str:
        return self.manifest.host_key


def guest_init_digest() -> bytes:
    """Hash of the guest-side files: changing the init changes every image's key."""
    digest = hashlib.sha256()
    package = resources.files(GUEST_INIT_PACKAGE)
    for name in GUEST_INIT_FILES:
        digest.update(name.encode() + b"\0" + package.joinpath(name).read_bytes() + b"\0")
    return digest.digest()


def image_key(recipe: Recipe) -> str:
    return recipe.cache_key(guest_init_digest())


def images_root() -> Path:
    return cache_dir("images")


def cached_image(recipe: Recipe) -> BuiltImage | None:
    """The finished image of `recipe` if the cache has it (no lock, no build)."""
    return read_image(images_root() / image_key(recipe))


def read_image(directory: Path) -> BuiltImage | None:
    if not (directory / MANIFEST_NAME).is_file():
        return None
    try:
        return BuiltImage(directory, ImageManifest.read(directory))
    except ManifestError:
        return None


# A changed recipe gets a new image; the previous one is kept too (another checkout or branch
# sharing the cache may still use it), older ones are deleted.
KEEP_IMAGES_PER_RECIPE = 2


def build_image(
    recipe: Recipe | Path | str,
    *,
    mirror: str | None = None,
    rebuild: bool = False,
    progress: Progress = stderr_progress,
) -> BuiltImage:
    """The image of `recipe` (a Recipe, a recipe file, or a name in vm_images/), built if needed."""
    recipe = resolve_recipe(recipe)
    key = image_key(recipe)

    def build(scratch: Path) -> BuiltImage:
        manifest = _build(recipe, key, debian_mirror(mirror), scratch, progress)
        (images_root() / f"{key}.failed.log").unlink(missing_ok=True)
        return BuiltImage(images_root() / key, manifest)

    image = cached_build(
        images_root() / key, build, read_image, rebuild=rebuild, remove=remove_tree
    )
    if image.how == "another":
        progress(f"{recipe.name}: built by another worker: {image.path}")
    if image.how == "built":
        for old in prune(superseded_candidates(images_root(), recipe.name), KEEP_IMAGES_PER_RECIPE,
                         current=image.path, remove=remove_tree):  # fmt: skip
            progress(f"{recipe.name}: removed the superseded image {old.name}")
    return image.value


def superseded_candidates(root: Path, name: str) -> list[tuple[float, Path]]:
    """Built images of recipe `name`, with their build time: `name-<key>` only, so that
    bookworm's never include bookworm-nested's."""
    own = re.compile(rf"{re.escape(name)}-[0-9a-f]+")
    return [
        ((d / MANIFEST_NAME).stat().st_mtime, d)
        for d in root.glob(f"{name}-*")
        if own.fullmatch(d.name) and (d / MANIFEST_NAME).is_file()
    ]


def recipe_dir() -> Path:
    """The image recipes: $HARNESS_VM_IMAGES, the installed package's copy or the checkout's
    vm_images/ (harness.core.resources)."""
    return RECIPES.path(ImageBuildError)


def resolve_recipe(recipe: Recipe | Path | str) -> Recipe:
    """A Recipe as is; a path to a .toml file; or a bare name of a recipe in recipe_dir() or,
    failing that, in one of its subdirectories (recipes kept out of `--kernel all`, such as
    nested/bookworm-nested.toml: an image built from one is found again by its name)."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str) and not recipe.endswith(".toml") and "/" not in recipe:
        top = recipe_dir() / f"{recipe}.toml"
        below = sorted(recipe_dir().glob(f"*/{recipe}.toml"))
        return load_recipe(below[0] if not top.exists() and len(below) == 1 else top)
    return load_recipe(Path(recipe))


def _build(
    recipe: Recipe, key: str, mirror: DebianMirror, scratch: Path, progress: Progress
) -> ImageManifest:
    started = time.monotonic()
    tree = scratch / "tree"
    work = scratch / "work"
    guest_files = work / "guest_init"
    guest_files.mkdir(parents=True)
    package = resources.files(GUEST_INIT_PACKAGE)
    for name in GUEST_INIT_FILES:
        (guest_files / name).write_bytes(package.joinpath(name).read_bytes())
    log = work / "build.log"
    try:
        with phase(progress, recipe.name, "mmdebstrap"):
            argv = mmdebstrap_argv(recipe, mirror, tree, guest_files / "customize.sh", guest_files)
            run_logged(
                argv,
                log,
                MMDEBSTRAP_TIMEOUT_SECONDS,
                f"mmdebstrap of {recipe.name} ({recipe.suite})",
                f"Check the recipe's packages exist in {recipe.suite} and that {mirror.uri} is "
                "reachable (or set HARNESS_DEBIAN_MIRROR). mmdebstrap needs root or "
                "unprivileged user namespaces.",
                watch=(f"mmdebstrap:{recipe.name}", progress),
            )
        with phase(progress, recipe.name, "kernel"):
            kernel = installed_kernel(tree)
            extract_vmlinux(kernel.vmlinuz, scratch / "vmlinux")
            shutil.copyfile(kernel.config, scratch / "config")
        with phase(progress, recipe.name, "initrd"):
            modules = build_initrd(tree / "bin/busybox", kernel.modules_dir, scratch / "initrd.img")
        host_key = _host_key(tree)
        with phase(progress, recipe.name, "mke2fs"):
            capacity = make_ext4(tree, scratch / "rootfs.img", recipe.disk_headroom_mib, log)
    except (RootfsError, OSError, RuntimeError) as err:
        kept = scratch.parent / f"{key}.failed.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(log, kept)
        raise ImageBuildError(
            f"building image {recipe.name} ({key}) failed: {err}\nFull log: {kept}"
        ) from err
    with phase(progress, recipe.name, "cleanup"):
        remove_tree(work)
        remove_tree(tree)
    files = ("rootfs.img", "vmlinux", "initrd.img", "config")
    manifest = ImageManifest(
        name=recipe.name,
        suite=recipe.suite,
        key=key,
        builder_version=BUILDER_VERSION,
        kernel_package=recipe.kernel_package,
        kernel_release=kernel.release,
        host_key=host_key,
        initrd_modules=tuple(modules),
        sizes={name: disk_usage(scratch / name) for name in files},
        rootfs_capacity=capacity,
        build_seconds=round(time.monotonic() - started, 1),
    )
    manifest.write(scratch)
    progress(
        f"{recipe.name}: built {key} in {manifest.build_seconds:.1f} s, "
        f"{manifest.image_bytes / (1 << 20):.0f} MiB on disk, kernel {kernel.release}"
    )
    return manifest


def _host_key(tree: Path) -> str:
    path = tree / "etc/dropbear/harness_host_key.pub"
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ImageBuildError(f"{path} was not written by the customize hook: {err}") from err
    fields = key.split()
    if len(fields) < 2 or fields[0] != "ssh-ed25519":
        raise ImageBuildError(f"{path} does not hold an ed25519 public key: {key[:80]!r}")
    return f"{fields[0]} {fields[1]}"  # without dropbearkey's comment (the build host's name)
