# SPDX-License-Identifier: MIT
"""Accelerator choice on fake host trees, and the probe runner's no-leftover guarantee."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from harness.vm import accel
from harness.vm.accel import (
    KVM_ARGS,
    PROBE_EXIT_STATUS,
    TCG_ARGS,
    HostPaths,
    ProbeResult,
    check_kvm_device,
    choose_accelerator,
    cpu_virt_vendor,
    nested_enabled,
    probe_command,
    probe_guest_image,
)

INTEL_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic vmx ssse3 sse4_2"
AMD_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic svm sse4a"
PLAIN_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic hypervisor"


class ProbeSpy:
    def __init__(self, result: ProbeResult) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> ProbeResult:
        self.calls += 1
        return self.result


def host(
    tmp_path: Path, flags: str = INTEL_FLAGS, *, dev_kvm: bool = True, nested: str | None = None
) -> HostPaths:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    )
    kvm = tmp_path / "kvm"
    if dev_kvm:
        kvm.write_text("")
    sysfs = tmp_path / "sys"
    if nested is not None:
        module = "kvm_intel" if "vmx" in flags.split() else "kvm_amd"
        parameters = sysfs / "module" / module / "parameters"
        parameters.mkdir(parents=True)
        (parameters / "nested").write_text(f"{nested}\n")
    return HostPaths(dev_kvm=kvm, proc_cpuinfo=cpuinfo, sysfs=sysfs)


def device_ok(_: Path) -> str | None:
    return None


GOOD_PROBE = ProbeResult(True, "0.21 s")


def test_no_virtualization_flag_means_tcg_without_probing(tmp_path: Path) -> None:
    probe = ProbeSpy(GOOD_PROBE)
    chosen = choose_accelerator(host(tmp_path, PLAIN_FLAGS), probe, device_ok)
    assert chosen.name == "tcg"
    assert chosen.qemu_args == TCG_ARGS == ("-accel", "tcg,thread=multi", "-cpu", "max")
    assert chosen.reason.startswith("TCG: no vmx/svm flag in ")
    assert chosen.timeout_scale > 1
    assert probe.calls == 0


def test_missing_dev_kvm_means_tcg(tmp_path: Path) -> None:
    probe = ProbeSpy(GOOD_PROBE)
    chosen = choose_accelerator(host(tmp_path, dev_kvm=False), probe, device_ok)
    assert chosen.name == "tcg"
    assert chosen.reason == f"TCG: {tmp_path / 'kvm'} does not exist"
    assert probe.calls == 0


def test_unusable_dev_kvm_means_tcg(tmp_path: Path) -> None:
    probe = ProbeSpy(GOOD_PROBE)
    chosen = choose_accelerator(host(tmp_path), probe, lambda _: "KVM_CREATE_VM failed: EPERM")
    assert chosen.name == "tcg"
    assert chosen.reason == "TCG: KVM_CREATE_VM failed: EPERM"
    assert probe.calls == 0


@pytest.mark.parametrize(
    "detail", ["no exit within 10 s (killed)", "exit status 1: KVM internal error. Suberror: 1"]
)
def test_failing_or_hanging_probe_means_tcg(tmp_path: Path, detail: str) -> None:
    probe = ProbeSpy(ProbeResult(False, detail))
    chosen = choose_accelerator(host(tmp_path, nested="Y"), probe, device_ok)
    assert chosen.name == "tcg"
    assert chosen.reason == f"TCG: KVM probe guest failed: {detail}"
    assert chosen.nested is None
    assert probe.calls == 1


@pytest.mark.parametrize(
    ("flags", "nested", "expected", "text"),
    [
        (INTEL_FLAGS, "Y", True, "nested on"),
        (INTEL_FLAGS, "N", False, "nested off"),
        (AMD_FLAGS, "1", True, "nested on"),
        (AMD_FLAGS, "0", False, "nested off"),
        (INTEL_FLAGS, None, None, "nested unknown"),
    ],
)
def test_working_kvm_is_chosen_with_host_cpu_and_nested_state(
    tmp_path: Path, flags: str, nested: str | None, expected: bool | None, text: str
) -> None:
    chosen = choose_accelerator(
        host(tmp_path, flags, nested=nested), ProbeSpy(GOOD_PROBE), device_ok
    )
    assert chosen.name == "kvm"
    assert chosen.qemu_args == KVM_ARGS == ("-accel", "kvm", "-cpu", "host")
    assert chosen.timeout_scale == 1.0
    assert chosen.nested is expected
    vendor = "vmx" if "vmx" in flags else "svm"
    assert chosen.reason == f"KVM: {vendor} usable, probe guest ran (0.21 s); {text}"


def test_cpuinfo_parsing(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: vmx-like name svm\nflags\t: fpu svm\n")
    assert cpu_virt_vendor(cpuinfo) == "svm"
    assert cpu_virt_vendor(tmp_path / "missing") is None
    assert nested_enabled(tmp_path, "vmx") is None


def test_check_kvm_device_reports_what_failed(tmp_path: Path) -> None:
    missing = check_kvm_device(tmp_path / "nope")
    assert missing is not None
    assert missing.startswith(f"cannot open {tmp_path / 'nope'}")
    regular = tmp_path / "kvm"
    regular.write_text("")
    failed = check_kvm_device(regular)  # a regular file does not answer KVM ioctls
    assert failed is not None
    assert failed.startswith(f"KVM ioctl on {regular} failed")


def test_probe_guest_is_a_valid_multiboot_image() -> None:
    image = probe_guest_image()
    magic, flags, checksum, header_addr, load_addr, _, _, entry = struct.unpack_from("<8I", image)
    assert magic == 0x1BADB002
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert flags & 0x10000  # a.out kludge: addresses in the header, no ELF needed
    assert header_addr == load_addr
    assert entry == load_addr + 32
    assert len(image) < 64
    command = probe_command(Path("/x/probe.bin"))
    assert command[command.index("-accel") + 1] == "kvm"
    assert "isa-debug-exit,iobase=0xf4,iosize=0x04" in command


def test_probe_runner_accepts_only_the_probe_exit_status() -> None:
    ok = accel._run_probe(["sh", "-c", f"exit {PROBE_EXIT_STATUS}"], 10)
    assert ok.ok
    bad = accel._run_probe(["sh", "-c", "echo 'KVM internal error' >&2; exit 1"], 10)
    assert bad == ProbeResult(False, "exit status 1: KVM internal error")


def test_hanging_probe_is_killed_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    result = accel._run_probe(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], 1.0)
    assert result == ProbeResult(False, "no exit within 1 s (killed)")
    assert time.monotonic() - start < 10
    # Killed and waited for: not even a zombie is left.
    assert not Path(f"/proc/{int(pid_file.read_text())}").exists()


def test_missing_qemu_fails_the_probe() -> None:
    result = accel.qemu_probe(qemu="qemu-system-does-not-exist")
    assert result == ProbeResult(False, "qemu-system-does-not-exist not found")


def test_probe_runs_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_probe(accelerator: str = "kvm", *_: object) -> ProbeResult:
        calls.append(accelerator)
        return GOOD_PROBE

    monkeypatch.setattr(accel, "qemu_probe", fake_probe)
    accel.clear_probe_cache()
    try:
        assert accel.cached_qemu_probe() == GOOD_PROBE
        assert accel.cached_qemu_probe() == GOOD_PROBE
    finally:
        accel.clear_probe_cache()
    assert calls == ["kvm"]


def test_real_host_checks_run_without_booting() -> None:
    """The real /proc/cpuinfo and /dev/kvm checks; the probe is replaced, so this is TCG."""
    chosen = choose_accelerator(probe=lambda: ProbeResult(False, "not probed in unit tests"))
    assert chosen.name == "tcg"
    assert chosen.reason.startswith("TCG: ")
