# SPDX-License-Identifier: MIT
"""The chroot that compiles out-of-tree modules for one image's kernel, built once and cached.

Debian's headers packages point at absolute /usr/src/linux-headers-*-common paths and need the
compiler the kernel was built with (gcc-14 for trixie, gcc-16 for sid), so modules are built
inside an mmdebstrap chroot of the image's suite rather than on the host. The chroot holds the
recipe's [build_env] packages plus `linux-headers-<release>` for the image's exact kernel, so
the headers always match the kernel the guest boots.

An environment lives in `<cache>/build-envs/<suite>-<release>-<hash>/` (`root/`, the chroot;
`manifest.json`; `mmdebstrap.log`). The hash covers the suite, variant, package list, kernel
release and BUILD_ENV_VERSION; the mirror is not part of it. As for images, the directory
appears by one rename of a finished build under a per-key fcntl lock, so an existing directory
is complete and parallel workers build it once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build, input_key
from harness.core.progress import Progress, stderr_progress
from harness.debian import DebianMirror, debian_mirror
from harness.images.build import BuiltImage, resolve_recipe
from harness.images.recipe import Recipe
from harness.images.rootfs import (
    BASE_PATH_EXCLUDES,
    BASE_PATH_INCLUDES,
    MMDEBSTRAP_TIMEOUT_SECONDS,
    RootfsError,
    remove_tree,
    run_logged,
    tree_usage,
)
from harness.kmod.env_manifest import ENV_MANIFEST_NAME, EnvManifest, EnvManifestError

# Bump when the environment built for the same inputs changes.
BUILD_ENV_VERSION = 1
ROOT_NAME = "root"
LOG_NAME = "mmdebstrap.log"
HEADERS_PARENT = "/usr/src"
PROBE_TIMEOUT_SECONDS = 60
# trixie's headers package depends on the kernel image itself; out-of-tree builds need neither
# its ~110 MiB of modules nor the vmlinuz (Module.symvers and .config are in the headers).
KERNEL_IMAGE_EXCLUDES = ("/usr/lib/modules/*/kernel/*", "/lib/modules/*/kernel/*", "/boot/*")

# A kernel release ends up in a package name and in paths: keep it to Debian's characters.
_RELEASE = re.compile(r"^[0-9][a-z0-9.+~-]*$")
# How apt says a requested package is not in the archive ({p}: the package, regex-escaped).
_NOT_IN_ARCHIVE = (
    r"Unable to locate package {p}\s*$",
    r"Package '{p}' has no installation candidate",
    r"Couldn't find any package by (?:glob|regex) '{p}'",
)


class BuildEnvError(RuntimeError):
    """The build environment could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class BuildEnv:
    """A finished build chroot for one kernel release."""

    directory: Path
    manifest: EnvManifest

    @property
    def root(self) -> Path:
        return self.directory / ROOT_NAME

    @property
    def kernel_release(self) -> str:
        return self.manifest.kernel_release

    @property
    def headers_dir(self) -> str:
        """The kernel build directory as seen inside the chroot."""
        return self.manifest.headers_dir

    @property
    def compiler(self) -> str:
        return self.manifest.compiler

    @property
    def gcc_version(self) -> str:
        return self.manifest.gcc_version


def headers_package(release: str) -> str:
    if not _RELEASE.match(release):
        raise BuildEnvError(f"kernel release {release!r} is not a Debian kernel release name")
    return f"linux-headers-{release}"


def env_packages(recipe_packages: Sequence[str], release: str) -> tuple[str, ...]:
    """The recipe's packages, then the headers of exactly `release` (once)."""
    exact = headers_package(release)
    return (*(p for p in recipe_packages if p != exact), exact)


def build_env_key(suite: str, variant: str, packages: Sequence[str], release: str) -> str:
    """`<suite>-<release>-<hash>`: the name says what it is, the hash what it holds."""
    inputs = {
        "version": BUILD_ENV_VERSION,
        "suite": suite,
        "variant": variant,
        "packages": list(packages),
        "release": release,
    }
    return f"{suite}-{release}-{input_key(inputs)}"


