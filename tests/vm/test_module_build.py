# SPDX-License-Identifier: MIT
"""A hello-world module built for each guest kernel in its build chroot, then loaded in a guest.

Cold: the chroot takes ~20-35 s per suite; warm: a cache hit, and each build ~1 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.images.build import BuiltImage, build_image
from harness.kmod import builder
from harness.kmod.build_env import BuildEnv, build_env_for
from harness.kmod.builder import ModuleBuildError, build_module
from harness.kmod.modinfo import module_info
from harness.kmod.module_cache import build_vendor_module
from harness.plugin.policy import vm_unavailable
from harness.vm.saved_state import start_vm

pytestmark = pytest.mark.vm

HELLO = Path(__file__).parent / "data" / "hello_kmod"
KERNELS = ["bookworm", "trixie", "sid"]


def image_and_env(name: str) -> tuple[BuiltImage, BuildEnv]:
    for tool in ("mmdebstrap", "mke2fs", "unshare", "chroot"):
        if shutil.which(tool) is None:
            vm_unavailable(f"{tool} not found: run `vfio-harness setup --profile vm`")
    if os.geteuid() != 0:
        vm_unavailable("building modules in a Debian chroot needs root")
    image = build_image(name)
    return image, build_env_for(image)


def config_gcc_major(config: str) -> int:
    match = re.search(r"^CONFIG_GCC_VERSION=(\d+)$", config, re.MULTILINE)
    assert match, "the kernel's config has no CONFIG_GCC_VERSION: not built with gcc?"
    return int(match.group(1)) // 10000


def mounts_under_build_envs() -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line for line in mounts if "build-envs" in line]


@pytest.mark.parametrize("name", KERNELS)
def test_hello_builds_without_warnings_for_the_image_kernel(name: str, tmp_path: Path) -> None:
    image, env = image_and_env(name)
    start = time.monotonic()
    assert build_env_for(image) == env
    assert time.monotonic() - start < 1.0, "a cached build environment must be a quick lookup"

    built = build_module(HELLO, env, dest=tmp_path, extra_warnings=True)

    assert built.warnings == ()
    assert built.modpost_warnings == ()
    assert [m.name for m in built.modules] == ["hello.ko"]
    info = module_info(built.modules[0])
    assert info.kernel_release == image.kernel_release
    assert info.first("name") == "hello"
    assert info.fields["parmtype"] == ("answer:int",)
    gcc_major = config_gcc_major(image.kernel_config.read_text())
    assert {int(v.split(".")[0]) for v in info.gcc_versions} == {gcc_major}
    assert int(env.gcc_version.split(".")[0]) == gcc_major
    print(
        f"{name}: {image.kernel_release}, {env.compiler} {env.gcc_version}, "
        f"chroot {env.manifest.size_bytes / (1 << 20):.0f} MiB "
        f"(built in {env.manifest.build_seconds:.1f} s), module build {built.seconds:.2f} s"
    )


def broken_copy(tmp_path: Path, kbuild_extra: str = "", c_bug: bool = False) -> Path:
    """hello_kmod under a unique name, so its staged copy in the chroot can be looked for."""
    source = tmp_path / f"broken_{uuid.uuid4().hex[:8]}"
    shutil.copytree(HELLO, source)
    if kbuild_extra:
        with (source / "Kbuild").open("a", encoding="utf-8") as kbuild:
            kbuild.write(kbuild_extra)
    if c_bug:
        text = (source / "hello.c").read_text(encoding="utf-8")
        (source / "hello.c").write_text(text.replace("return 0;", "return undefined_thing;"))
    return source


def assert_nothing_left(env: BuildEnv, source: Path) -> None:
    assert mounts_under_build_envs() == [], "the chroot's proc mount leaked to the host"
    staged = list((env.root / builder.CHROOT_BUILD_PARENT).glob(f"{source.name}-*"))
    assert staged == [], f"staged sources left in the chroot: {staged}"


def test_a_failed_build_reports_the_compiler_errors_and_leaves_nothing(tmp_path: Path) -> None:
    _image, env = image_and_env("bookworm")
    source = broken_copy(tmp_path, c_bug=True)
    with pytest.raises(ModuleBuildError) as caught:
        build_module(source, env, dest=tmp_path / "out")
    message = str(caught.value)
    assert "hello.c:" in message
    assert "error: 'undefined_thing' undeclared" in message
    assert "Traceback" not in message
    assert_nothing_left(env, source)


def test_a_build_killed_on_timeout_leaves_no_process_or_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _image, env = image_and_env("bookworm")
    marker = "313.25"  # a sleep nobody else runs, to look for afterwards
    source = broken_copy(tmp_path, kbuild_extra=f"$(shell sleep {marker})\n")
    monkeypatch.setattr(builder, "MAKE_TIMEOUT_SECONDS", 5)
    with pytest.raises(ModuleBuildError, match="timed out after 5 s"):
        build_module(source, env, dest=tmp_path / "out")
    time.sleep(0.5)  # the kernel reaps the PID namespace asynchronously
    left = subprocess.run(
        ["pgrep", "-af", f"sleep {marker}"], capture_output=True, text=True, check=False
    ).stdout
    assert left == "", f"processes outlived the build: {left}"
    assert_nothing_left(env, source)


@pytest.mark.parametrize("name", KERNELS)
def test_hello_loads_in_the_booted_guest(name: str, tmp_path: Path) -> None:
    image, env = image_and_env(name)
    if shutil.which("qemu-system-x86_64") is None:
        vm_unavailable("qemu-system-x86_64 not found: run `vfio-harness setup --profile vm`")
    built = build_module(HELLO, env, dest=tmp_path)
    with start_vm(image) as vm:  # restored from the saved state when there is one
        vm.ssh.put(built.modules[0], "/tmp/hello.ko")
        answer = vm.run("insmod /tmp/hello.ko answer=7 && cat /sys/module/hello/parameters/answer")
        assert answer.strip() == "7"
        vm.run("rmmod hello")
        log = vm.run("dmesg | grep 'hello: '")
    assert "hello: loaded, answer=7" in log
    assert "hello: unloaded" in log


def test_only_the_test_build_of_our_module_says_it_has_faults() -> None:
    image, _ = image_and_env("bookworm")
    normal = build_vendor_module(image)
    faulty = build_vendor_module(image, faults=True)
    assert normal.parent != faulty.parent, "the two builds must be cached apart"
    assert "-faults-" in faulty.parent.name
    assert module_info(faulty).first("faults"), "a test build must say so in its modinfo"
    assert module_info(normal).first("faults") is None
    knobs = {p.split(":", 1)[0] for p in module_info(normal).fields.get("parmtype", ())}
    assert "pool_mib" in knobs and "fault" not in knobs, "a normal build has no fault knob"
