# SPDX-License-Identifier: MIT
"""Bring your own kernel without a VM: layouts, checks, cache key, initrd, modules disk, QEMU.

Kernels here are tiny fakes with the real markers (boot protocol header, ELF notes, banner,
IKCONFIG); the real boot of a real kernel is tests/vm/test_custom_kernel.py.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.images.build import BuiltImage
from harness.images.initrd import (
    MODULES_LIST,
    REQUIRED_MODULES,
    InitrdError,
    build_initrd,
    init_script,
    resolve_modules,
)
from harness.images.manifest import ImageManifest
from harness.kernel import custom as custom_kernel
from harness.kernel.config import ModuleIndex, builtin_drivers, kernel_problems, parse_config
from harness.kernel.custom import (
    MODULES_PARAM,
    CustomKernelError,
    KernelBundle,
    build_salt,
    bundle_for_image,
    prepare_custom_kernel,
)
from harness.kernel.image_format import (
    embedded_config,
    has_pvh_entry,
    image_kind,
    kernel_release,
)
from harness.kernel.layout import detect_kernel, fingerprint
from harness.kernel.modules_disk import MODULES_LABEL
from harness.vm.qemu_cmdline import build_qemu_command
from tests.unit.test_vm_qemu_cmdline import option, spec

RELEASE = "6.18.0-rc3-dev+"
SALT = b"test-salt"
needs_depmod = pytest.mark.skipif(
    shutil.which("depmod", path="/usr/sbin:/sbin:/usr/bin:/bin") is None,
    reason="needs depmod (kmod; vfio-harness setup --profile vm)",
)
needs_debugfs = pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs e2fsprogs")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


# --- fake kernels -------------------------------------------------------------------------


def _note(owner: bytes, kind: int, desc: bytes) -> bytes:
    def pad(data: bytes) -> bytes:
        return data + bytes(-len(data) % 4)

    return struct.pack("<III", len(owner), len(desc), kind) + pad(owner) + pad(desc)


def fake_vmlinux(release: str = RELEASE, *, pvh: bool = True, config: str | None = None) -> bytes:
    """An x86_64 ELF with one PT_NOTE segment, the banner, and optionally an IKCONFIG blob."""
    notes = _note(b"GNU\0", 3, b"build-id")
    if pvh:
        notes += _note(b"Xen\0", 18, struct.pack("<Q", 0x1000000))
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 4, 4, 64 + 56, 0, 0, len(notes), len(notes), 4)
    body = notes + b"%s Linux version %s\0" + f"Linux version {release} (dev@box) #1 SMP\0".encode()
    if config is not None:
        # mtime=0: the same config gives the same bytes, whichever second it is made in.
        body += b"IKCFG_ST" + gzip.compress(config.encode(), mtime=0) + b"IKCFG_ED"
    return header + phdr + body + bytes(4096)


def fake_bzimage(vmlinux: bytes, release: str = RELEASE) -> bytes:
    """Boot protocol header (setup_sects, HdrS, kernel_version, payload) and an XZ payload."""
    setup_sects = 2
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    version = f"{release} (dev@box) #1 SMP PREEMPT_DYNAMIC\0".encode()
    setup[0x300 : 0x300 + len(version)] = version
    struct.pack_into("<H", setup, 0x20E, 0x300 - 0x200)
    payload = lzma.compress(vmlinux, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    struct.pack_into("<II", setup, 0x248, 0, len(payload) + 4)
    return bytes(setup) + payload + struct.pack("<I", len(vmlinux))


GOOD_CONFIG: Mapping[str, str] = {
    "MODULES": "y",
    "BLK_DEV_INITRD": "y",
    "DEVTMPFS": "y",
    "VIRTIO_PCI": "y",
    "VIRTIO_BLK": "m",
    "EXT4_FS": "m",
    "VIRTIO_NET": "m",
    "VFIO": "m",
    "VFIO_IOMMU_TYPE1": "m",
    "VFIO_MDEV": "m",
}
# CONFIG_MODULES off, every driver =y.
ALL_BUILT_IN = {k: "y" for k in GOOD_CONFIG} | {"MODULES": "n"}


def config_text(settings: Mapping[str, str]) -> str:
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", "#"]
    for symbol, value in settings.items():
        lines.append(
            f"CONFIG_{symbol}={value}" if value != "n" else f"# CONFIG_{symbol} is not set"
        )
    return "\n".join(lines) + "\n"


MODULE_FILES = {
    "virtio_blk": "kernel/drivers/block/virtio_blk.ko.xz",
    "ext4": "kernel/fs/ext4/ext4.ko.xz",
    "jbd2": "kernel/fs/jbd2/jbd2.ko.xz",
    "virtio_net": "kernel/drivers/net/virtio_net.ko.xz",
    "vfio": "kernel/drivers/vfio/vfio.ko.xz",
    "vfio_iommu_type1": "kernel/drivers/vfio/vfio_iommu_type1.ko.xz",
    "mdev": "kernel/drivers/vfio/mdev/mdev.ko.xz",
}


def install_modules(root: Path, release: str = RELEASE, skip: tuple[str, ...] = ()) -> Path:
    """lib/modules/<release> as make modules_install leaves it (no depmod output)."""
    modules_dir = root / "lib/modules" / release
    for name, relative in MODULE_FILES.items():
        if name in skip:
            continue
        path = modules_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lzma.compress(f"\x7fELF module {name}".encode()))
    (modules_dir / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    order = "".join(f"{r.removesuffix('.xz')}\n" for n, r in MODULE_FILES.items() if n not in skip)
    (modules_dir / "modules.order").write_text(order)
    return modules_dir


def build_output(root: Path, *, config: Mapping[str, str] | None = GOOD_CONFIG) -> Path:
    """A developer's build directory: bzImage, .config, lib/modules/<release>, build link."""
    root.mkdir(parents=True)
    (root / "bzImage").write_bytes(fake_bzimage(fake_vmlinux()))
    if config is not None:
        (root / ".config").write_text(config_text(config))
    modules_dir = install_modules(root)
    headers = root / "headers"
    headers.mkdir()
    (modules_dir / "build").symlink_to(headers)
    (modules_dir / "source").symlink_to("/nonexistent/linux")
    return root


