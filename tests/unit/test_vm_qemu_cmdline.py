# SPDX-License-Identifier: MIT
"""The QEMU command line, the qcow2 overlay command and race-free port reservations."""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from threading import Barrier

import pytest

from harness.vm.accel import KVM_ARGS, Accelerator, tcg
from harness.vm.overlay import OverlayError, base_format_of, create_overlay, overlay_command
from harness.vm.ports import PortAllocationError, is_bindable, reserve_port
from harness.vm.qemu_cmdline import (
    FirmwareDrives,
    VmSpec,
    build_qemu_command,
    incoming_from_file,
    kernel_command_line,
)

RUN = Path("/run/vm1")


def spec(**changes: object) -> VmSpec:
    base = VmSpec(
        kernel=Path("/cache/vmlinux"),
        initrd=Path("/cache/initrd.img"),
        disk=RUN / "root.qcow2",
        console_log=RUN / "console.log",
        qmp_socket=RUN / "qmp.sock",
        ssh_port=40022,
        accelerator=tcg("TCG: test"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def option(args: Sequence[str], name: str) -> list[str]:
    """Every value given to `name`."""
    return [args[i + 1] for i, arg in enumerate(args) if arg == name]


def test_minimal_machine_and_tcg() -> None:
    args = build_qemu_command(spec())
    assert args[0] == "qemu-system-x86_64"
    assert option(args, "-machine") == ["q35"]
    assert option(args, "-accel") == ["tcg,thread=multi"]
    assert option(args, "-cpu") == ["max"]
    assert option(args, "-m") == ["1024M"]
    assert option(args, "-smp") == ["2"]
    for flag in ("-nodefaults", "-no-user-config", "-no-reboot"):
        assert flag in args
    assert option(args, "-display") == ["none"]
    assert "-nographic" not in args  # it would tie QEMU's stdio to the console and monitor


def test_kvm_args_come_from_the_accelerator() -> None:
    kvm = Accelerator("kvm", KVM_ARGS, 1.0, "KVM: test", True)
    args = build_qemu_command(spec(accelerator=kvm))
    assert option(args, "-accel") == ["kvm"]
    assert option(args, "-cpu") == ["host"]


def test_kernel_initrd_and_append() -> None:
    args = build_qemu_command(
        spec(kernel_params={"harness.root": "/dev/vda", "harness.authkey": "c3No"}, loglevel=4)
    )
    assert option(args, "-kernel") == ["/cache/vmlinux"]
    assert option(args, "-initrd") == ["/cache/initrd.img"]
    assert option(args, "-append") == [
        "console=ttyS0 panic=-1 loglevel=4 harness.root=/dev/vda harness.authkey=c3No"
    ]
    assert "-initrd" not in build_qemu_command(spec(initrd=None))
    assert kernel_command_line(spec(quiet=True)) == "console=ttyS0 panic=-1 quiet"


@pytest.mark.parametrize(
    "params", [{"bad key": "x"}, {"k": "two words"}, {"k": ""}, {"k": "'quoted'"}]
)
def test_bad_kernel_params_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="kernel parameter"):
        build_qemu_command(spec(kernel_params=params))


def test_loglevel_range() -> None:
    with pytest.raises(ValueError, match="loglevel"):
        kernel_command_line(spec(loglevel=9))


def test_root_disk_is_the_overlay_on_virtio_blk() -> None:
    args = build_qemu_command(spec())
    assert option(args, "-drive") == [
        "file=/run/vm1/root.qcow2,format=qcow2,if=none,id=root,discard=unmap"
    ]
    assert "virtio-blk-pci,drive=root" in option(args, "-device")


def test_ssh_forward_is_bound_to_loopback_only() -> None:
    args = build_qemu_command(spec(ssh_port=45678))
    (netdev,) = option(args, "-netdev")
    assert netdev == "user,id=net0,hostfwd=tcp:127.0.0.1:45678-:22"
    assert "0.0.0.0" not in " ".join(args)
    assert "virtio-net-pci,netdev=net0" in option(args, "-device")


def test_serial_console_goes_to_a_file_and_qmp_to_a_unix_socket() -> None:
    args = build_qemu_command(spec())
    assert option(args, "-chardev") == [
        "file,id=console,path=/run/vm1/console.log",
        "socket,id=qmp,path=/run/vm1/qmp.sock,server=on,wait=off",
    ]
    assert option(args, "-serial") == ["chardev:console"]
    assert option(args, "-mon") == ["chardev=qmp,mode=control"]


def test_pvpanic_makes_a_guest_panic_exit_with_failure() -> None:
    args = build_qemu_command(spec())
    assert "pvpanic-pci" in option(args, "-device")
    assert option(args, "-action") == ["panic=exit-failure"]


def test_incoming_restores_a_saved_state() -> None:
    assert "-incoming" not in build_qemu_command(spec())
    uri = incoming_from_file(Path("/cache/states/it's.state"))
    args = build_qemu_command(spec(incoming=uri, start_paused=True))
    assert option(args, "-incoming") == ["exec:cat '/cache/states/it'\"'\"'s.state'"]
    assert "-S" in args


def test_pidfile_name_rng_and_extra_args_last() -> None:
    args = build_qemu_command(
        spec(pidfile=RUN / "qemu.pid", name="vm1", rng=False, extra_args=("-s", "-trace", "x"))
    )
    assert option(args, "-pidfile") == ["/run/vm1/qemu.pid"]
    assert option(args, "-name") == ["vm1"]
    assert "virtio-rng-pci" not in args
    assert args[-3:] == ["-s", "-trace", "x"]
    assert "virtio-rng-pci" in option(build_qemu_command(spec()), "-device")


def test_commas_in_paths_are_escaped() -> None:
    args = build_qemu_command(spec(disk=Path("/run/a,b/root.qcow2")))
    assert option(args, "-drive")[0].startswith("file=/run/a,,b/root.qcow2,format=qcow2")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"disk": Path("root.qcow2")}, "disk must be an absolute path"),
        ({"console_log": Path("c.log")}, "console_log must be an absolute path"),
        ({"qmp_socket": Path("/" + "q" * 120)}, "QMP socket path longer"),
        ({"ssh_port": 0}, "ssh_port 0 is not a TCP port"),
        ({"ssh_port": 65536}, "is not a TCP port"),
        ({"memory_mib": 16}, "memory_mib"),
    ],
)
def test_invalid_specs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_qemu_command(spec(**changes))


