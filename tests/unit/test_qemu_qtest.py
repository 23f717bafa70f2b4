# SPDX-License-Identifier: MIT
"""harness.qemu.qtest: the protocol's parsing, the client against a scripted peer, and the
client plus PCI probing (QtestMachine) against a real QEMU that runs no guest code (-S)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.nested.machine import Probed
from harness.nested.pci import Bdf
from harness.nested.qtest_machine import QtestMachine
from harness.qemu.qtest import (
    IrqEvent,
    QtestClient,
    QtestError,
    check_value,
    decode_data,
    encode_data,
    is_async,
    parse_irq,
    parse_number,
    parse_reply,
)

QEMU = shutil.which("qemu-system-x86_64")


def test_replies_and_values_parse() -> None:
    assert parse_reply("OK").ok and parse_reply("OK").words == ()
    reply = parse_reply("OK 0x00000000000011de")
    assert reply.ok and parse_number(reply.words[0]) == 0x11DE
    assert parse_reply("FAIL Unknown device").ok is False
    assert parse_reply("ERR invalid argument size").words == ("invalid", "argument", "size")
    assert parse_number("42") == 42
    for bad in ("", "HELLO", "ok"):
        with pytest.raises(QtestError, match="malformed qtest reply"):
            parse_reply(bad)
    with pytest.raises(QtestError, match="not a number"):
        parse_number("0xZZ")


def test_irq_messages_parse() -> None:
    assert is_async("IRQ raise 16") and not is_async("OK")
    assert parse_irq("IRQ raise 16", 1.5) == IrqEvent(16, True, 1.5)
    assert parse_irq("IRQ lower 3").raised is False
    for bad in ("IRQ up 3", "IRQ raise", "IRQ raise x"):
        with pytest.raises(QtestError):
            parse_irq(bad)


def test_data_is_hex_in_memory_order() -> None:
    assert encode_data(b"\x01\xab") == "0x01ab"
    assert decode_data("0x01ab", 2) == b"\x01\xab"
    with pytest.raises(QtestError, match="read of 3 bytes"):
        decode_data("0x01ab", 3)
    with pytest.raises(QtestError, match="non-hex"):
        decode_data("0xzz", 1)


def test_values_are_checked_before_qemu_sees_them() -> None:
    check_value(0xFFFF, 16, "port")
    for value in (-1, 0x10000):
        with pytest.raises(ValueError, match="does not fit in 16 bits"):
            check_value(value, 16, "port")


Peer = Callable[[str], list[str]]


@pytest.fixture
def scripted() -> Iterator[Callable[[Peer], QtestClient]]:
    """A client whose peer answers each request line with the lines `peer` returns."""
    peers: list[tuple[socket.socket, socket.socket, threading.Thread]] = []

    def make(peer: Peer) -> QtestClient:
        ours, theirs = socket.socketpair()

        def serve() -> None:
            buffer = b""
            while True:
                chunk = theirs.recv(4096)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    for answer in peer(line.decode()):
                        theirs.sendall(answer.encode() + b"\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        peers.append((ours, theirs, thread))
        return QtestClient(ours, timeout=2.0, alive=lambda: "exited with status 1")

    yield make
    for ours, theirs, thread in peers:
        ours.shutdown(socket.SHUT_RDWR)  # the peer's recv returns b"": its thread ends
        thread.join(5)
        ours.close()
        theirs.close()


def test_irq_messages_before_a_reply_are_collected(
    scripted: Callable[[Peer], QtestClient],
) -> None:
    seen: list[str] = []

    def peer(line: str) -> list[str]:
        seen.append(line)
        if line.startswith("inl"):
            return ["IRQ raise 16", "IRQ lower 16", "OK 0x11de5"]
        return ["OK"]

    client = scripted(peer)
    client.outl(0xCF8, 0x8000_0800)
    assert client.inl(0xCFC) == 0x11DE5
    assert seen == ["outl 0xcf8 0x80000800", "inl 0xcfc"]
    assert [(e.line, e.raised) for e in client.irq_events] == [(16, True), (16, False)]
    assert client.requests == 2


def test_poll_without_waiting_takes_what_already_arrived() -> None:
    # A poll(0) that read nothing left QEMU's unread IRQ messages to fill the socket, and
    # QEMU's main loop then blocked writing the next one.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        client = QtestClient(ours, timeout=2.0, alive=lambda: None)
        theirs.sendall(b"IRQ raise 0\nIRQ lower 0\n" * 500)
        time.sleep(0.05)
        client.poll()
        assert len(client.irq_events) == 1000
        client.poll()  # nothing more: returns at once
        assert len(client.irq_events) == 1000


def test_intx_is_a_pci_interrupt_not_the_timer(scripted: Callable[[Peer], QtestClient]) -> None:
    # A running machine (libvirt's) raises input 0 for its PIT all the time; q35 routes PCI
    # INTx to IOAPIC inputs 16-23.
    client = scripted(lambda line: ["OK"])
    machine = QtestMachine(client, 64 << 20)
    device = Probed(Bdf(0, 5, 0), 0x1DE5, 0x0001, {})
    mark = machine.intx_mark(device)
    client.irq_events += [IrqEvent(0, True, 0.0), IrqEvent(0, False, 0.0)]
    assert machine.intx_delivered(device, mark, 0.0) == []
    assert machine.intx_settled(device, mark, 0.0) == "no INTx was raised to settle"
    client.irq_events += [IrqEvent(18, True, 0.0), IrqEvent(0, True, 0.0), IrqEvent(18, False, 0.0)]
    assert machine.intx_delivered(device, mark, 0.0) == ["IOAPIC input (GSI) 18 raised"]
    assert machine.intx_settled(device, mark, 0.0) is None


def test_failures_name_the_request(scripted: Callable[[Peer], QtestClient]) -> None:
    client = scripted(lambda line: ["FAIL Unknown device"])
    with pytest.raises(QtestError, match=r"irq_intercept_in nowhere.*FAIL Unknown device"):
        client.irq_intercept_in("nowhere")


def test_a_silent_qemu_times_out_saying_why(scripted: Callable[[Peer], QtestClient]) -> None:
    client = scripted(lambda line: [])
    client.timeout = 0.2
    with pytest.raises(QtestError, match=r"no qtest reply.*exited with status 1"):
        client.readl(0x1000)


def test_bulk_writes_are_chunked_and_reads_decoded(
    scripted: Callable[[Peer], QtestClient],
) -> None:
    writes: list[tuple[int, int, str]] = []

    def peer(line: str) -> list[str]:
        words = line.split()
        if words[0] == "write":
            writes.append((int(words[1], 16), int(words[2], 16), words[3]))
            return ["OK"]
        return ["OK 0x" + "ab" * int(words[2], 16)]

    client = scripted(peer)
    data = bytes(range(256)) * 20  # 5120 bytes: three chunks
    client.write(0x1000, data)
    assert [(a, n) for a, n, _ in writes] == [(0x1000, 2048), (0x1800, 2048), (0x2000, 1024)]
    assert bytes.fromhex("".join(hex_[2:] for _, _, hex_ in writes)) == data
    assert client.read(0x1000, 3) == b"\xab\xab\xab"
    with pytest.raises(ValueError, match="size > 0"):
        client.read(0x1000, 0)


def test_wait_irq_picks_up_late_messages(scripted: Callable[[Peer], QtestClient]) -> None:
    def peer(line: str) -> list[str]:
        return ["OK", "IRQ raise 18"] if line.startswith("writel") else ["OK"]

    client = scripted(peer)
    mark = len(client.irq_events)
    client.writel(0xC000_0094, 0)
    event = client.wait_irq(lambda e: e.raised, mark, 2.0)
    assert event is not None and event.line == 18
    assert client.wait_irq(lambda e: not e.raised, mark, 0.1) is None


@pytest.fixture
def stopped_q35(tmp_path: Path) -> Iterator[QtestClient]:
    """A q35 QEMU that never runs guest code, with an ivshmem-plain device, over qtest."""
    if QEMU is None:
        pytest.fail("qemu-system-x86_64 is missing: run `vfio-harness setup --profile unit`")
    path = tmp_path / "qtest.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    process = subprocess.Popen(
        [QEMU, "-machine", "q35", "-accel", "tcg", "-S", "-m", "64M", "-display", "none",
         "-nodefaults", "-no-user-config", "-qtest", f"unix:{path}", "-qtest-log", "/dev/null",
         "-object", "memory-backend-ram,id=m,size=1M", "-device", "ivshmem-plain,memdev=m"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    listener.settimeout(30)
    try:
        conn, _ = listener.accept()
        client = QtestClient(conn, timeout=30)
        yield client
        client.close()
    finally:
        listener.close()
        process.kill()
        process.wait()


def test_a_real_machine_is_probed_like_firmware_would(stopped_q35: QtestClient) -> None:
    machine = QtestMachine(stopped_q35, 64 << 20)
    host_bridge = machine.config_read(Bdf(0, 0, 0), 0, 4)
    assert host_bridge == 0x29C0_8086  # q35's MCH
    ivshmem = machine.probe(0x1AF4, 0x1110)
    assert ivshmem is not None
    bar0, bar2 = ivshmem.bar(0), ivshmem.bar(2)
    assert (bar0.size, bar0.is_64bit) == (256, False)
    assert (bar2.size, bar2.is_64bit, bar2.prefetchable) == (1 << 20, True, True)
    assert bar2.address % bar2.size == 0 and bar2.address >= 0xC000_0000
    assert machine.probe(0x1DE5, 0x0001) is None
    # Decode on: the BAR is the backend's RAM, readable and writable at its bus address.
    machine.config_write(ivshmem.bdf, 0x04, 2, 0x2)
    machine.mem_write(bar2.address + 0x10, b"nested")
    assert machine.mem_read(bar2.address + 0x10, 6) == b"nested"
    assert machine.mmio_read(bar2.address + 0x10, 2) == int.from_bytes(b"ne", "little")
    machine.config_write(ivshmem.bdf, 0x04, 2, 0x0)
    # Decode off: the address is unassigned space again (reads as 0 through qtest).
    assert machine.mem_read(bar2.address + 0x10, 6) != b"nested"