def source_tree(root: Path, *, config: Mapping[str, str] = GOOD_CONFIG) -> Path:
    """A built tree whose Makefile's modules_install copies like kbuild's, honouring
    INSTALL_MOD_PATH and recording INSTALL_MOD_STRIP."""
    root.mkdir(parents=True)
    (root / "Kconfig").write_text("mainmenu fake\n")
    (root / ".config").write_text(config_text(config))
    (root / "include/config").mkdir(parents=True)
    (root / "include/config/kernel.release").write_text(RELEASE + "\n")
    (root / "arch/x86/boot").mkdir(parents=True)
    (root / "arch/x86/boot/bzImage").write_bytes(fake_bzimage(fake_vmlinux()))
    (root / "vmlinux").write_bytes(fake_vmlinux())
    order = []
    for name, relative in MODULE_FILES.items():
        source = Path(relative.removeprefix("kernel/").removesuffix(".ko.xz"))
        (root / source.parent).mkdir(parents=True, exist_ok=True)
        (root / source.parent / f"{source.name}.ko").write_bytes(f"\x7fELF {name}".encode())
        order.append(f"{source}.o")
    (root / "modules.order").write_text("\n".join(order) + "\n")
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    (root / "Makefile").write_text(
        "MODLIB := $(INSTALL_MOD_PATH)/lib/modules/" + RELEASE + "\n"
        "modules_install:\n"
        "\tfor m in $$(sed 's/\\.o$$/.ko/' modules.order); do "
        "mkdir -p $(MODLIB)/kernel/$$(dirname $$m) && cp $$m $(MODLIB)/kernel/$$m; done\n"
        "\tcp modules.order modules.builtin $(MODLIB)/\n"
        "\techo $(INSTALL_MOD_STRIP) > $(MODLIB)/strip-flag\n"
    )
    return root


