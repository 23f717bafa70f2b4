# SPDX-License-Identifier: MIT
"""The module layer: out-of-tree kernel modules (kmod/) built for each guest image's kernel.

    env = build_env_for(build_image("trixie"))     # cached chroot: gcc-14 + exact headers
    built = build_module(Path("kmod"), env, extra_warnings=True)
    built.modules, built.warnings                    # .ko paths, "file:line: warning: ..." lines

    ko = build_vendor_module(build_image("trixie"))  # kmod/, W=1, warning-free, cached by source
    run_checkpatch(paths, strict=True)               # the kernel's checkpatch.pl (from Debian)

`build_module_host(source, kernel_build_dir)` builds against a user's own prepared kernel tree
with the host's toolchain instead.
"""

from harness.kmod.build_env import BuildEnv, BuildEnvError, build_env_for, cached_build_env
from harness.kmod.builder import ModuleBuild, ModuleBuildError, build_module, build_module_host
from harness.kmod.checkpatch import Checkpatch, CheckpatchError, fetch_checkpatch, run_checkpatch
from harness.kmod.checkpatch_report import CheckpatchMessage, CheckpatchReport
from harness.kmod.modinfo import ModinfoError, ModuleInfo, module_info
from harness.kmod.module_cache import VendorModuleError, build_vendor_module

__all__ = [
    "BuildEnv",
    "BuildEnvError",
    "Checkpatch",
    "CheckpatchError",
    "CheckpatchMessage",
    "CheckpatchReport",
    "ModinfoError",
    "ModuleBuild",
    "ModuleBuildError",
    "ModuleInfo",
    "VendorModuleError",
    "build_env_for",
    "build_module",
    "build_module_host",
    "build_vendor_module",
    "cached_build_env",
    "fetch_checkpatch",
    "module_info",
    "run_checkpatch",
]
