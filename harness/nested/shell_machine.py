# SPDX-License-Identifier: MIT
"""`Machine` over a booted L2's shell on its serial console: L2 userspace is the driver.

L2's init (l2.py) runs a loop on ttyS0 that reads "N COMMAND" lines (echo off) and answers
"@@B N", the command's output, "@@E N STATUS". Everything else on the console (kernel
messages, boot output) is kept in the console log and otherwise ignored.

The guest-driver operations map to what L2 userspace has: the PCI function and its BAR
addresses from sysfs (the L2 kernel enumerated the bus and firmware placed the BARs), config
space through sysfs `config` (the kernel turns each aligned 1/2/4-byte read or write into one
config cycle), MMIO and RAM through busybox `devmem` (one access per call, of the asked
width). RAM for DMA buffers is the part of L2's memory its kernel was told not to use
(`mem=`), which /dev/mem lets root map.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from harness.nested.machine import Probed
from harness.nested.pci import Bar, Bdf
from harness.qemu.lines import LineReader

READY = "@@READY"
COMMAND_TIMEOUT_S = 300.0
# The tty's canonical line buffer holds 4095 characters; keep every command well below.
MAX_COMMAND = 3000
SYSFS_PCI = "/sys/bus/pci/devices"
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000
MAX_INTX_PER_COMPLETION = 3
SETTLE_S = 2.0
INTX_DRIVER = "hmdev_l2"  # the name L2's driver requests its INTx under (/proc/interrupts)

# A kernel message that reached the console in the middle of a command's output (init sets
# the console loglevel to 1, so only emergencies can), told apart by its printk timestamp.
KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ")
_BDF = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")


class ShellError(RuntimeError):
    """An L2 command failed or L2 stopped answering."""


def parse_bdf(name: str) -> Bdf:
    found = _BDF.match(name)
    if not found:
        raise ValueError(f"not a PCI address: {name!r}")
    return Bdf(int(found.group(2), 16), int(found.group(3), 16), int(found.group(4), 16))


def parse_resources(text: str) -> dict[int, Bar]:
    """Memory BARs from a sysfs `resource` file: one "start end flags" line per resource,
    the six BARs first."""
    bars = {}
    for index, line in enumerate(text.split("\n")[:6]):
        start, end, flags = (int(word, 16) for word in line.split())
        if not flags & IORESOURCE_MEM or end <= start:
            continue
        bars[index] = Bar(
            index,
            end - start + 1,
            bool(flags & IORESOURCE_MEM_64),
            bool(flags & IORESOURCE_PREFETCH),
            False,
            start,
        )
    return bars


def parse_interrupts(text: str, name: str) -> tuple[int, int] | None:
    """(IRQ number, total count over CPUs) of the /proc/interrupts line of handler `name`."""
    for line in text.splitlines():
        words = line.split()
        if not words or name not in words[-1:] or not words[0].endswith(":"):
            continue
        counts = []
        for word in words[1:]:
            if not word.isdigit():
                break
            counts.append(int(word))
        return int(words[0][:-1]), sum(counts)
    return None


def le_bytes(hex_words: list[str], width: int) -> bytes:
    """devmem outputs ("0x..." per access of `width` bytes) as memory-order bytes."""
    return b"".join(int(word, 16).to_bytes(width, "little") for word in hex_words)


class ShellMachine:
    name = "l2"
    may_stop = False  # L2's shell must keep answering until the end
    intx_acked_by_guest = True  # L2's driver (hmdev_l2) clears IRQ_STATUS in its handler

    def __init__(self, serial: socket.socket, console_log: Path, dma_area: tuple[int, int]) -> None:
        self.sock = serial
        self.reader = LineReader(serial, "serial console")
        self.console = console_log.open("a", encoding="utf-8", errors="replace")
        self._dma_area = dma_area
        self.sequence = 0
        self.commands = 0

    # -- the console protocol ----------------------------------------------------------

    def _line(self, timeout: float) -> str | None:
        line = self.reader.readline(timeout)
        if line is not None:
            line = line.rstrip("\r")
            self.console.write(f"{time.monotonic():.3f} {line}\n")
            self.console.flush()
        return line

    def wait_ready(self, timeout: float) -> float:
        """Wait for init's ready line; returns how long it took."""
        started = time.monotonic()
        deadline = started + timeout
        while (left := deadline - time.monotonic()) > 0:
            line = self._line(left)
            if line is not None and line.strip() == READY:
                return time.monotonic() - started
        raise ShellError(f"L2 printed no {READY} within {timeout:.0f} s (see its console log)")

    def sh(self, command: str, *, check: bool = True) -> str:
        """Run `command` in L2's shell; its output (stdout and stderr)."""
        if "\n" in command or len(command) > MAX_COMMAND:
            raise ValueError(f"L2 commands are single lines under {MAX_COMMAND} characters")
        self.sequence += 1
        self.commands += 1
        number = self.sequence
        self.sock.sendall(f"{number} {command}\n".encode())
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        output: list[str] | None = None
        while (left := deadline - time.monotonic()) > 0:
            line = self._line(left)
            if line is None:
                break
            if line == f"@@B {number}":
                output = []
            elif line.startswith(f"@@E {number} ") and output is not None:
                status = int(line.split()[2])
                if check and status != 0:
                    shown = "\n".join(output[-10:])
                    raise ShellError(f"L2 command {command[:80]!r} exited {status}: {shown}")
                return "\n".join(output)
            elif output is not None and not KERNEL_LINE.match(line):
                output.append(line)
        raise ShellError(f"L2 did not finish {command[:80]!r} in {COMMAND_TIMEOUT_S:.0f} s")

    # -- PCI through sysfs -------------------------------------------------------------

    def probe(self, vendor: int, device: int) -> Probed | None:
        listing = self.sh(
            f"for d in {SYSFS_PCI}/*; do echo ${{d##*/}} $(cat $d/vendor) $(cat $d/device); done"
        )
        for line in listing.splitlines():
            name, ven, dev = line.split()
            if (int(ven, 16), int(dev, 16)) == (vendor, device):
                bars = parse_resources(self.sh(f"cat {SYSFS_PCI}/{name}/resource"))
                return Probed(parse_bdf(name), vendor, device, bars)
        return None

    def _config(self, bdf: Bdf) -> str:
        return f"{SYSFS_PCI}/{bdf}/config"

    def config_read(self, bdf: Bdf, offset: int, size: int) -> int:
        _check_aligned(offset, size)
        out = self.sh(
            f"dd if={self._config(bdf)} bs={size} skip={offset // size} count=1 2>/dev/null"
            " | od -An -tx1"
        )
        data = bytes.fromhex("".join(out.split()))
        if len(data) != size:
            raise ShellError(f"config read of {size} bytes at {offset:#x} of {bdf} gave {out!r}")
        return int.from_bytes(data, "little")

    def config_write(self, bdf: Bdf, offset: int, size: int, value: int) -> None:
        _check_aligned(offset, size)
        escaped = "".join(f"\\x{byte:02x}" for byte in value.to_bytes(size, "little"))
        self.sh(
            f"printf '{escaped}' | dd of={self._config(bdf)} bs={size} seek={offset // size}"
            " count=1 conv=notrunc 2>/dev/null"
        )

    # -- memory through devmem ---------------------------------------------------------

    def mmio_read(self, address: int, size: int) -> int:
        return int(self.sh(f"devmem {address:#x} {8 * size}").strip(), 16)

    def mmio_write(self, address: int, size: int, value: int) -> None:
        self.sh(f"devmem {address:#x} {8 * size} {value:#x}")

    def mem_read(self, address: int, length: int) -> bytes:
        first, last = address & ~7, (address + length + 7) & ~7
        words: list[str] = []
        addresses = [f"{a:#x}" for a in range(first, last, 8)]
        for batch in _batches(addresses, 150):
            out = self.sh(f"for a in {' '.join(batch)}; do devmem $a 64; done")
            words += out.split()
        data = le_bytes(words, 8)
        if len(data) != last - first:
            raise ShellError(f"devmem read of {length} bytes at {address:#x}: got {len(data)}")
        return data[address - first : address - first + length]

    def mem_write(self, address: int, data: bytes) -> None:
        accesses = []
        position = address
        end = address + len(data)
        while position < end:
            # Whole aligned 8-byte words where possible, single bytes at the ragged edges.
            width = 8 if position % 8 == 0 and end - position >= 8 else 1
            chunk = data[position - address : position - address + width]
            value = int.from_bytes(chunk, "little")
            accesses.append(f"devmem {position:#x} {8 * width} {value:#x}")
            position += width
        for batch in _batches(accesses, 40):
            self.sh("; ".join(batch))

    def dma_area(self) -> tuple[int, int]:
        return self._dma_area

    # -- INTx: counted by L2's kernel for L2's driver ----------------------------------

    def intx_count(self) -> tuple[int, int] | None:
        return parse_interrupts(self.sh("cat /proc/interrupts"), INTX_DRIVER)

    def intx_mark(self, device: Probed) -> int:
        found = self.intx_count()
        if found is None:
            raise ShellError(
                f"no {INTX_DRIVER} interrupt in L2's /proc/interrupts (driver loaded?)"
            )
        return found[1]

    def intx_delivered(self, device: Probed, mark: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.intx_count()
            if found is not None and found[1] > mark:
                irq, count = found
                return [f"L2 IRQ {irq} handled by {INTX_DRIVER}"] * (count - mark)
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.1)

    def intx_settled(self, device: Probed, mark: int, timeout: float) -> str | None:
        # Without KVM, QEMU's vfio-pci ends an INTx ("EOI") on the guest's next access to any
        # of the device's BARs and unmasks it; the handler's reads of IRQ_STATUS and IRQ_MASK
        # come before its write that lowers the line, so the still-asserting device may fire
        # once more per read: up to MAX_INTX_PER_COMPLETION deliveries, the extra ones
        # finding nothing pending. A storm (a line that never lowers) keeps counting.
        first = self._count_since(mark)
        time.sleep(min(timeout, SETTLE_S))
        second = self._count_since(mark)
        if second != first:
            return f"L2 kept taking interrupts: {first}, then {second} a moment later (a storm)"
        if not 1 <= second <= MAX_INTX_PER_COMPLETION:
            return f"L2 counted {second} interrupts for one completion"
        return None

    def _count_since(self, mark: int) -> int:
        found = self.intx_count()
        return found[1] - mark if found else 0

    def close(self) -> None:
        self.console.close()


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _check_aligned(offset: int, size: int) -> None:
    if size not in (1, 2, 4) or offset % size:
        raise ValueError(f"config access of {size} bytes at {offset:#x}: must be 1/2/4, aligned")