def test_the_builder_is_deterministic() -> None:
    """A saved state restores only into the same device list: same spec, same argv."""
    assert build_qemu_command(spec()) == build_qemu_command(spec())


# --- overlay ---------------------------------------------------------------------------------


class RecordingRunner:
    def __init__(self, returncode: int = 0, stderr: bytes = b"") -> None:
        self.commands: list[list[str]] = []
        self.returncode = returncode
        self.stderr = stderr

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        self.commands.append(list(command))
        return subprocess.CompletedProcess(command, self.returncode, b"", self.stderr)


def test_overlay_backing_file_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "base.raw").write_bytes(b"\0" * 512)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(images)
    runner = RecordingRunner()
    overlay = create_overlay(Path("base.raw"), run_dir, runner=runner)
    assert overlay == run_dir / "root.qcow2"
    assert runner.commands == [
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(images / "base.raw"),
         "-F", "raw", str(overlay)]
    ]  # fmt: skip


def test_overlay_base_format_is_detected_and_explicit(tmp_path: Path) -> None:
    qcow2 = tmp_path / "base.img"
    qcow2.write_bytes(b"QFI\xfb" + b"\0" * 100)
    assert base_format_of(qcow2) == "qcow2"
    runner = RecordingRunner()
    create_overlay(qcow2, tmp_path, "vm.qcow2", runner=runner)
    assert runner.commands[0][runner.commands[0].index("-F") + 1] == "qcow2"
    with pytest.raises(ValueError, match="absolute"):
        overlay_command(Path("rel.raw"), tmp_path / "o.qcow2", "raw")


def test_overlay_errors(tmp_path: Path) -> None:
    with pytest.raises(OverlayError, match="does not exist"):
        create_overlay(tmp_path / "missing.raw", tmp_path)
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 512)
    with pytest.raises(OverlayError, match="Could not open"):
        create_overlay(base, tmp_path, runner=RecordingRunner(1, b"Could not open backing\n"))
    (tmp_path / "root.qcow2").write_bytes(b"")
    with pytest.raises(OverlayError, match="never reused"):
        create_overlay(base, tmp_path, runner=RecordingRunner())


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_overlay_with_real_qemu_img(tmp_path: Path) -> None:
    base = tmp_path / "images" / "base.raw"
    base.parent.mkdir()
    base.write_bytes(b"\0" * (1 << 20))
    overlay = create_overlay(base, tmp_path)
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f'"backing-filename": "{base}"' in info.stdout
    assert '"backing-filename-format": "raw"' in info.stdout


# --- ports -----------------------------------------------------------------------------------


