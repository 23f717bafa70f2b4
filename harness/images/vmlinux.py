# SPDX-License-Identifier: MIT
"""Extract the uncompressed ELF `vmlinux` from a compressed x86 kernel image (`vmlinuz`).

QEMU boots an uncompressed vmlinux through its PVH entry point, which saves the guest the
decompression (seconds under TCG). A bzImage holds the compressed kernel as one stream; its
setup header says where (payload_offset/payload_length). Without a usable header, the file is
scanned for the XZ, zstd and gzip magic numbers and each candidate is tried in turn.
"""

from __future__ import annotations

import lzma
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_EM_X86_64 = 62

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b\x08"
_MAGICS = {"xz": XZ_MAGIC, "zstd": ZSTD_MAGIC, "gzip": GZIP_MAGIC}

# x86 boot protocol: "HdrS" at 0x202, setup_sects at 0x1f1, payload fields at 0x248.
_HDRS_OFFSET = 0x202
_SETUP_SECTS_OFFSET = 0x1F1
_PAYLOAD_OFFSET = 0x248


class KernelExtractError(RuntimeError):
    """No compressed stream in the file decompressed to an x86_64 ELF kernel."""


def extract_vmlinux(vmlinuz: Path, dest: Path) -> str:
    """Write the ELF kernel inside `vmlinuz` to `dest`; return the compression used."""
    data = vmlinuz.read_bytes()
    tried: list[str] = []
    for fmt, start, end in candidate_streams(data):
        try:
            payload = decompress(fmt, data[start:end])
        except (lzma.LZMAError, OSError, EOFError, zlib.error, ValueError) as err:
            tried.append(f"{fmt} at {start:#x}: {err}")
            continue
        problem = elf_problem(payload)
        if problem is None:
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.write_bytes(payload)
            tmp.replace(dest)
            return fmt
        tried.append(f"{fmt} at {start:#x}: {problem}")
    detail = "\n".join(f"  - {t}" for t in tried[:10]) or "  - no XZ, zstd or gzip stream found"
    raise KernelExtractError(
        f"no x86_64 ELF kernel found in {vmlinuz}:\n{detail}\n"
        "Is this an x86 bzImage compressed with XZ, zstd or gzip? Boot the vmlinuz itself "
        "(slower under TCG) if it uses another compression."
    )


def candidate_streams(data: bytes) -> Iterator[tuple[str, int, int | None]]:
    """(format, start, end-or-None), the setup header's payload first, then magic scans."""
    payload = bzimage_payload(data)
    if payload is not None:
        start, end = payload
        for fmt, magic in _MAGICS.items():
            if data.startswith(magic, start):
                yield fmt, start, end
    for fmt, magic in _MAGICS.items():
        position = data.find(magic)
        while position >= 0:
            if payload is None or position != payload[0]:
                yield fmt, position, None
            position = data.find(magic, position + 1)


def bzimage_payload(data: bytes) -> tuple[int, int] | None:
    """(start, end) of the compressed kernel per the boot protocol header, if it has one."""
    if len(data) < _PAYLOAD_OFFSET + 8 or data[_HDRS_OFFSET : _HDRS_OFFSET + 4] != b"HdrS":
        return None
    setup_sects = data[_SETUP_SECTS_OFFSET] or 4
    offset, length = struct.unpack_from("<II", data, _PAYLOAD_OFFSET)
    start = (setup_sects + 1) * 512 + offset
    end = start + length
    if length == 0 or end > len(data):
        return None
    return start, end


def decompress(fmt: str, stream: bytes) -> bytes:
    """Decompress one stream; data after the stream's end is ignored."""
    if fmt == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(stream)
    if fmt == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(stream)
    if fmt == "zstd":
        return _zstd_decompress(stream[: zstd_frame_length(stream)])
    raise ValueError(f"unknown compression {fmt!r}")


def zstd_frame_length(stream: bytes) -> int:
    """The length of the zstd frame at the start of `stream` (walks its block headers).

    The kernel appends the uncompressed size after the frame, and the zstd tool refuses
    trailing bytes, so the frame is cut out exactly.
    """
    if not stream.startswith(ZSTD_MAGIC) or len(stream) < 6:
        raise ValueError("not a zstd frame")
    descriptor = stream[4]
    single_segment = bool(descriptor & 0x20)
    has_checksum = bool(descriptor & 0x04)
    dict_id_size = (0, 1, 2, 4)[descriptor & 0x03]
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    position = 5 + (0 if single_segment else 1) + dict_id_size + fcs_size
    while True:
        if position + 3 > len(stream):
            raise ValueError("truncated zstd frame")
        header = int.from_bytes(stream[position : position + 3], "little")
        position += 3
        block_type = (header >> 1) & 0x03
        block_size = header >> 3
        if block_type == 3:
            raise ValueError("reserved zstd block type")
        position += 1 if block_type == 1 else block_size
        if header & 1:
            break
    position += 4 if has_checksum else 0
    if position > len(stream):
        raise ValueError("truncated zstd frame")
    return position


def _zstd_decompress(frame: bytes) -> bytes:
    try:
        result = subprocess.run(
            ["zstd", "-d", "-c", "-q"], input=frame, capture_output=True, check=False
        )
    except FileNotFoundError as err:
        raise OSError("zstd not found: install the zstd package (vfio-harness setup)") from err
    if result.returncode != 0:
        raise OSError(f"zstd -d failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def elf_problem(payload: bytes) -> str | None:
    """None for an x86_64 ELF image, else what is wrong with it."""
    if not payload.startswith(ELF_MAGIC):
        return "decompressed data is not ELF"
    if len(payload) < 20 or payload[4] != _ELFCLASS64:
        return "ELF is not 64-bit"
    (machine,) = struct.unpack_from("<H", payload, 18)
    if machine != _EM_X86_64:
        return f"ELF machine is {machine}, not x86_64"
    return None


__all__ = [
    "KernelExtractError",
    "bzimage_payload",
    "candidate_streams",
    "decompress",
    "elf_problem",
    "extract_vmlinux",
    "zstd_frame_length",
]
