# SPDX-License-Identifier: MIT
"""Image building without a VM or network: vmlinux extraction, initrd, manifest, cache.

The real builds (mmdebstrap from the Debian mirror) are in tests/vm/test_image_build.py.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.core import cpio
from harness.core.progress import Progress, phase
from harness.debian import DebianMirror
from harness.images import build as images
from harness.images.build import BuiltImage, build_image, cached_image, image_key
from harness.images.initrd import (
    MODULES_LIST,
    InitrdError,
    build_initrd,
    initrd_entries,
    module_name,
    resolve_modules,
)
from harness.images.manifest import ImageManifest, ManifestError
from harness.images.recipe import Recipe, RecipeError, load_recipe
from harness.images.rootfs import (
    RootfsError,
    disk_geometry,
    installed_kernel,
    mmdebstrap_argv,
    mounts_under,
    remove_tree,
)
from harness.images.vmlinux import (
    KernelExtractError,
    elf_problem,
    extract_vmlinux,
    zstd_frame_length,
)

RECIPE_DIR = Path(__file__).resolve().parents[2] / "vm_images"
JUNK = bytes(range(256)) * 8


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


def fake_elf(machine: int = 62, size: int = 200_000) -> bytes:
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HH", 2, machine)
    body = bytes((i * 7) % 251 for i in range(size))
    return header + body


def compress(fmt: str, data: bytes) -> bytes:
    if fmt == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    if fmt == "gzip":
        return gzip.compress(data)
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed (vfio-harness setup --profile vm)")
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


# --- vmlinux extraction ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xz", "zstd", "gzip"])
def test_extracts_elf_embedded_after_junk(tmp_path: Path, fmt: str) -> None:
    payload = fake_elf()
    # A decoy magic in the junk before the real stream must not stop the search.
    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(JUNK + b"\xfd7zXZ\x00broken" + compress(fmt, payload) + b"\x01\x02\x03\x04")
    assert extract_vmlinux(vmlinuz, tmp_path / "vmlinux") == fmt
    assert (tmp_path / "vmlinux").read_bytes() == payload


def bzimage(compressed: bytes, setup_sects: int = 2) -> bytes:
    """A minimal x86 boot-protocol image: header fields, then the payload plus size trailer."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    offset = 0x40
    struct.pack_into("<II", setup, 0x248, offset, len(compressed) + 4)
    body = bytes(offset) + compressed + struct.pack("<I", 12345)
    return bytes(setup) + body + JUNK


@pytest.mark.parametrize("fmt", ["xz", "zstd", "gzip"])
def test_uses_the_bzimage_header(tmp_path: Path, fmt: str) -> None:
    payload = fake_elf()
    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(bzimage(compress(fmt, payload)))
    assert extract_vmlinux(vmlinuz, tmp_path / "vmlinux") == fmt
    assert (tmp_path / "vmlinux").read_bytes() == payload


def test_rejects_a_stream_that_is_not_an_x86_64_elf(tmp_path: Path) -> None:
    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(JUNK + compress("xz", b"not an elf" * 100) + JUNK)
    with pytest.raises(KernelExtractError, match="not ELF"):
        extract_vmlinux(vmlinuz, tmp_path / "vmlinux")
    vmlinuz.write_bytes(JUNK + compress("gzip", fake_elf(machine=183)))
    with pytest.raises(KernelExtractError, match="not x86_64"):
        extract_vmlinux(vmlinuz, tmp_path / "vmlinux")
    vmlinuz.write_bytes(JUNK)
    with pytest.raises(KernelExtractError, match="no XZ, zstd or gzip stream"):
        extract_vmlinux(vmlinuz, tmp_path / "vmlinux")
    assert not (tmp_path / "vmlinux").exists()


