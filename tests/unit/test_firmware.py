# SPDX-License-Identifier: MIT
"""UEFI firmware pieces without a VM: which OVMF each mode boots, GRUB's configuration, the
ESP written with mtools, and variable stores prepared with virt-firmware (read back with it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.firmware import Firmware, FirmwareError
from harness.firmware.esp import EspFiles, build_esp, grub_config, with_grub_config
from harness.firmware.image_esp import prune_orphans
from harness.firmware.ovmf import OVMF_DIR, find_ovmf
from harness.firmware.varstore import MOK_OWNER, write_varstore
from harness.kmod.signing import identity_in


def test_modes() -> None:
    assert not Firmware.DIRECT.uses_ovmf
    assert Firmware.UEFI.uses_ovmf and not Firmware.UEFI.secure_boot
    assert Firmware.SECUREBOOT.uses_ovmf and Firmware.SECUREBOOT.secure_boot


def fake_ovmf(directory: Path) -> Path:
    for name in ("OVMF_CODE_4M.fd", "OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.fd"):
        (directory / name).write_bytes(b"x")
    return directory


def test_secure_boot_boots_the_smm_build(tmp_path: Path) -> None:
    plain = find_ovmf(Firmware.UEFI, fake_ovmf(tmp_path))
    assert plain.code.name == "OVMF_CODE_4M.fd" and not plain.smm
    secure = find_ovmf(Firmware.SECUREBOOT, tmp_path)
    assert secure.code.name == "OVMF_CODE_4M.secboot.fd" and secure.smm
    assert secure.vars_template.name == "OVMF_VARS_4M.fd"


def test_missing_ovmf_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(FirmwareError, match="setup --profile firmware"):
        find_ovmf(Firmware.SECUREBOOT, tmp_path)
    with pytest.raises(ValueError, match="without firmware"):
        find_ovmf(Firmware.DIRECT, tmp_path)


def test_grub_boots_the_esp_kernel_with_the_vms_command_line() -> None:
    config = grub_config("console=ttyS0 panic=-1 harness.authkey=c3NoLWVk")
    assert "linux /vmlinuz console=ttyS0 panic=-1 harness.authkey=c3NoLWVk\n" in config
    assert "initrd /initrd.img\n" in config
    assert "set timeout=0\n" in config
    for bad in ("a\nb", "a;reboot", "$x", "a'b", "{", "a|b", "a&b", "a<b", "a`b`", "a\\b"):
        with pytest.raises(FirmwareError, match="not safe in grub"):
            grub_config(bad)


MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}
needs_mtools = pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and shutil.which("mcopy")),
    reason="dosfstools and mtools: vfio-harness setup --profile firmware",
)


def mtype(esp: Path, path: str) -> bytes:
    result = subprocess.run(
        ["mtype", "-i", str(esp), path],
        capture_output=True,
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1"},
    )
    return result.stdout


@needs_mtools
def test_an_esp_holds_the_loaders_kernel_initrd_and_each_vms_grub_cfg(tmp_path: Path) -> None:
    names = ("shim", "grub", "mm", "vmlinuz", "initrd")
    for name in names:
        (tmp_path / name).write_bytes(name.encode() * 1000)
    files = EspFiles(*(tmp_path / name for name in names))
    esp = tmp_path / "esp.img"
    build_esp(files, esp)
    assert mtype(esp, "::/EFI/BOOT/BOOTX64.EFI") == b"shim" * 1000
    assert mtype(esp, "::/EFI/BOOT/grubx64.efi") == b"grub" * 1000
    assert mtype(esp, "::/vmlinuz") == b"vmlinuz" * 1000
    vm_esp = with_grub_config(esp, "console=ttyS0 harness.authkey=QUJD", tmp_path / "vm.img")
    assert b"harness.authkey=QUJD" in mtype(vm_esp, "::/EFI/BOOT/grub.cfg")
    argv = ["mdir", "-i", str(esp), "::/EFI/BOOT"]
    base = subprocess.run(argv, capture_output=True, text=True, env=MTOOLS_ENV, check=True)
    assert "grub     cfg" not in base.stdout, "the image's own ESP stays without grub.cfg"


needs_ovmf = pytest.mark.skipif(
    not (OVMF_DIR / "OVMF_VARS_4M.fd").is_file(),
    reason="Debian's ovmf: vfio-harness setup --profile firmware",
)


def read_back(path: Path) -> dict[str, object]:
    from virt.firmware.varstore import autodetect  # type: ignore[import-untyped]

    varlist = autodetect.open_varstore(str(path)).get_varlist()
    return dict(varlist.items())


@needs_ovmf
def test_a_secure_boot_store_has_keys_moklist_and_secure_boot_on(tmp_path: Path) -> None:
    identity = identity_in(tmp_path)
    out = tmp_path / "vars.fd"
    write_varstore(OVMF_DIR / "OVMF_VARS_4M.fd", out, secure_boot=True, mok=[identity.certificate])
    variables = read_back(out)
    for name in ("PK", "KEK", "db", "dbx", "MokList", "SecureBootEnable"):
        assert name in variables, f"no {name} in the prepared store"
    assert variables["SecureBootEnable"].data == b"\x01"  # type: ignore[attr-defined]
    mok = variables["MokList"].sigdb  # type: ignore[attr-defined]
    entries = [entry for siglist in mok for entry in siglist]
    assert [str(entry["guid"]) for entry in entries] == [MOK_OWNER]
    assert entries[0]["data"] == identity.certificate.read_bytes(), "MokList holds our cert"
    assert out.stat().st_size == (OVMF_DIR / "OVMF_VARS_4M.fd").stat().st_size


@needs_ovmf
def test_a_plain_uefi_store_has_no_keys(tmp_path: Path) -> None:
    out = tmp_path / "vars.fd"
    write_varstore(OVMF_DIR / "OVMF_VARS_4M.fd", out, secure_boot=False, mok=[])
    variables = read_back(out)
    assert "PK" not in variables and "SecureBootEnable" not in variables
    with pytest.raises(ValueError, match="only matter with Secure Boot"):
        write_varstore(OVMF_DIR / "OVMF_VARS_4M.fd", out, secure_boot=False, mok=[out])


@pytest.mark.parametrize(
    ("state", "locked"),
    [
        ("none [integrity] confidentiality", True),
        ("none integrity [confidentiality]", True),
        ("[none] integrity confidentiality", False),
        ("cat: /sys/kernel/security/lockdown: No such file or directory", False),
        ("", False),
    ],
)
def test_lockdown_is_read_from_the_selected_mode(state: str, locked: bool) -> None:
    from harness.plugin.guest_vm import is_locked_down

    assert is_locked_down(state) is locked


def test_vm_run_takes_a_shell_string_or_words() -> None:
    from harness.commands.vm import guest_command

    assert guest_command(["uname -r; ls /"]) == "uname -r; ls /"
    assert guest_command(["mokutil", "--sb-state"]) == "mokutil --sb-state"
    assert guest_command(["echo", "a b", "$HOME"]) == "echo 'a b' '$HOME'"


def test_the_esps_of_images_no_longer_cached_go(tmp_path: Path) -> None:
    esps, images = tmp_path / "esp", tmp_path / "images"
    for name in ("bookworm-old", "bookworm-new", "sid-new"):
        (esps / name).mkdir(parents=True)
    for name in ("bookworm-new", "sid-new"):
        (images / name).mkdir(parents=True)
    gone = prune_orphans(esps, images, current=esps / "sid-new")
    assert [path.name for path in gone] == ["bookworm-old"]
    assert sorted(path.name for path in esps.iterdir()) == ["bookworm-new", "sid-new"]
