# SPDX-License-Identifier: MIT
"""A client of QEMU's qtest protocol (`-qtest unix:PATH`), standard library only.

The protocol is line based. Each request is one line of words; its reply is one line, "OK",
"OK <value>", or "FAIL <why>" / "ERR <why>". Numbers QEMU parses with strtoul(base 0), so we
send them in hex; it answers port reads as "0x%04x" and memory reads as "0x%016x"; bulk
`read`/`write` data is one "0x"-prefixed hex string. After `irq_intercept_in <QOM path>`
QEMU also sends "IRQ raise N" / "IRQ lower N" whenever an intercepted input line changes
level, at any moment, also between a request and its reply: every read sorts those out into
`irq_events` first.

Malformed requests are not answered with an error: QEMU asserts and dies. This client
therefore validates its arguments itself (address and value ranges) before sending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.qemu.lines import LineClient

PORT_MAX = 0xFFFF
ADDRESS_MAX = (1 << 64) - 1
# `write` sends its data as hex on one line; QEMU accumulates the line, but keep lines short
# enough that a slow guest (L1 under TCG) is not handed one huge string at once.
WRITE_CHUNK = 2048
_WIDTH_BITS = {"b": 8, "w": 16, "l": 32, "q": 64}


class QtestError(RuntimeError):
    """A qtest request failed, QEMU's reply made no sense, or QEMU went away."""


@dataclass(frozen=True)
class Reply:
    ok: bool
    words: tuple[str, ...]  # after "OK"/"FAIL"/"ERR"
    line: str


@dataclass(frozen=True)
class IrqEvent:
    line: int  # the intercepted device's input number (for "ioapic": the GSI)
    raised: bool  # "raise" (True) or "lower" (False)
    at: float  # time.monotonic() when it was read


def is_async(line: str) -> bool:
    """Whether `line` is an asynchronous message rather than a reply."""
    return line.startswith("IRQ ")


def parse_irq(line: str, at: float = 0.0) -> IrqEvent:
    """'IRQ raise 16' -> IrqEvent(16, True)."""
    words = line.split()
    if len(words) != 3 or words[0] != "IRQ" or words[1] not in ("raise", "lower"):
        raise QtestError(f"malformed qtest IRQ message {line!r}")
    return IrqEvent(parse_number(words[2], line), words[1] == "raise", at)


def parse_reply(line: str) -> Reply:
    """'OK 0x1de5' -> Reply(True, ('0x1de5',)); 'FAIL Unknown device' -> Reply(False, ...)."""
    words = line.split()
    if not words or words[0] not in ("OK", "FAIL", "ERR"):
        raise QtestError(f"malformed qtest reply {line!r}")
    return Reply(words[0] == "OK", tuple(words[1:]), line)


def parse_number(word: str, context: str = "") -> int:
    """A number as QEMU prints it: "0x"-prefixed hex, or decimal."""
    try:
        return int(word, 16) if word.lower().startswith("0x") else int(word, 10)
    except ValueError:
        raise QtestError(f"not a number: {word!r} in {context or word!r}") from None


def encode_data(data: bytes) -> str:
    """Bytes as `write` takes them: "0x" and two hex digits per byte, in memory order."""
    return "0x" + data.hex()


def decode_data(word: str, size: int) -> bytes:
    """The payload of a `read` reply ("0x" + 2*size hex digits) as bytes."""
    if not word.startswith("0x") or len(word) != 2 + 2 * size:
        raise QtestError(f"qtest read of {size} bytes answered {word[:40]!r}...")
    try:
        return bytes.fromhex(word[2:])
    except ValueError:
        raise QtestError(f"qtest read answered non-hex data {word[:40]!r}") from None


