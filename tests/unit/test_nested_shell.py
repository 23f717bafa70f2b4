# SPDX-License-Identifier: MIT
"""harness.nested.shell_machine: sysfs and /proc parsing, and the console protocol against a
scripted L2 shell."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.nested.pci import Bar, Bdf
from harness.nested.shell_machine import (
    ShellError,
    ShellMachine,
    le_bytes,
    parse_bdf,
    parse_interrupts,
    parse_resources,
)

# /sys/bus/pci/devices/0000:00:01.0/resource of our device in L2 (SeaBIOS placed the BARs).
RESOURCE = """\
0x00000000febfd000 0x00000000febfdfff 0x0000000000040200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x00000000fe900000 0x00000000fe9fffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000"""

INTERRUPTS = """\
           CPU0
  0:         41   IO-APIC   2-edge      timer
  4:        312   IO-APIC   4-edge      ttyS0
 22:          2   IO-APIC  22-fasteoi   hmdev_l2
NMI:          0   Non-maskable interrupts"""


def test_sysfs_and_proc_parse() -> None:
    assert parse_bdf("0000:00:1f.3") == Bdf(0, 0x1F, 3)
    with pytest.raises(ValueError):
        parse_bdf("00:1f.3")
    assert parse_resources(RESOURCE) == {
        0: Bar(0, 0x1000, False, False, False, 0xFEBFD000),
        2: Bar(2, 0x100000, True, True, False, 0xFE900000),
    }
    assert parse_interrupts(INTERRUPTS, "hmdev_l2") == (22, 2)
    assert parse_interrupts(INTERRUPTS, "nothing") is None
    assert le_bytes(["0x0807060504030201"], 8) == bytes(range(1, 9))


Shell = Callable[[str], tuple[list[str], int]]


@pytest.fixture
def l2(tmp_path: Path) -> Iterator[Callable[[Shell], tuple[ShellMachine, list[str]]]]:
    """A ShellMachine whose L2 runs `shell` on each command, with kernel noise in between."""
    peers: list[tuple[socket.socket, socket.socket, threading.Thread]] = []

    def make(shell: Shell) -> tuple[ShellMachine, list[str]]:
        ours, theirs = socket.socketpair()
        commands: list[str] = []

        def serve() -> None:
            theirs.sendall(b"[    1.0] booting\r\n@@READY\r\n")
            buffer = b""
            while chunk := theirs.recv(4096):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    number, command = line.decode().split(" ", 1)
                    commands.append(command)
                    output, status = shell(command)
                    reply = [
                        f"@@B {number}",
                        *output,
                        "[ 99.0] kernel noise",
                        f"@@E {number} {status}",
                    ]
                    theirs.sendall("".join(f"{r}\r\n" for r in reply).encode())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        peers.append((ours, theirs, thread))
        machine = ShellMachine(ours, tmp_path / "console.log", (0xC00_0000, 0x200_0000))
        machine.wait_ready(5)
        return machine, commands

    yield make
    for ours, theirs, thread in peers:
        ours.shutdown(socket.SHUT_RDWR)  # the peer's recv returns b"": its thread ends
        thread.join(5)
        ours.close()
        theirs.close()


def test_commands_are_framed_and_noise_is_logged(
    l2: Callable[[Shell], tuple[ShellMachine, list[str]]], tmp_path: Path
) -> None:
    machine, commands = l2(lambda command: (["0x484D4456"], 0))
    assert machine.mmio_read(0xFEBFD000, 4) == 0x484D4456
    machine.mmio_write(0xFEBFD010, 8, 0x1122)
    assert commands == ["devmem 0xfebfd000 32", "devmem 0xfebfd010 64 0x1122"]
    log = (tmp_path / "console.log").read_text()
    assert "booting" in log and "kernel noise" in log


def test_a_failing_command_says_what_and_why(
    l2: Callable[[Shell], tuple[ShellMachine, list[str]]],
) -> None:
    machine, _ = l2(lambda command: (["devmem: /dev/mem: Operation not permitted"], 1))
    with pytest.raises(ShellError, match=r"exited 1: devmem: /dev/mem: Operation not permitted"):
        machine.mmio_read(0xC000_0000, 4)


def fake_memory(memory: dict[int, int]) -> Shell:
    """devmem on a dict of bytes: 64-bit reads in a loop, 8- and 64-bit writes."""

    def shell(command: str) -> tuple[list[str], int]:
        out = []
        if command.startswith("for a in"):
            for address in re.findall(r"0x[0-9a-f]+", command.split(";", maxsplit=1)[0]):
                base = int(address, 16)
                word = int.from_bytes(bytes(memory.get(base + i, 0) for i in range(8)), "little")
                out.append(f"0x{word:016X}")
        else:
            for access in command.split("; "):
                _, address, width, value = access.split()
                data = int(value, 16).to_bytes(int(width) // 8, "little")
                for i, byte in enumerate(data):
                    memory[int(address, 16) + i] = byte
        return out, 0

    return shell


def test_memory_blocks_use_words_inside_and_bytes_at_the_edges(
    l2: Callable[[Shell], tuple[ShellMachine, list[str]]],
) -> None:
    memory: dict[int, int] = {}
    machine, commands = l2(fake_memory(memory))
    data = bytes(range(1, 30))
    machine.mem_write(0x1003, data)  # 5 single bytes up to 0x1008, then 3 whole words
    widths = [access.split()[2] for access in commands[0].split("; ")]
    assert widths == ["8"] * 5 + ["64"] * 3
    assert bytes(memory[0x1003 + i] for i in range(len(data))) == data
    assert machine.mem_read(0x1003, len(data)) == data
    assert machine.mem_read(0x1005, 3) == data[2:5]


def test_config_space_goes_through_sysfs(
    l2: Callable[[Shell], tuple[ShellMachine, list[str]]],
) -> None:
    machine, commands = l2(lambda command: ([" 06 01"] if "od" in command else [], 0))
    assert machine.config_read(Bdf(0, 1, 0), 0x04, 2) == 0x0106
    machine.config_write(Bdf(0, 1, 0), 0x44, 4, 0x12345678)
    assert commands[0].startswith("dd if=/sys/bus/pci/devices/0000:00:01.0/config bs=2 skip=2")
    assert commands[1] == (
        "printf '\\x78\\x56\\x34\\x12' | dd of=/sys/bus/pci/devices/0000:00:01.0/config bs=4"
        " seek=17 count=1 conv=notrunc 2>/dev/null"
    )
    with pytest.raises(ValueError, match="aligned"):
        machine.config_read(Bdf(0, 1, 0), 0x05, 2)
