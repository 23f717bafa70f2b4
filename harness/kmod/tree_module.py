# SPDX-License-Identifier: MIT
"""Our module (kmod/) for a kernel built from source: made on the host against its build tree.

    ko = build_tree_module(build.build_dir)     # a kernel_build directory, or any built tree
    ko = tree_module_for(choice, bundle, progress)  # for a --kernel choice (harness.kernel)

A Debian image's kernel has a build chroot with the compiler that built it (module_cache);
a kernel built from source was built by this host's compiler, so kmod/ is built here with
build_module_host (W=1, warning-free, like the chroot builds) and cached through the same
module cache. What identifies the kernel in the key (its ModuleTarget.env_key):

  release           include/config/kernel.release
  .config           every option, the compiler's version text included
  Module.symvers    the symbols (and CRCs, with MODVERSIONS) the module links against
  .version          kbuild's link counter: bumped each time vmlinux is relinked, i.e. after
                    any change to the built-in code, whose headers the module may share

so a rebuilt kernel gets a rebuilt module, and the same build (wherever it lives) reuses one.
A header change that relinks nothing (it only touches modules) is not seen: edit kmod/ or
remove the entry to force a build.

kbuild builds external modules with plain `gcc`; a module built by another compiler than the
kernel's may not load, or fail in ways that look like our bugs, so a host compiler whose
version line differs from the tree's CONFIG_CC_VERSION_TEXT is refused with both named.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from harness.core.progress import Progress, stderr_progress
from harness.kernel.choice import KernelChoice
from harness.kernel.config import parse_config
from harness.kernel.custom import KernelBundle
from harness.kmod.builder import ModuleBuild, build_module_host
from harness.kmod.module_cache import ModuleTarget, VendorModuleError, cached_vendor_module

# What a tree needs for an external module build, and what to do when it is missing.
TREE_FILES = {
    ".config": "configure and build the kernel",
    "include/config/kernel.release": "build the kernel (or at least make modules_prepare)",
    "Module.symvers": "build the kernel's modules (make modules), so modpost knows its symbols",
}
LINK_COUNTER = ".version"
HOST_CC = "gcc"  # what kbuild runs for M= builds unless told otherwise


def tree_problem(build_dir: Path) -> str | None:
    """Why `build_dir` cannot build an external module, or None when it can."""
    for name, fix in TREE_FILES.items():
        if not (build_dir / name).is_file():
            return f"{build_dir} has no {name}: {fix}"
    return None


def tree_identity(build_dir: Path) -> str:
    """The env_key of a kernel build tree: a hash of the files that shape a module built
    against it (see the module docstring), not of where the tree is."""
    digest = hashlib.sha256()
    for name in ("include/config/kernel.release", ".config", "Module.symvers", LINK_COUNTER):
        path = build_dir / name
        content = path.read_bytes() if path.is_file() else b""
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return f"tree-{digest.hexdigest()[:20]}"


def kernel_compiler(config_text: str) -> str | None:
    """CONFIG_CC_VERSION_TEXT (the first line of `$(CC) --version` kbuild saw), unquoted."""
    value = parse_config(config_text).get("CC_VERSION_TEXT")
    if value is None:
        return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def host_compiler(cc: str = HOST_CC) -> str:
    """The first line of `cc --version`, as kbuild computes CC_VERSION_TEXT."""
    try:
        result = subprocess.run(
            [cc, "--version"],
            capture_output=True,
            text=True,
            env=dict(os.environ, LC_ALL="C"),
            check=False,
        )
    except FileNotFoundError:
        raise VendorModuleError(
            f"no {cc} on this host: building our module against a kernel tree needs it "
            "(vfio-harness setup --profile kernel)"
        ) from None
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines:
        raise VendorModuleError(f"`{cc} --version` failed (exit {result.returncode})")
    return lines[0].replace("#", "").strip()  # kbuild drops '#' too


def check_compiler(build_dir: Path, host: str) -> None:
    """Refuse a host compiler other than the one that built the kernel."""
    config = (build_dir / ".config").read_text(encoding="utf-8", errors="replace")
    built_with = kernel_compiler(config)
    if built_with is not None and built_with != host:
        raise VendorModuleError(
            f"the kernel in {build_dir} was built with {built_with!r} (CONFIG_CC_VERSION_TEXT) "
            f"but this host's {HOST_CC} is {host!r}: our module must be built by the kernel's "
            "compiler; build it with that compiler and pass --vendor-module PATH.ko"
        )


def tree_target(build_dir: Path) -> ModuleTarget:
    """The ModuleTarget of a kernel build tree; VendorModuleError if it cannot build modules
    or this host's compiler is not the kernel's."""
    build_dir = build_dir.resolve()
    problem = tree_problem(build_dir)
    if problem is not None:
        raise VendorModuleError(f"cannot build our module against {build_dir}: {problem}")
    host = host_compiler()
    check_compiler(build_dir, host)
    release = (build_dir / "include/config/kernel.release").read_text(encoding="utf-8").strip()

    instrument = coverage_make_env((build_dir / ".config").read_text(encoding="utf-8"))

    def build(src: Path, dest: Path, make_args: tuple[str, ...], log: Progress) -> ModuleBuild:
        return build_module_host(
            src,
            build_dir,
            dest=dest,
            extra_warnings=True,
            extra_make_args=make_args,
            make_env=instrument,
            progress=log,
        )

    # Instrumented builds get keys of their own (an entry made before they were is not one).
    identity = tree_identity(build_dir) + "".join(f"-{k.lower()}" for k in sorted(instrument))
    return ModuleTarget(release, identity, host, build)


def coverage_make_env(config_text: str) -> dict[str, str]:
    """A kernel with gcov or KCOV on gets its external modules compiled for them (kbuild
    instruments an M= build only when told to): `run --coverage` and the fuzzer read them."""
    config = parse_config(config_text)
    env = {}
    if config.get("GCOV_KERNEL") == "y":
        env["GCOV_PROFILE"] = "y"
    if config.get("KCOV") == "y":
        env["KCOV_INSTRUMENT"] = "y"
    return env


def build_tree_module(
    build_dir: Path,
    progress: Progress = stderr_progress,
    *,
    source: Path | None = None,
    faults: bool = False,
) -> Path:
    """The .ko of kmod/ (or `source`) for the kernel built in `build_dir`: cached, else built
    on the host with W=1 (`faults`: the HMDEV_FAULTS=1 build). VendorModuleError says why not."""
    return cached_vendor_module(tree_target(build_dir), progress, source=source, faults=faults)


__all__ = [
    "build_tree_module",
    "check_compiler",
    "host_compiler",
    "kernel_compiler",
    "tree_identity",
    "tree_problem",
    "tree_target",
]


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