def test_zstd_frame_length_stops_at_the_frame_end() -> None:
    frame = compress("zstd", fake_elf(size=300_000))
    assert zstd_frame_length(frame + b"trailing") == len(frame)
    with pytest.raises(ValueError, match="truncated"):
        zstd_frame_length(frame[: len(frame) // 2])


def test_elf_problem() -> None:
    assert elf_problem(fake_elf()) is None
    assert elf_problem(b"\x7fELF" + bytes([1]) + bytes(30)) == "ELF is not 64-bit"


# --- initrd --------------------------------------------------------------------------------

MODULES_DEP = """\
kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz \
kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz:
kernel/drivers/virtio/virtio_ring.ko.xz:
kernel/drivers/virtio/virtio.ko.xz:
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz \
kernel/drivers/virtio/virtio.ko.xz
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz
kernel/lib/crc16.ko.xz:
kernel/fs/mbcache.ko.xz:
kernel/fs/jbd2/jbd2.ko.xz:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/virtio/virtio.ko.xz
"""


def fake_modules_dir(root: Path, dep: str = MODULES_DEP, builtin: str = "") -> Path:
    modules_dir = root / "usr/lib/modules/7.2.13-amd64"
    modules_dir.mkdir(parents=True)
    (modules_dir / "modules.dep").write_text(dep)
    (modules_dir / "modules.builtin").write_text(builtin)
    for line in dep.splitlines():
        relative = line.split(":")[0]
        path = modules_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lzma.compress(b"\x7fELF module " + module_name(relative).encode()))
    return modules_dir


def test_modules_resolve_dependencies_first(tmp_path: Path) -> None:
    order = [module_name(m) for m in resolve_modules(fake_modules_dir(tmp_path))]
    assert order == [
        "virtio",
        "virtio_ring",
        "virtio_pci_modern_dev",
        "virtio_pci",
        "virtio_blk",
        "jbd2",
        "mbcache",
        "crc16",
        "ext4",
    ]  # crc32c_generic is optional and absent here


def test_builtin_modules_are_fine_and_missing_ones_are_not(tmp_path: Path) -> None:
    dep = "\n".join(line for line in MODULES_DEP.splitlines() if "virtio_pci" not in line)
    builtin = "kernel/drivers/virtio/virtio_pci.ko\n"
    order = resolve_modules(fake_modules_dir(tmp_path / "a", dep, builtin))
    assert "virtio_pci" not in [module_name(m) for m in order]
    with pytest.raises(InitrdError, match="virtio_pci is neither"):
        resolve_modules(fake_modules_dir(tmp_path / "b", dep))
    with pytest.raises(InitrdError, match="run depmod"):
        resolve_modules(tmp_path / "nowhere")


def test_initrd_file_list(tmp_path: Path) -> None:
    modules_dir = fake_modules_dir(tmp_path)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    entries = initrd_entries(busybox, modules_dir, resolve_modules(modules_dir))
    by_path = {e.name: e for e in entries}
    assert set(by_path) == {
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "newroot",
        "proc",
        "sys",
        "dev/console",
        "bin/busybox",
        "bin/sh",
        "init",
        MODULES_LIST,
        *(
            f"lib/modules/{n}.ko"
            for n in (
                "virtio",
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci",
                "virtio_blk",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4",
            )
        ),
    }
    assert by_path["lib/modules/ext4.ko"].data == b"\x7fELF module ext4"  # decompressed
    assert by_path[MODULES_LIST].data.decode().splitlines()[-1] == "ext4.ko"
    assert by_path["init"].data.startswith(b"#!/bin/busybox sh\n")
    assert b"switch_root /newroot /sbin/harness-init" in by_path["init"].data
    assert by_path["init"].mode == 0o100755
    assert by_path["dev/console"].rdev == (5, 1)
    # Directories come before anything inside them.
    seen: set[str] = set()
    for entry in entries:
        parent = entry.name.rpartition("/")[0]
        assert not parent or parent in seen
        seen.add(entry.name)


def test_build_initrd(tmp_path: Path) -> None:
    modules_dir = fake_modules_dir(tmp_path)
    busybox = tmp_path / "busybox"
    with pytest.raises(InitrdError, match="busybox-static"):
        build_initrd(busybox, modules_dir, tmp_path / "initrd.img")
    busybox.write_bytes(b"\x7fELF busybox")
    loaded = build_initrd(busybox, modules_dir, tmp_path / "initrd.img")
    assert loaded[-1] == "ext4"
    names = [entry.name for entry in cpio.parse((tmp_path / "initrd.img").read_bytes())]
    assert "lib/modules/virtio_blk.ko" in names


# --- manifest ---------------------------------------------------------------------------


def sample_manifest(key: str = "guest-0123") -> ImageManifest:
    return ImageManifest(
        name="guest",
        suite="bookworm",
        key=key,
        builder_version=1,
        kernel_package="linux-image-amd64",
        kernel_release="6.1.0-50-amd64",
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey",
        initrd_modules=("virtio", "ext4"),
        sizes={"rootfs.img": 100, "vmlinux": 20, "initrd.img": 3, "config": 1},
        rootfs_capacity=1 << 30,
        build_seconds=31.2,
    )


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = sample_manifest()
    manifest.write(tmp_path)
    assert ImageManifest.read(tmp_path) == manifest
    assert manifest.image_bytes == 124
    assert '"image_bytes": 124' in (tmp_path / "manifest.json").read_text()


def test_bad_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        ImageManifest.read(tmp_path)
    with pytest.raises(ManifestError, match="not JSON"):
        ImageManifest.from_json("{")
    with pytest.raises(ManifestError, match="format-1"):
        ImageManifest.from_json('{"format": 99}')
    with pytest.raises(ManifestError, match="host_key"):
        ImageManifest.from_json('{"format": 1, "name": "x"}')


# --- rootfs helpers -----------------------------------------------------------------------

RECIPE = load_recipe(RECIPE_DIR / "bookworm.toml")


def test_mmdebstrap_argv_uses_the_given_mirror(tmp_path: Path) -> None:
    mirror = DebianMirror(uri="http://mirror.invalid/debian", keyring=Path("/k.gpg"))
    hook = tmp_path / "hook dir/customize.sh"
    argv = mmdebstrap_argv(RECIPE, mirror, tmp_path / "tree", hook, tmp_path / "files")
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert include.startswith("--include=linux-image-amd64,busybox-static,")
    assert argv[-3:] == [
        "bookworm",
        str(tmp_path / "tree"),
        "deb [signed-by=/k.gpg] http://mirror.invalid/debian bookworm main",
    ]
    assert "--dpkgopt=path-exclude=/etc/kernel/postinst.d/initramfs-tools" in argv
    assert "--dpkgopt=path-exclude=/lib/modules/*/kernel/sound/*" in argv
    hook_arg = next(a for a in argv if a.startswith("--customize-hook="))
    assert hook_arg.endswith(f"'{hook}' \"$1\" {tmp_path / 'files'} harness")
    assert any("Check-Valid-Until" in a for a in argv)


def test_installed_kernel_in_both_layouts(tmp_path: Path) -> None:
    old = tmp_path / "old"
    fake_modules_dir(old)
    (old / "boot").mkdir()
    (old / "boot/vmlinuz-7.2.13-amd64").write_bytes(b"k")
    (old / "boot/config-7.2.13-amd64").write_text("CONFIG_VFIO=m\n")
    kernel = installed_kernel(old)
    assert kernel.release == "7.2.13-amd64"
    assert kernel.vmlinuz == old / "boot/vmlinuz-7.2.13-amd64"

    split = tmp_path / "split"  # sid: everything under /usr/lib/modules/<release>/
    modules_dir = fake_modules_dir(split)
    (modules_dir / "vmlinuz").write_bytes(b"k")
    (modules_dir / "config").write_text("CONFIG_VFIO=m\n")
    kernel = installed_kernel(split)
    assert (kernel.vmlinuz, kernel.config) == (modules_dir / "vmlinuz", modules_dir / "config")

    with pytest.raises(RootfsError, match="expected one kernel"):
        installed_kernel(tmp_path / "empty")


def test_disk_geometry() -> None:
    size_mib, inodes = disk_geometry(400 << 20, 20_000, 512)
    assert size_mib % 64 == 0
    assert size_mib >= 400 * 1.06 + 512
    assert inodes == 65536
    assert disk_geometry(0, 100_000, 0)[1] == 200_000


def fake_mountinfo(tmp_path: Path, *points: Path) -> Path:
    mountinfo = tmp_path / "mountinfo"
    lines = [
        f"{n} 1 0:{n} / {str(p).replace(' ', chr(92) + '040')} rw - sysfs sysfs rw"
        for n, p in enumerate(points, 30)
    ]
    mountinfo.write_text("\n".join(["22 1 8:1 / / rw - ext4 /dev/vda rw", *lines]) + "\n")
    return mountinfo


def test_mounts_under_lists_deepest_first(tmp_path: Path) -> None:
    tree = tmp_path / "a tree"
    tree.mkdir()
    info = fake_mountinfo(tmp_path, tree / "sys", tree / "sys/fs/cgroup", tmp_path / "other")
    assert mounts_under(tree, info) == [tree / "sys/fs/cgroup", tree / "sys"]


def test_remove_tree_refuses_to_cross_a_mount(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sys").mkdir(parents=True)
    with pytest.raises(RootfsError, match="still mounted"):
        remove_tree(tree, fake_mountinfo(tmp_path, tree / "sys"))
    assert (tree / "sys").is_dir()
    remove_tree(tree, fake_mountinfo(tmp_path))
    assert not tree.exists()


# --- the cache ------------------------------------------------------------------------------


def fake_build(calls: list[str], delay: float = 0.0) -> images.BuildFunction:
    def build(
        recipe: Recipe,
        key: str,
        mirror: DebianMirror,
        scratch: Path,
        progress: Progress,
    ) -> ImageManifest:
        calls.append(key)
        time.sleep(delay)
        for name in ("rootfs.img", "vmlinux", "initrd.img", "config"):
            (scratch / name).write_bytes(b"x")
        manifest = sample_manifest(key)
        manifest.write(scratch)
        return manifest

    return build


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = DebianMirror(uri="http://mirror.invalid/debian", keyring=Path("/k.gpg"))
    monkeypatch.setattr(images, "debian_mirror", lambda _mirror=None: mirror)


@pytest.mark.usefixtures("offline")
def test_unchanged_recipe_is_built_once(
    monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(images, "_build", fake_build(calls))
    assert cached_image(RECIPE) is None
    first = build_image(RECIPE, progress=lambda _line: None)
    start = time.monotonic()
    second = build_image("bookworm", progress=lambda _line: None)
    assert time.monotonic() - start < 1.0
    assert calls == [image_key(RECIPE)]
    assert isinstance(second, BuiltImage)
    assert second == first
    assert second.directory == private_cache / "images" / image_key(RECIPE)
    assert second.rootfs.is_file() and second.vmlinux.is_file() and second.initrd.is_file()
    assert second.host_key.startswith("ssh-ed25519 ")
    assert oct(second.directory.stat().st_mode & 0o777) == oct(0o755)
    build_image(RECIPE, rebuild=True, progress=lambda _line: None)
    assert len(calls) == 2
    leftovers = [p.name for p in (private_cache / "images").iterdir() if ".tmp-" in p.name]
    assert leftovers == []


@pytest.mark.usefixtures("offline")
def test_parallel_workers_build_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(images, "_build", fake_build(calls, delay=0.3))
    lines: list[str] = []
    results: list[BuiltImage] = []
    threads = [
        threading.Thread(target=lambda: results.append(build_image(RECIPE, progress=lines.append)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({r.directory for r in results}) == 1


@pytest.mark.usefixtures("offline")
def test_failed_build_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    def broken(
        recipe: Recipe, key: str, mirror: DebianMirror, scratch: Path, progress: Progress
    ) -> ImageManifest:
        (scratch / "rootfs.img").write_bytes(b"half")
        raise images.ImageBuildError("mmdebstrap failed")

    monkeypatch.setattr(images, "_build", broken)
    with pytest.raises(images.ImageBuildError, match="mmdebstrap failed"):
        build_image(RECIPE, progress=lambda _line: None)
    assert cached_image(RECIPE) is None
    names = [p.name for p in (private_cache / "images").iterdir()]
    assert all(name.endswith(".lock") for name in names)


def test_guest_init_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    base = image_key(RECIPE)
    monkeypatch.setattr(images, "guest_init_digest", lambda: b"another init")
    assert image_key(RECIPE) != base


def test_phase_lines() -> None:
    lines: list[str] = []
    with phase(lines.append, RECIPE.name, "mmdebstrap"):
        pass
    assert lines[0] == "bookworm: mmdebstrap ..."
    assert lines[1].startswith("bookworm: mmdebstrap ... ")
    assert lines[1].endswith(" s")


def test_recipe_names_resolve_in_the_recipe_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert images.resolve_recipe("sid").suite == "sid"
    assert images.resolve_recipe(RECIPE) is RECIPE
    assert images.resolve_recipe(str(RECIPE_DIR / "trixie.toml")).name == "trixie"
    monkeypatch.setenv(images.RECIPE_DIR_ENV, str(tmp_path))
    (tmp_path / "bookworm.toml").write_text((RECIPE_DIR / "bookworm.toml").read_text())
    assert images.recipe_dir() == tmp_path
    with pytest.raises(RecipeError, match=r"absent\.toml"):
        images.resolve_recipe("absent")


def test_a_name_also_resolves_in_a_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "qemu-system-x86" in images.resolve_recipe("bookworm-nested").packages
    monkeypatch.setenv(images.RECIPE_DIR_ENV, str(tmp_path))
    text = (RECIPE_DIR / "bookworm.toml").read_text()
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "bookworm.toml").write_text(text)
    # Two candidates below and none on top: ambiguous, so the top-level name is reported.
    with pytest.raises(RecipeError, match=rf"{tmp_path}/bookworm\.toml"):
        images.resolve_recipe("bookworm")
    (tmp_path / "b" / "bookworm.toml").unlink()
    assert images.resolve_recipe("bookworm").name == "bookworm"


def test_only_the_newest_images_of_a_recipe_are_kept(tmp_path: Path) -> None:
    from harness.core.cached_build import prune
    from harness.images.build import superseded_candidates
    from harness.images.manifest import MANIFEST_NAME

    names = ["bookworm-0e1", "bookworm-0d2", "bookworm-0c3", "trixie-0b4", "bookworm-nested-0a5"]
    for age, name in enumerate(names):
        (tmp_path / name).mkdir()
        manifest = tmp_path / name / MANIFEST_NAME
        manifest.write_text("{}")
        os.utime(manifest, (1000 - age, 1000 - age))
    (tmp_path / "bookworm-0f6").mkdir()  # no manifest: a build in progress
    assert prune(superseded_candidates(tmp_path, "trixie"), 2) == []
    # The oldest bookworm image goes; bookworm-nested's, older still, is another recipe's.
    assert prune(superseded_candidates(tmp_path, "bookworm"), 2) == [tmp_path / "bookworm-0c3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bookworm-0d2",
        "bookworm-0e1",
        "bookworm-0f6",
        "bookworm-nested-0a5",
        "trixie-0b4",
    ]