FAKE_BUSYBOX = b"\x7fELF static busybox"


@pytest.fixture
def busybox(tmp_path: Path) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(FAKE_BUSYBOX)
    return path


def quiet(_line: str) -> None:
    pass


# --- kernel image facts -------------------------------------------------------------------


def test_image_facts_from_bzimage_and_vmlinux(tmp_path: Path) -> None:
    config = config_text(ALL_BUILT_IN)
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(fake_vmlinux(config=config))
    bzimage = tmp_path / "bzImage"
    bzimage.write_bytes(fake_bzimage(fake_vmlinux()))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a kernel" * 100)
    assert (image_kind(vmlinux), image_kind(bzimage), image_kind(junk)) == ("elf", "bzimage", None)
    # The banner, not the "%s" format string that precedes it.
    assert kernel_release(vmlinux) == kernel_release(bzimage) == RELEASE
    assert kernel_release(junk) is None
    assert has_pvh_entry(vmlinux)
    vmlinux.write_bytes(fake_vmlinux(pvh=False))
    assert not has_pvh_entry(vmlinux)
    vmlinux.write_bytes(fake_vmlinux(config=config))
    assert embedded_config(vmlinux) == config
    assert embedded_config(bzimage) is None  # compressed: only the vmlinux inside has it


# --- layout detection ---------------------------------------------------------------------


def test_build_output_directory(tmp_path: Path) -> None:
    root = build_output(tmp_path / "out")
    source = detect_kernel(root)
    assert source.layout == "build-output"
    assert source.image == root / "bzImage"
    assert source.release == RELEASE
    assert source.modules_dir == root / "lib/modules" / RELEASE
    assert source.build_dir == root / "headers"  # the lib/modules/<release>/build link
    assert source.config == root / ".config"
    assert source.label == "custom-6.18.0-rc3-dev+"


def test_build_output_variants(tmp_path: Path) -> None:
    # vmlinux only, modules under usr/lib/modules (a kmod with /usr/lib/modules), build/ dir.
    root = tmp_path / "out"
    root.mkdir()
    (root / "vmlinux").write_bytes(fake_vmlinux())
    install_modules(root / "usr")
    (root / "build").mkdir()
    (root / "boot").mkdir()
    (root / f"boot/config-{RELEASE}").write_text(config_text(GOOD_CONFIG))
    source = detect_kernel(root)
    assert source.image == root / "vmlinux"
    assert source.modules_dir == root / "usr/lib/modules" / RELEASE
    assert source.build_dir == root / "build"
    assert source.config == root / f"boot/config-{RELEASE}"
    # No modules at all: a kernel with everything built in.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "vmlinuz").write_bytes(fake_bzimage(fake_vmlinux()))
    assert detect_kernel(bare).modules_dir is None
    assert detect_kernel(bare).build_dir is None


def test_source_tree(tmp_path: Path) -> None:
    tree = source_tree(tmp_path / "linux")
    source = detect_kernel(tree)
    assert source.layout == "source-tree"
    assert source.image == tree / "arch/x86/boot/bzImage"
    assert (source.release, source.build_dir, source.config) == (RELEASE, tree, tree / ".config")
    assert source.modules_enabled
    no_modules = source_tree(tmp_path / "mono", config={**ALL_BUILT_IN})
    (no_modules / "modules.order").unlink()
    assert not detect_kernel(no_modules).modules_enabled


def test_single_image_file(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(fake_bzimage(fake_vmlinux()))
    source = detect_kernel(image)
    assert (source.layout, source.image, source.release) == ("image", image, RELEASE)
    assert (source.modules_dir, source.config, source.build_dir) == (None, None, None)


def test_layout_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CustomKernelError, match="does not exist"):
        detect_kernel(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CustomKernelError, match=r"no bzImage or vmlinux in .*empty"):
        detect_kernel(empty)
    both = build_output(tmp_path / "both")
    (both / "vmlinuz").write_bytes((both / "bzImage").read_bytes())
    with pytest.raises(CustomKernelError, match=r"several kernels .*bzImage, vmlinuz"):
        detect_kernel(both)
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(4096))
    with pytest.raises(CustomKernelError, match="neither an x86 bzImage nor an ELF vmlinux"):
        detect_kernel(junk)