def mmdebstrap_env_argv(
    suite: str, variant: str, packages: Sequence[str], mirror: DebianMirror, tree: Path
) -> list[str]:
    """The mmdebstrap command line that bootstraps the chroot into the directory `tree`."""
    argv = [
        "mmdebstrap",
        f"--variant={variant}",
        "--include=" + ",".join(packages),
        # sid's Release is often past its Valid-Until by the time it is used.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        f"--keyring={mirror.keyring}",
    ]
    excludes = (*BASE_PATH_EXCLUDES, *KERNEL_IMAGE_EXCLUDES)
    argv += [f"--dpkgopt=path-exclude={p}" for p in excludes]
    argv += [f"--dpkgopt=path-include={p}" for p in BASE_PATH_INCLUDES]
    source = f"deb [signed-by={mirror.keyring}] {mirror.uri} {suite} main"
    argv += [suite, str(tree), source]
    return argv


def missing_from_archive(log_text: str, package: str) -> bool:
    """Whether apt's output says `package` is not in the archive."""
    escaped = re.escape(package)
    return any(
        re.search(pattern.format(p=escaped), log_text, re.MULTILINE) for pattern in _NOT_IN_ARCHIVE
    )


def headers_gone_message(image_name: str, release: str, suite: str, mirror_uri: str) -> str:
    return (
        f"{headers_package(release)} (the headers of image {image_name}'s kernel) is no longer "
        f"in Debian {suite} on {mirror_uri}: the archive has moved on to a newer kernel. "
        f"Rebuild the image with `vfio-harness images build --rebuild {image_name}` to get the "
        "current kernel, then build the module again."
    )


def kernel_compiler(config_text: str) -> str | None:
    """The compiler command the kernel was built with, from CONFIG_CC_VERSION_TEXT.

    e.g. "x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0" -> "x86_64-linux-gnu-gcc-16".
    """
    match = re.search(r'^CONFIG_CC_VERSION_TEXT="([^"\s]+)', config_text, re.MULTILINE)
    return match.group(1) if match else None


def envs_root() -> Path:
    return cache_dir("build-envs")


def cached_build_env(key: str) -> BuildEnv | None:
    """The finished environment `key` if the cache has it (no lock, no build)."""
    return read_build_env(envs_root() / key)


def read_build_env(directory: Path) -> BuildEnv | None:
    if not (directory / ENV_MANIFEST_NAME).is_file():
        return None
    try:
        return BuildEnv(directory, EnvManifest.read(directory))
    except EnvManifestError:
        return None


def root_problem(what: str) -> str | None:
    """Why `what` cannot run here, or None: chroots, mounts and mmdebstrap's root mode need root."""
    if os.geteuid() == 0:
        return None
    return (
        f"{what} needs root (mmdebstrap, mount and chroot): run as root, or build against a "
        "kernel build directory on the host with harness.kmod.build_module_host()"
    )


@dataclass(frozen=True)
class EnvRequest:
    """What to bootstrap for one image: everything the cache key covers, and the key."""

    image_name: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    release: str

    @property
    def key(self) -> str:
        return build_env_key(self.suite, self.variant, self.packages, self.release)

    @property
    def headers_dir(self) -> str:
        return f"{HEADERS_PARENT}/{headers_package(self.release)}"


def env_request(image: BuiltImage, recipe: Recipe) -> EnvRequest:
    return EnvRequest(
        image_name=image.manifest.name,
        suite=image.manifest.suite,
        variant=recipe.build_env.variant,
        packages=env_packages(recipe.build_env.packages, image.kernel_release),
        release=image.kernel_release,
    )


