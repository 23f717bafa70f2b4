# SPDX-License-Identifier: MIT
"""The saved-state cache: what its key covers, and finding and discarding states."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from harness.firmware import Firmware
from harness.firmware.ovmf import OVMF_DIR
from harness.images.build import BuiltImage
from harness.images.manifest import ImageManifest
from harness.kmod.signing import identity_in
from harness.vm.accel import KVM_ARGS, Accelerator, tcg
from harness.vm.machine import GuestMachine, guest_spec
from harness.vm.qemu_cmdline import build_qemu_command
from harness.vm.saved_state import (
    META_FILE,
    SavedState,
    _discard_superseded,
    discard,
    find_saved_state,
    state_key,
    state_path,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


def image(directory: str = "/cache/images/bookworm-aaaa", name: str = "bookworm") -> BuiltImage:
    manifest = ImageManifest(
        name=name,
        suite=name,
        key="aaaa",
        builder_version=1,
        kernel_package="linux-image-amd64",
        kernel_release="6.1.0-99-amd64",
        host_key="ssh-ed25519 AAAA",
        initrd_modules=(),
        sizes={},
        rootfs_capacity=0,
        build_seconds=0.0,
    )
    return BuiltImage(Path(directory), manifest)


def machine(**changes: object) -> GuestMachine:
    return replace(GuestMachine(image(), tcg("TCG: test")), **changes)  # type: ignore[arg-type]


def test_key_is_stable() -> None:
    assert state_key(machine()) == state_key(machine())


@pytest.mark.parametrize(
    "changes",
    [
        {"memory_mib": 2048},
        {"smp": 1},
        {"accelerator": Accelerator("kvm", KVM_ARGS, 1.0, "KVM: test")},
        {"image": image("/cache/images/bookworm-bbbb")},  # a rebuilt image
    ],
)
def test_key_changes_with_what_the_loading_qemu_must_match(changes: dict[str, object]) -> None:
    assert state_key(machine(**changes)) != state_key(machine())


def test_key_ignores_why_the_accelerator_was_chosen() -> None:
    assert state_key(machine(accelerator=tcg("another reason"))) == state_key(machine())


def test_restore_and_boot_share_one_command_line_shape() -> None:
    """Only per-VM paths, the port and -incoming may differ between saver and loader."""
    saver = build_qemu_command(
        guest_spec(machine(), Path("/runs/a"), Path("/runs/a/root.qcow2"), 40000, "k")
    )
    loader = build_qemu_command(
        guest_spec(machine(), Path("/runs/b"), Path("/runs/b/root.qcow2"), 40001, "k", "exec:x")
    )
    at = loader.index("-incoming")
    assert loader[at + 1] == "exec:x"
    del loader[at : at + 2]
    assert len(saver) == len(loader)
    differing = [(a, b) for a, b in zip(saver, loader, strict=False) if a != b]
    assert all("/runs/" in a or "40000" in a for a, _ in differing), differing


def test_find_and_discard() -> None:
    m = machine()
    assert find_saved_state(m) is None
    path = state_path(m)
    path.mkdir(parents=True)
    (path / "state").write_bytes(b"x")
    assert find_saved_state(m) is None, "a state without its metadata is not complete"
    (path / META_FILE).write_text("{}")
    found = find_saved_state(m)
    assert found == SavedState(path)
    discard(found)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def _fake_state(name: str, **meta: object) -> SavedState:
    path = state_path(machine()).parent / name
    path.mkdir(parents=True)
    base = {"label": "bookworm", "accelerator": "tcg", "memory_mib": 1024, "smp": 2}
    (path / META_FILE).write_text(json.dumps({**base, **meta}))
    return SavedState(path)


def test_a_new_state_supersedes_older_ones_of_the_same_machine_only() -> None:
    old = _fake_state("bookworm-old")
    bigger = _fake_state("bookworm-big", memory_mib=4096)
    other = _fake_state("trixie-old", label="trixie")
    new = _fake_state("bookworm-new")
    _discard_superseded(new)
    assert not old.path.exists()
    assert bigger.path.exists() and other.path.exists() and new.path.exists()


@pytest.mark.skipif(
    not (OVMF_DIR / "OVMF_VARS_4M.fd").is_file(),
    reason="Debian's ovmf: vfio-harness setup --profile firmware",
)
@pytest.mark.parametrize("firmware", [Firmware.UEFI, Firmware.SECUREBOOT])
def test_a_uefi_guests_key_covers_its_image_and_its_moklist(
    firmware: Firmware, tmp_path: Path
) -> None:
    """No -kernel or -append names the image in a UEFI guest's command line: the key must
    still change with it, and with the certificates MokList holds."""
    base = machine(firmware=firmware)
    assert state_key(base) != state_key(machine())
    rebuilt = machine(firmware=firmware, image=image("/cache/images/bookworm-bbbb"))
    assert state_key(rebuilt) != state_key(base)
    if firmware.secure_boot:
        cert = identity_in(tmp_path / "identity").certificate
        assert state_key(machine(firmware=firmware, mok=(cert,))) != state_key(base)


@dataclass(frozen=True)
class OwnKernel:
    """A kernel booted instead of the image's (--kernel debug, or a path)."""

    label: str = "debug"
    kernel: Path = Path("/cache/kernels/debug/bzImage")
    initrd: Path | None = None
    extra_disks: tuple[Path, ...] = ()
    release: str = "6.12.0-debug"
    kernel_params: Mapping[str, str] = field(default_factory=dict)
    config: Path | None = None


def test_a_custom_kernels_key_covers_the_image_it_boots_on() -> None:
    """Its command line names the kernel, not the image: a rebuilt image must not get the
    state saved on the old one's disk (qemu-img: Could not open backing file)."""
    base = machine(kernel=OwnKernel())
    rebuilt = machine(kernel=OwnKernel(), image=image("/cache/images/bookworm-bbbb"))
    assert state_key(rebuilt) != state_key(base)