def test_modules_of_another_release_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "bzImage").write_bytes(fake_bzimage(fake_vmlinux()))
    install_modules(root, release="6.17.0-old")
    with pytest.raises(
        CustomKernelError,
        match=rf"kernel release {re.escape(RELEASE)} but modules are for 6\.17\.0-old .*install",
    ):
        detect_kernel(root)


def test_source_tree_errors(tmp_path: Path) -> None:
    tree = source_tree(tmp_path / "linux")
    (tree / "include/config/kernel.release").write_text("6.18.0-other\n")
    with pytest.raises(CustomKernelError, match=r"is release .* but include/config/kernel.release"):
        detect_kernel(tree)
    (tree / "include/config/kernel.release").unlink()
    with pytest.raises(CustomKernelError, match=r"no include/config/kernel.release: configure"):
        detect_kernel(tree)
    unbuilt = source_tree(tmp_path / "unbuilt")
    (unbuilt / "modules.order").unlink()
    with pytest.raises(CustomKernelError, match=r"CONFIG_MODULES=y but no modules.order"):
        detect_kernel(unbuilt)
    (unbuilt / "arch/x86/boot/bzImage").unlink()
    (unbuilt / "vmlinux").unlink()
    with pytest.raises(CustomKernelError, match="no arch/x86/boot/bzImage or vmlinux"):
        detect_kernel(unbuilt)


# --- configuration checks -----------------------------------------------------------------


def test_config_parsing() -> None:
    parsed = parse_config(config_text({**GOOD_CONFIG, "VFIO_MDEV": "n"}) + 'CONFIG_X="a b"\n')
    assert parsed["VIRTIO_BLK"] == "m"
    assert parsed["X"] == '"a b"'
    assert "VFIO_MDEV" not in parsed


def test_kernel_problems_from_config(tmp_path: Path) -> None:
    index = ModuleIndex.of_tree(install_modules(tmp_path))
    assert kernel_problems(GOOD_CONFIG, index) == []
    missing = {k: v for k, v in GOOD_CONFIG.items() if k != "VIRTIO_BLK"}
    assert kernel_problems(missing, index) == [
        "CONFIG_VIRTIO_BLK is neither built in nor a module (the root disk is virtio-blk)"
    ]
    no_mdev = kernel_problems({**GOOD_CONFIG, "VFIO_MDEV": "n"}, index)
    assert "CONFIG_SAMPLE_VFIO_MDEV_MTTY=m" in no_mdev[0]
    (problem,) = kernel_problems(GOOD_CONFIG, replace(index, modules=index.modules - {"ext4"}))
    assert problem.startswith(f"CONFIG_EXT4_FS=m but {tmp_path}/lib/modules/{RELEASE} has no ext4")
    without_modules = kernel_problems(GOOD_CONFIG, None)
    assert len(without_modules) == 6  # every =m driver
    assert "the kernel comes without modules" in without_modules[0]
    assert kernel_problems({**ALL_BUILT_IN, "DEVTMPFS": "n"}, None) == [
        "CONFIG_DEVTMPFS is not built in (the initrd finds its disks in devtmpfs): set it to y"
    ]


def test_kernel_problems_from_modules_alone(tmp_path: Path) -> None:
    index = ModuleIndex.of_tree(install_modules(tmp_path, skip=("vfio",)))
    assert index.builtin == {"virtio_pci"}
    assert kernel_problems(None, index) == [
        "CONFIG_VFIO is neither built in nor a module (the harness tests VFIO)"
    ]
    assert kernel_problems(None, None) == []  # nothing to check against
    assert builtin_drivers(None, index) == {"virtio_pci"}
    assert builtin_drivers(GOOD_CONFIG, index) == {"virtio_pci"}
    assert builtin_drivers(None, None) >= set(REQUIRED_MODULES)


