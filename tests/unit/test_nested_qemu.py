# SPDX-License-Identifier: MIT
"""harness.nested.qemu: L1 QEMU's command lines, and the QMP client's message parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.nested.l2 import kernel_command_line
from harness.nested.qemu import L1Spec, l1_accelerator, qemu_command
from harness.qemu.qmp import QmpError, parse_message

MDEV = "/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]


def test_the_qtest_machine_never_runs_guest_code() -> None:
    argv = qemu_command(L1Spec(MDEV, Path("/w"), "qtest"))
    assert argv[0] == "qemu-system-x86_64"
    assert "-S" in argv  # Debian's QEMU has no qtest accelerator: TCG, stopped
    assert option_values(argv, "-accel") == ["tcg"]
    assert option_values(argv, "-qtest") == ["unix:/w/qtest.sock"]
    assert option_values(argv, "-qtest-log") == ["/w/qtest.log"]
    assert "-kernel" not in argv and "-serial" not in argv
    devices = option_values(argv, "-device")
    assert devices == [
        f"vfio-pci,sysfsdev={MDEV},id=hmdev",
        "ivshmem-plain,memdev=unmapme-mem,id=unmapme",
    ]
    assert option_values(argv, "-object") == ["memory-backend-ram,id=unmapme-mem,size=1048576"]
    assert option_values(argv, "-trace") == ["enable=vfio_*"]
    assert option_values(argv, "-D") == ["/w/trace.log"]
    assert option_values(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert option_values(argv, "-chardev") == ["socket,id=qmp,path=/w/qmp.sock"]


def test_the_boot_machine_boots_l2_on_a_serial_socket() -> None:
    spec = L1Spec(
        MDEV, Path("/w"), "boot", memory_mib=256, kernel=Path("/k"), initrd=Path("/i"),
        append=kernel_command_line(),
    )  # fmt: skip
    argv = qemu_command(spec)
    assert "-S" not in argv and "-qtest" not in argv
    assert option_values(argv, "-m") == ["256M"]
    assert option_values(argv, "-kernel") == ["/k"]
    assert option_values(argv, "-initrd") == ["/i"]
    assert option_values(argv, "-append") == ["console=ttyS0 mem=192M panic=-1 quiet"]
    assert option_values(argv, "-serial") == ["chardev:serial"]
    assert "socket,id=serial,path=/w/serial.sock" in option_values(argv, "-chardev")
    with pytest.raises(ValueError, match="needs an L2 kernel"):
        qemu_command(L1Spec(MDEV, Path("/w"), "boot"))


def test_qmp_messages_parse() -> None:
    assert parse_message('{"return": {}}') == {"return": {}}
    with pytest.raises(QmpError, match="not JSON"):
        parse_message("{oops")
    with pytest.raises(QmpError, match="non-object"):
        parse_message("[1]")


def test_l1_runs_l2_under_kvm_only_with_nested_virtualization(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    cpuinfo.write_text("flags\t\t: fpu vme de pse tsc msr pae vmx ept\n")
    assert l1_accelerator(str(kvm), str(cpuinfo)) == "kvm"
    cpuinfo.write_text("flags\t\t: fpu vme de pse tsc msr pae\n")  # TCG's L1: no vmx/svm
    assert l1_accelerator(str(kvm), str(cpuinfo)) == "tcg"
    assert l1_accelerator(str(tmp_path / "no-kvm"), str(cpuinfo)) == "tcg"
    argv = qemu_command(L1Spec(MDEV, Path("/w"), "qtest", accelerator="kvm"))
    assert argv[argv.index("-accel") + 1 : argv.index("-accel") + 4] == ["kvm", "-cpu", "host"]
    assert "tcg" in qemu_command(L1Spec(MDEV, Path("/w"), "qtest"))
