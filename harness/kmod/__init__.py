# SPDX-License-Identifier: MIT
"""The module layer: out-of-tree kernel modules (kmod/) built for each guest image's kernel.

    env = build_env_for(build_image("trixie"))     # cached chroot: gcc-14 + exact headers
    built = build_module(Path("kmod"), env, extra_warnings=True)
    built.modules, built.warnings                    # .ko paths, "file:line: warning: ..." lines

`build_module_host(source, kernel_build_dir)` builds against a user's own prepared kernel tree
with the host's toolchain instead.
"""

from harness.kmod.build_env import BuildEnv, BuildEnvError, build_env_for, cached_build_env
from harness.kmod.builder import ModuleBuild, ModuleBuildError, build_module, build_module_host
from harness.kmod.modinfo import ModinfoError, ModuleInfo, module_info

__all__ = [
    "BuildEnv",
    "BuildEnvError",
    "ModinfoError",
    "ModuleBuild",
    "ModuleBuildError",
    "ModuleInfo",
    "build_env_for",
    "build_module",
    "build_module_host",
    "cached_build_env",
    "module_info",
]