def test_source_tree_module_index(tmp_path: Path) -> None:
    index = ModuleIndex.of_source_tree(source_tree(tmp_path / "linux"))
    assert index.modules == set(MODULE_FILES)
    assert index.builtin == {"virtio_pci"}


# --- cache key ----------------------------------------------------------------------------


def test_fingerprint_follows_sizes_and_times_not_paths(tmp_path: Path) -> None:
    root = build_output(tmp_path / "out")
    key = fingerprint(detect_kernel(root), SALT)
    assert key.startswith(f"{RELEASE}-")
    assert fingerprint(detect_kernel(root), SALT) == key
    assert fingerprint(detect_kernel(root), b"other builder") != key
    # A copy that keeps the times is the same kernel; the build link is not an input.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    (copy / "lib/modules" / RELEASE / "build").unlink()
    assert fingerprint(detect_kernel(copy), SALT) == key

    module = root / "lib/modules" / RELEASE / MODULE_FILES["vfio"]
    info = module.stat()
    os.utime(module, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    touched = fingerprint(detect_kernel(root), SALT)
    assert touched != key
    extra = root / "lib/modules" / RELEASE / "extra/new.ko"
    extra.parent.mkdir()
    extra.write_bytes(b"x")
    assert fingerprint(detect_kernel(root), SALT) not in (key, touched)


def test_fingerprint_of_a_source_tree_ignores_unrelated_files(tmp_path: Path) -> None:
    tree = source_tree(tmp_path / "linux")
    key = fingerprint(detect_kernel(tree), SALT)
    (tree / "README").write_text("edited\n")
    assert fingerprint(detect_kernel(tree), SALT) == key
    (tree / "drivers/vfio/vfio.ko").write_bytes(b"\x7fELF rebuilt vfio")
    assert fingerprint(detect_kernel(tree), SALT) != key


def test_salt_covers_the_initrd_init() -> None:
    assert b"kernel-builder-" in build_salt()
    assert build_salt() == build_salt()


# --- initrd -------------------------------------------------------------------------------


def test_initrd_without_modules_needs_them_built_in(tmp_path: Path, busybox: Path) -> None:
    assert resolve_modules(None, builtin=REQUIRED_MODULES) == []
    with pytest.raises(InitrdError, match="virtio_pci is neither in the kernel's modules"):
        resolve_modules(None)
    initrd = tmp_path / "initrd.img"
    assert build_initrd(busybox, None, initrd, builtin=REQUIRED_MODULES) == []
    members = dict(_newc_members(initrd.read_bytes()))
    assert members[MODULES_LIST] == b""
    assert members["bin/busybox"] == FAKE_BUSYBOX


def test_initrd_skips_drivers_known_built_in(tmp_path: Path) -> None:
    modules_dir = install_modules(tmp_path, skip=("virtio_blk",))
    (modules_dir / "modules.dep").write_text(
        "".join(f"{r}:\n" for n, r in MODULE_FILES.items() if n not in ("virtio_blk", "ext4"))
        + f"{MODULE_FILES['ext4']}: {MODULE_FILES['jbd2']}\n"
    )
    # virtio_pci is in modules.builtin; virtio_blk only the caller knows about (its .config).
    order = resolve_modules(modules_dir, builtin={"virtio-blk"})
    assert order == [MODULE_FILES["jbd2"], MODULE_FILES["ext4"]]
    with pytest.raises(InitrdError, match="virtio_blk is neither"):
        resolve_modules(modules_dir)


def test_init_script_mounts_the_modules_disk() -> None:
    script = init_script().decode()
    assert "harness.modules=*)" in script
    assert 'mount -t ext4 -o ro "$1" "$target"' in script
    assert "/newroot/usr/lib/modules" in script  # merged-/usr
    # Without harness.modules the path is as before: root, then switch_root.
    assert script.index('[ -n "$modules" ] && mount_modules') < script.index("switch_root")


def _newc_members(data: bytes) -> list[tuple[str, bytes]]:
    members: list[tuple[str, bytes]] = []
    position = 0
    while True:
        fields = [int(data[position + 6 + 8 * i : position + 14 + 8 * i], 16) for i in range(13)]
        size, name_size = fields[6], fields[11]
        name = data[position + 110 : position + 110 + name_size - 1].decode()
        start = position + 110 + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return members
        members.append((name, data[start : start + size]))
        position = start + size + (-size % 4)


# --- QEMU command line --------------------------------------------------------------------


def test_extra_disks_follow_the_root_disk_read_only() -> None:
    disks = (Path("/cache/kernels/k/modules.img"), Path("/cache/other,disk.img"))
    args = build_qemu_command(spec(extra_disks=disks))
    drives = option(args, "-drive")
    assert drives[1:] == [
        "file=/cache/kernels/k/modules.img,format=raw,if=none,id=extra0,readonly=on",
        "file=/cache/other,,disk.img,format=raw,if=none,id=extra1,readonly=on",
    ]
    devices = option(args, "-device")
    # Probe order is device order: root is vda, then vdb, vdc; the NIC comes after them.
    assert devices[:4] == [
        "virtio-blk-pci,drive=root",
        "virtio-blk-pci,drive=extra0",
        "virtio-blk-pci,drive=extra1",
        "virtio-net-pci,netdev=net0",
    ]
    assert build_qemu_command(spec(extra_disks=disks)) == args
    assert not [d for d in option(build_qemu_command(spec()), "-drive") if "extra" in d]
    with pytest.raises(ValueError, match=r"extra_disks\[0\] must be an absolute path"):
        build_qemu_command(spec(extra_disks=(Path("modules.img"),)))


# --- prepare_custom_kernel ----------------------------------------------------------------


def test_image_with_everything_built_in(tmp_path: Path, busybox: Path, private_cache: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(fake_bzimage(fake_vmlinux(config=config_text(ALL_BUILT_IN))))
    lines: list[str] = []
    bundle = prepare_custom_kernel(kernel, lines.append, busybox=busybox)
    assert bundle.kernel.name == "vmlinux"
    assert bundle.kernel.read_bytes() == fake_vmlinux(config=config_text(ALL_BUILT_IN))
    assert bundle.kernel.parent.parent == private_cache / "kernels"
    assert (bundle.extra_disks, bundle.kernel_params, bundle.build_dir) == ((), {}, None)
    assert bundle.config is not None
    assert parse_config(bundle.config.read_text()) == parse_config(config_text(ALL_BUILT_IN))
    assert bundle.initrd is not None
    assert dict(_newc_members(bundle.initrd.read_bytes()))[MODULES_LIST] == b""
    assert any("prepared" in line for line in lines)
    hash(bundle)  # usable as a key, e.g. in a fixture cache


def test_warm_prepare_is_a_cache_hit(
    tmp_path: Path, busybox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(fake_vmlinux(config=config_text(ALL_BUILT_IN)))
    bundle = prepare_custom_kernel(kernel, quiet, busybox=busybox)
    built = bundle.kernel.stat().st_mtime_ns

    def no_build(*_args: object) -> None:
        raise AssertionError("a cached kernel was built again")

    with monkeypatch.context() as patched:  # not undo(): that would drop the private cache
        patched.setattr(custom_kernel, "_build", no_build)
        assert prepare_custom_kernel(kernel, quiet, busybox=busybox) == bundle
    assert bundle.kernel.stat().st_mtime_ns == built
    os.utime(kernel)  # "rebuilt": a new key, a new entry
    assert prepare_custom_kernel(kernel, quiet, busybox=busybox).kernel != bundle.kernel


def test_parallel_workers_prepare_once(
    tmp_path: Path, busybox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(fake_vmlinux(config=config_text(ALL_BUILT_IN)))
    real_build = custom_kernel._build
    builds: list[str] = []

    def slow_build(*args: Any) -> custom_kernel.BundleRecord:
        builds.append("build")
        time.sleep(0.3)  # the other worker reaches the lock meanwhile
        return real_build(*args)

    monkeypatch.setattr(custom_kernel, "_build", slow_build)
    lines: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        bundles = list(
            pool.map(lambda _: prepare_custom_kernel(kernel, lines.append, busybox=busybox), [1, 2])
        )
    assert builds == ["build"]
    assert bundles[0] == bundles[1]
    assert any("prepared by another worker" in line for line in lines)


def test_bzimage_without_pvh_is_booted_as_is(tmp_path: Path, busybox: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(fake_bzimage(fake_vmlinux(pvh=False, config=config_text(ALL_BUILT_IN))))
    lines: list[str] = []
    bundle = prepare_custom_kernel(kernel, lines.append, busybox=busybox)
    assert bundle.kernel.name == "bzImage"
    assert bundle.kernel.read_bytes() == kernel.read_bytes()
    assert any("no PVH entry" in line for line in lines)
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(fake_vmlinux(pvh=False))
    with pytest.raises(CustomKernelError, match=r"no PVH entry note .*pass the bzImage"):
        prepare_custom_kernel(vmlinux, quiet, busybox=busybox)


def test_a_kernel_missing_drivers_is_refused_before_building(
    tmp_path: Path, busybox: Path, private_cache: Path
) -> None:
    settings = {**ALL_BUILT_IN, "VIRTIO_BLK": "n", "BLK_DEV_INITRD": "n"}
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(fake_bzimage(fake_vmlinux(config=config_text(settings))))
    with pytest.raises(CustomKernelError) as caught:
        prepare_custom_kernel(kernel, quiet, busybox=busybox)
    message = str(caught.value)
    assert "cannot run the harness guest" in message
    assert "CONFIG_BLK_DEV_INITRD is not built in" in message
    assert "CONFIG_VIRTIO_BLK is neither built in nor a module" in message
    assert not [p for p in (private_cache / "kernels").iterdir() if not p.name.endswith(".lock")]


def test_modules_needed_but_absent(tmp_path: Path, busybox: Path) -> None:
    root = build_output(tmp_path / "out")
    shutil.rmtree(root / "lib")
    with pytest.raises(CustomKernelError, match="CONFIG_VIRTIO_BLK=m but the kernel comes"):
        prepare_custom_kernel(root, quiet, busybox=busybox)


@needs_depmod
@needs_debugfs
def test_build_output_with_modules(tmp_path: Path, busybox: Path) -> None:
    root = build_output(tmp_path / "out")
    modules_dir = root / "lib/modules" / RELEASE
    before = {p: p.read_bytes() for p in modules_dir.rglob("*") if p.is_file()}
    bundle = prepare_custom_kernel(root, quiet, busybox=busybox)
    assert bundle.release == RELEASE
    assert bundle.build_dir == root / "headers"
    assert bundle.kernel_params == {MODULES_PARAM: "/dev/vdb"}
    (disk,) = bundle.extra_disks
    # The disk's root is lib/modules/<release>: indexed by depmod, without the host links.
    listing = _debugfs(disk, "ls -p /")
    assert {"modules.dep", "modules.order", "kernel"} <= listing
    assert not {"build", "source"} & listing
    assert "kernel/drivers/vfio/vfio.ko.xz:" in _debugfs_cat(disk, "/modules.dep")
    assert (
        MODULES_LABEL
        in subprocess.run(
            ["dumpe2fs", "-h", str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )
    # The initrd loads the =m disk drivers; virtio_pci is built in (modules.builtin).
    assert bundle.initrd is not None
    members = dict(_newc_members(bundle.initrd.read_bytes()))
    assert members[MODULES_LIST].decode().split() == ["virtio_blk.ko", "ext4.ko"]
    assert members["lib/modules/ext4.ko"] == b"\x7fELF module ext4"
    # The developer's tree is untouched (depmod ran on hard links or copies in the stage).
    assert {p: p.read_bytes() for p in modules_dir.rglob("*") if p.is_file()} == before
    assert not (modules_dir / "modules.dep").exists()


@needs_depmod
@needs_debugfs
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_source_tree_installs_stripped_modules(tmp_path: Path, busybox: Path) -> None:
    tree = source_tree(tmp_path / "linux")
    bundle = prepare_custom_kernel(tree, quiet, busybox=busybox)
    assert bundle.build_dir == tree
    assert bundle.config is not None and bundle.config.read_text() == config_text(GOOD_CONFIG)
    (disk,) = bundle.extra_disks
    assert _debugfs_cat(disk, "/strip-flag").strip() == "1"
    assert "kernel/drivers/vfio/mdev/mdev.ko:" in _debugfs_cat(disk, "/modules.dep")


def _debugfs(disk: Path, request: str) -> set[str]:
    out = subprocess.run(
        ["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=True
    ).stdout
    # `ls -p` lines: /inode/mode/uid/gid/name/size/
    return {line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6}


def _debugfs_cat(disk: Path, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(disk)], capture_output=True, text=True, check=True
    ).stdout


# --- the image's own kernel ---------------------------------------------------------------


def test_bundle_for_image(tmp_path: Path) -> None:
    manifest = ImageManifest(
        name="bookworm",
        suite="bookworm",
        key="bookworm-0123",
        builder_version=1,
        kernel_package="linux-image-amd64",
        kernel_release="6.1.0-50-amd64",
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey",
        initrd_modules=("virtio", "ext4"),
        sizes={},
        rootfs_capacity=1 << 30,
        build_seconds=30.0,
    )
    image = BuiltImage(tmp_path, manifest)
    assert bundle_for_image(image) == KernelBundle(
        label="bookworm",
        kernel=tmp_path / "vmlinux",
        initrd=tmp_path / "initrd.img",
        extra_disks=(),
        release="6.1.0-50-amd64",
        build_dir=None,
        config=tmp_path / "config",
        kernel_params={},
    )


def test_only_the_newest_bundles_of_a_release_are_kept(tmp_path: Path) -> None:
    from harness.core.cached_build import prune
    from harness.kernel.custom import BUNDLE_FILE, BundleRecord, bundles_of

    def bundle(name: str, release: str, age: int) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        record = BundleRecord(name, release, "vmlinux", "initrd.img", None, None, (), {}, 0.0)
        record.write(directory)
        os.utime(directory / BUNDLE_FILE, (1000 - age, 1000 - age))
        return directory

    bundle("6.12.0-a", "6.12.0", 0)
    bundle("6.12.0-b", "6.12.0", 1)
    oldest = bundle("6.12.0-c", "6.12.0", 2)
    bundle("6.12.01-x", "6.12.01", 3)  # another release, despite the common prefix
    assert prune(bundles_of(tmp_path, "6.12.01"), 2) == []
    assert prune(bundles_of(tmp_path, "6.12.0"), 2) == [oldest]
    assert not oldest.exists()
    assert (tmp_path / "6.12.01-x").is_dir()


@pytest.mark.parametrize(
    ("config", "unsafe"),
    [
        ("CONFIG_KASAN=y\nCONFIG_CC_OPTIMIZE_FOR_SIZE=y\n", True),
        ("CONFIG_KASAN=y\nCONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y\n", False),
        ("CONFIG_CC_OPTIMIZE_FOR_SIZE=y\n", False),
        (None, False),
    ],
)
def test_pvh_entry_is_avoided_for_kasan_built_with_os(config: str | None, unsafe: bool) -> None:
    assert (custom_kernel.pvh_unsafe_reason(config) is not None) == unsafe


def test_a_kasan_kernel_reports_every_bug(tmp_path: Path) -> None:
    from harness.kernel.custom import _debug_params

    config = tmp_path / "config"
    config.write_text("CONFIG_KASAN=y\nCONFIG_PROVE_LOCKING=y\n")
    assert _debug_params(config) == {"kasan_multi_shot": "1"}
    config.write_text("# CONFIG_KASAN is not set\n")
    assert _debug_params(config) == {}
    assert _debug_params(None) == {}