def check_value(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value:#x} does not fit in {bits} bits")


class QtestClient(LineClient):
    """One qtest connection. Requests are synchronous; IRQ messages are collected."""

    what = "qtest"
    error = QtestError

    def start(self) -> None:
        self.irq_events: list[IrqEvent] = []
        self.requests = 0

    # -- the protocol ------------------------------------------------------------------

    def request(self, *words: str) -> tuple[str, ...]:
        """Send one request; its reply's words after "OK". Raises QtestError on FAIL/ERR."""
        line = " ".join(words)
        try:
            self.sock.sendall(line.encode("ascii") + b"\n")
        except OSError as err:
            raise QtestError(f"sending {line[:60]!r}: {err} ({self.why_gone()})") from None
        self.requests += 1
        deadline = time.monotonic() + self.timeout
        while True:
            got = self.readline(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise QtestError(
                    f"no qtest reply to {line[:60]!r} within {self.timeout:.0f} s "
                    f"({self.why_gone()})"
                )
            if is_async(got):
                self.irq_events.append(parse_irq(got, time.monotonic()))
                continue
            reply = parse_reply(got)
            if not reply.ok:
                raise QtestError(f"qtest {line[:60]!r} failed: {reply.line}")
            return reply.words

    def poll(self, timeout: float = 0.0) -> None:
        """Collect IRQ messages that arrive within `timeout` (none is pending a reply)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.readline(max(0.0, deadline - time.monotonic()))
            if got is None:
                return
            if not is_async(got):
                raise QtestError(f"unexpected qtest line with no request pending: {got!r}")
            self.irq_events.append(parse_irq(got, time.monotonic()))

    def _value(self, words: tuple[str, ...], request: str) -> int:
        if len(words) != 1:
            raise QtestError(f"qtest {request} answered {words!r}, not one value")
        return parse_number(words[0], request)

    # -- port I/O ----------------------------------------------------------------------

    def out(self, width: str, port: int, value: int) -> None:
        check_value(port, 16, "port")
        check_value(value, _WIDTH_BITS[width], "value")
        self.request(f"out{width}", hex(port), hex(value))

    def in_(self, width: str, port: int) -> int:
        check_value(port, 16, "port")
        return self._value(self.request(f"in{width}", hex(port)), f"in{width} {port:#x}")

    def outl(self, port: int, value: int) -> None:
        self.out("l", port, value)

    def inl(self, port: int) -> int:
        return self.in_("l", port)

    # -- memory (the first CPU's address space: RAM and MMIO) --------------------------

    def write_int(self, width: str, address: int, value: int) -> None:
        check_value(address, 64, "address")
        check_value(value, _WIDTH_BITS[width], "value")
        self.request(f"write{width}", hex(address), hex(value))

    def read_int(self, width: str, address: int) -> int:
        check_value(address, 64, "address")
        return self._value(self.request(f"read{width}", hex(address)), f"read{width}")

    def writel(self, address: int, value: int) -> None:
        self.write_int("l", address, value)

    def readl(self, address: int) -> int:
        return self.read_int("l", address)

    def read(self, address: int, size: int) -> bytes:
        check_value(address, 64, "address")
        if size <= 0:
            raise ValueError("qtest read needs a size > 0 (QEMU asserts on 0)")
        words = self.request("read", hex(address), hex(size))
        if len(words) != 1:
            raise QtestError(f"qtest read answered {words!r}")
        return decode_data(words[0], size)

    def write(self, address: int, data: bytes) -> None:
        check_value(address, 64, "address")
        for start in range(0, len(data), WRITE_CHUNK):
            chunk = data[start : start + WRITE_CHUNK]
            self.request("write", hex(address + start), hex(len(chunk)), encode_data(chunk))

    def memset(self, address: int, size: int, byte: int) -> None:
        check_value(address, 64, "address")
        check_value(byte, 8, "byte")
        self.request("memset", hex(address), hex(size), hex(byte))

    # -- interrupts --------------------------------------------------------------------

    def irq_intercept_in(self, qom_path: str) -> None:
        """Report the level changes of `qom_path`'s input lines (for a PC: "ioapic")."""
        self.request("irq_intercept_in", qom_path)

    def wait_irq(
        self, predicate: Callable[[IrqEvent], bool], since: int, timeout: float
    ) -> IrqEvent | None:
        """The first event at index >= `since` matching `predicate`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.irq_events[since:]:
                if predicate(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.poll(min(left, 0.05))

    def close(self) -> None:
        self.sock.close()