def same_sequence(start: int = 46000) -> Callable[[], int]:
    """Every allocator gets the same proposals: the worst case for a collision."""
    ports: Iterator[int] = iter(range(start, start + 200))
    return lambda: next(ports)


def test_reservation_holds_a_bindable_port(tmp_path: Path) -> None:
    with reserve_port(tmp_path) as reservation:
        assert reservation.held
        assert is_bindable(reservation.port)
    assert not reservation.held


def test_a_reserved_port_is_skipped_until_released(tmp_path: Path) -> None:
    first = reserve_port(tmp_path, same_sequence())
    second = reserve_port(tmp_path, same_sequence())
    assert second.port != first.port
    first.release()
    third = reserve_port(tmp_path, same_sequence())
    assert third.port == first.port
    second.release()
    third.release()


def test_a_port_in_use_is_skipped(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proposals = iter([port, port + 1 if port < 65535 else port - 1])
        with reserve_port(tmp_path, lambda: next(proposals)) as reservation:
            assert reservation.port != port


def test_allocation_gives_up(tmp_path: Path) -> None:
    with (
        reserve_port(tmp_path, same_sequence()) as held,
        pytest.raises(PortAllocationError, match="after 3 attempts"),
    ):
        reserve_port(tmp_path, lambda: held.port, attempts=3)


def test_concurrent_threads_never_share_a_port(tmp_path: Path) -> None:
    results: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)
    held = []

    def allocate(slot: int) -> None:
        propose = same_sequence(47000)
        barrier.wait()
        for _ in range(20):
            reservation = reserve_port(tmp_path, propose)
            held.append(reservation)
            results[slot].append(reservation.port)

    threads = [threading.Thread(target=allocate, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ports = results[0] + results[1]
    assert len(ports) == 40
    assert len(set(ports)) == 40
    for reservation in held:
        reservation.release()


def _allocate_in_child(
    lock_dir: str, count: int, barrier: Barrier, queue: multiprocessing.Queue[int]
) -> None:
    propose = same_sequence(48000)
    barrier.wait(timeout=30)  # start together
    held = [reserve_port(Path(lock_dir), propose) for _ in range(count)]
    barrier.wait(timeout=30)  # everything is reserved by both before anyone releases
    for reservation in held:
        queue.put(reservation.port)


def test_concurrent_processes_never_share_a_port(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[int] = context.Queue()
    barrier = context.Barrier(2)
    with reserve_port(tmp_path, same_sequence(48000)) as parent_held:
        children = [
            context.Process(target=_allocate_in_child, args=(str(tmp_path), 15, barrier, queue))
            for _ in range(2)
        ]
        for child in children:
            child.start()
        ports = [queue.get(timeout=30) for _ in range(30)]
        for child in children:
            child.join(timeout=30)
            assert child.exitcode == 0
    assert parent_held.port not in ports
    assert len(set(ports)) == 30


FIRMWARE = FirmwareDrives(
    code=Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
    varstore=RUN / "vars.fd",
    esp=RUN / "esp.img",
    smm=True,
)


def test_a_uefi_boot_has_pflash_and_the_esp_instead_of_a_kernel() -> None:
    args = build_qemu_command(spec(firmware=replace(FIRMWARE, smm=False)))
    for flag in ("-kernel", "-initrd", "-append"):
        assert flag not in args, f"{flag}: the firmware boots the ESP's kernel"
    assert option(args, "-machine") == ["q35"]
    assert "-global" not in args
    drives = option(args, "-drive")
    assert drives[0] == f"if=pflash,format=raw,unit=0,readonly=on,file={FIRMWARE.code}"
    assert drives[1] == "if=pflash,format=raw,unit=1,file=/run/vm1/vars.fd"
    assert drives[2].startswith("file=/run/vm1/root.qcow2,"), "the root disk stays /dev/vda"
    assert drives[-1] == "file=/run/vm1/esp.img,format=raw,if=none,id=esp,readonly=on"
    assert option(args, "-device")[1] == "virtio-blk-pci,drive=esp,bootindex=0"


def test_secure_boot_has_smm_and_a_pflash_only_smm_writes() -> None:
    args = build_qemu_command(spec(firmware=FIRMWARE))
    assert option(args, "-machine") == ["q35,smm=on"]
    assert option(args, "-global") == ["driver=cfi.pflash01,property=secure,value=on"]


def test_firmware_paths_must_be_absolute() -> None:
    with pytest.raises(ValueError, match=r"firmware\.varstore"):
        build_qemu_command(spec(firmware=replace(FIRMWARE, varstore=Path("vars.fd"))))