def build_env_for(
    image: BuiltImage,
    *,
    recipe: Recipe | None = None,
    mirror: str | None = None,
    rebuild: bool = False,
    progress: Progress = stderr_progress,
) -> BuildEnv:
    """The build chroot for `image`'s kernel, bootstrapped if the cache does not have it.

    `recipe` supplies [build_env]; by default the recipe named like the image in vm_images/.
    """
    request = env_request(image, recipe or resolve_recipe(image.manifest.name))
    key = request.key
    if not rebuild:
        found = cached_build_env(key)
        if found is not None:
            return found
    problem = root_problem(f"building the module build environment for {request.image_name}")
    if problem:
        raise BuildEnvError(problem)

    def build(scratch: Path) -> BuildEnv:
        manifest = _bootstrap(request, debian_mirror(mirror), scratch, progress)
        (envs_root() / f"{key}.failed.log").unlink(missing_ok=True)
        return BuildEnv(envs_root() / key, manifest)

    env = cached_build(
        envs_root() / key, build, read_build_env, rebuild=rebuild, remove=remove_tree
    )
    if env.how == "another":
        progress(f"build-env {key}: built by another worker")
    return env.value


def _bootstrap(
    request: EnvRequest, mirror: DebianMirror, scratch: Path, progress: Progress
) -> EnvManifest:
    started = time.monotonic()
    tree = scratch / ROOT_NAME
    log = scratch / LOG_NAME
    label = f"build-env {request.suite} {request.release}"
    progress(f"{label}: mmdebstrap {' '.join(request.packages)} ...")
    try:
        run_logged(
            mmdebstrap_env_argv(request.suite, request.variant, request.packages, mirror, tree),
            log,
            MMDEBSTRAP_TIMEOUT_SECONDS,
            f"mmdebstrap of the {request.suite} module build environment",
            f"Check that [build_env] packages of recipe {request.image_name} exist in "
            f"{request.suite} and that {mirror.uri} is reachable (or set HARNESS_DEBIAN_MIRROR).",
        )
        progress(f"{label}: mmdebstrap ... {time.monotonic() - started:.1f} s")
        compiler, gcc_version = _probe_compiler(tree, request.headers_dir, request.image_name)
    except (RootfsError, BuildEnvError, OSError) as err:
        kept = scratch.parent / f"{request.key}.failed.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(log, kept)
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        if missing_from_archive(text, headers_package(request.release)):
            gone = headers_gone_message(
                request.image_name, request.release, request.suite, mirror.uri
            )
            raise BuildEnvError(f"{gone}\nFull log: {kept}") from None
        raise BuildEnvError(f"building {request.key} failed: {err}\nFull log: {kept}") from err
    size, _inodes = tree_usage(tree)
    manifest = EnvManifest(
        key=request.key,
        suite=request.suite,
        variant=request.variant,
        packages=request.packages,
        kernel_release=request.release,
        headers_dir=request.headers_dir,
        compiler=compiler,
        gcc_version=gcc_version,
        builder_version=BUILD_ENV_VERSION,
        size_bytes=size,
        build_seconds=round(time.monotonic() - started, 1),
    )
    manifest.write(scratch)
    progress(
        f"{label}: built {request.key} in {manifest.build_seconds:.1f} s, "
        f"{size / (1 << 20):.0f} MiB, {compiler} {gcc_version}"
    )
    return manifest


def _probe_compiler(tree: Path, headers_dir: str, image_name: str) -> tuple[str, str]:
    """(compiler command, its version): the one the kernel's config names, run in the chroot."""
    host_headers = tree / headers_dir.lstrip("/")
    config = host_headers / ".config"
    if not config.is_file():
        raise BuildEnvError(f"{host_headers} has no .config: the headers package is incomplete")
    compiler = kernel_compiler(config.read_text(encoding="utf-8", errors="replace"))
    if compiler is None:
        raise BuildEnvError(f"{config} has no CONFIG_CC_VERSION_TEXT: cannot tell the compiler")
    result = subprocess.run(
        ["chroot", str(tree), compiler, "-dumpfullversion"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )
    if result.returncode != 0:
        raise BuildEnvError(
            f"the kernel was built with {compiler}, which does not run in the chroot "
            f"({result.stderr.strip() or f'exit {result.returncode}'}): add its package to "
            f"[build_env] packages of recipe {image_name}"
        )
    return compiler, result.stdout.strip()
