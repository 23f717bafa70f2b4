# SPDX-License-Identifier: MIT
"""Runs the fuzzer's programs (harness.fuzz.program) against one mdev type, in the guest.

    with Executor(mdev_type) as ex:
        profile = ex.profile()                   # what the generator needs to know
        results = ex.run(program)                # ["ok", "EINVAL", "skip", ...], one per op
        ex.run(program, each=trace)              # each op inside trace(): KCOV per op

Every program starts from the same state: one device of the type, closed, nothing mapped;
`run` puts that state back afterwards (closing, unmapping and removing what the program left).
An op's result is "ok", the errno's name the kernel answered, "skip" when it does not apply in
the program's state (a region access with no device open), or "short N" for a partial
transfer. Anything else a wrapper raises is the executor's own bug and propagates.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import random
import struct
import uuid
from collections.abc import Callable
from typing import Any

from harness.fuzz.program import IRQ_ACTION, IRQ_DATA, PAGE, Op, Program
from harness.mdev.choice import DeviceRequest, choose_device
from harness.mdev.errors import MdevError
from harness.mdev.sysfs import MdevDevice, MdevSysfs, MdevType
from harness.refdev import contract
from harness.refdev import registers as r
from harness.uapi.dma import DmaBuffer
from harness.uapi.errors import CapabilityChainError, errno_name
from harness.uapi.irq import EventFd
from harness.uapi.migration import Migration, MigrationDataFd
from harness.uapi.open_device import OpenDevice, open_iommufd, open_type1
from harness.uapi.raw import vfio as v

CONTAINER = "/dev/vfio/vfio"
IOMMUFD = "/dev/iommu"
REGION_SHIFT = 40  # where a region an index names no info for is looked for (vfio-pci's)
MAX_STREAM = 1 << 22  # migration bytes a program keeps for writing back
Trace = Callable[[], contextlib.AbstractContextManager[Any]]


def chosen_type() -> MdevType:
    """The type HARNESS_MDEV_TYPE/_PARENT name (harness.mdev.choice), our small type by
    default; DeviceChoiceError, saying what there is, when it is not there."""
    default = DeviceRequest(contract.SMALL.type_id, contract.PARENT_NAME)
    return choose_device(MdevSysfs(), DeviceRequest.from_env(), default).mdev_type


def available_modes() -> tuple[str, ...]:
    return tuple(
        mode for mode, node in (("type1", CONTAINER), ("iommufd", IOMMUFD)) if os.path.exists(node)
    )


class SkipOpError(Exception):
    """The op does not apply in the program's state."""


class Executor:
    def __init__(self, mdev_type: MdevType) -> None:
        self.mdev_type = mdev_type
        self.main: MdevDevice | None = None
        self.extra: list[MdevDevice] = []
        self.opened: OpenDevice | None = None
        self.regions: dict[int, tuple[int, int]] = {}  # index -> (offset, size)
        self.buffers: dict[int, tuple[DmaBuffer, int]] = {}  # slot -> (buffer, iova)
        self.mmaps: dict[int, mmap.mmap] = {}
        self.eventfds: list[EventFd] = []
        self.data_fd: MigrationDataFd | None = None
        self.stream = b""

    def __enter__(self) -> Executor:
        self.main = self.mdev_type.create(uuid.uuid4())
        return self

    def __exit__(self, *_exc: object) -> None:
        self.clean()
        if self.main is not None:
            self._remove(self.main)
            self.main = None

    def renew(self) -> None:
        """A new device under test: a program then runs as on a device nothing used before."""
        self.clean()
        if self.main is not None:
            self._remove(self.main)
        self.main = self.mdev_type.create(uuid.uuid4())

    # -- the device's profile -------------------------------------------------------------------

    def profile(self) -> dict[str, Any]:
        """What harness.fuzz.program.Profile holds, read from the device opened once."""
        mode = available_modes()[0]
        self._open(mode)
        try:
            assert self.opened is not None
            device = self.opened.device
            info = device.info()
            regions = []
            for index in range(info.num_regions):
                try:
                    region = device.region_info(index)
                except (OSError, ValueError):  # ValueError: a malformed capability chain
                    continue
                if region.size:
                    areas = [[a.offset, a.size] for a in region.mmap_areas()]
                    regions.append(
                        {
                            "index": index,
                            "size": region.size,
                            "flags": region.flags,
                            "mmap_areas": areas,
                        }
                    )
            irqs = []
            for index in range(info.num_irqs):
                with contextlib.suppress(OSError):
                    count = device.irq_info(index).count
                    if count:
                        irqs.append([index, count])
            try:
                migration = Migration(device).flags()
            except OSError:
                migration = 0
            refdev = False
            mem_size = 0
            with contextlib.suppress(OSError):
                bar0 = device.region(v.VFIO_PCI_BAR0_REGION_INDEX)
                refdev = bar0.read_int(r.REG_ID, 4) == r.ID_VALUE
                if refdev:
                    mem_size = bar0.read_int(r.REG_MEM_SIZE, 4)
        finally:
            self.clean()
        return {
            "regions": regions,
            "num_regions": info.num_regions,
            "irqs": irqs,
            "num_irqs": info.num_irqs,
            "migration": migration,
            "modes": available_modes(),
            "refdev": refdev,
            "mem_size": mem_size,
        }

    # -- programs -------------------------------------------------------------------------------

    def run(self, program: Program, each: Trace | None = None) -> list[str]:
        results = []
        try:
            for op in program:
                with each() if each is not None else contextlib.nullcontext():
                    results.append(self.step(op))
        finally:
            self.clean()
        return results

    def step(self, op: Op) -> str:
        handler = getattr(self, f"_do_{op['op']}", None)
        if handler is None:
            raise ValueError(f"unknown fuzz op {op['op']!r}")
        try:
            outcome = handler(op)
        except SkipOpError:
            return "skip"
        except MdevError as err:
            return errno_name(err.errno) if err.errno else "mdev-error"
        except OSError as err:
            return errno_name(err.errno or 0)
        except CapabilityChainError as err:  # the driver's answer is malformed
            return f"bad capability chain: {err}"
        except (ValueError, OverflowError):  # Python refused the arguments before the kernel
            return "refused"
        return outcome or "ok"

    def clean(self) -> None:
        """Back to one closed device, nothing mapped: what every program starts from."""
        self._close()
        self.stream = b""
        for fd in self.eventfds:
            fd.close()
        self.eventfds.clear()
        while self.extra:
            self._remove(self.extra.pop())
        if self.main is None or not self.main.exists:
            self.main = self.mdev_type.create(uuid.uuid4())

    # -- sysfs ----------------------------------------------------------------------------------

    def _do_create(self, _op: Op) -> None:
        self.extra.append(self.mdev_type.create(uuid.uuid4()))

    def _do_remove(self, _op: Op) -> None:
        """Remove the newest extra device, or the one under test (closed first: removing an
        open device waits for its release)."""
        if self.extra:
            self._remove(self.extra.pop())
            return
        self._close()
        if self.main is None:
            raise SkipOpError
        device, self.main = self.main, None
        device.remove()

    # -- open and close -------------------------------------------------------------------------

    def _do_open(self, op: Op) -> None:
        self._close()
        if self.main is None:
            raise SkipOpError
        self._open(op["mode"])

    def _do_close(self, _op: Op) -> None:
        if self.opened is None:
            raise SkipOpError
        self._close()

    def _open(self, mode: str) -> None:
        assert self.main is not None
        if mode == "iommufd":
            cdev = self.main.vfio_cdev
            if cdev is None or not os.path.exists(IOMMUFD):
                raise SkipOpError
            self.opened = open_iommufd(str(cdev))
        else:
            group = self.main.iommu_group
            if group is None or not os.path.exists(CONTAINER):
                raise SkipOpError
            self.opened = open_type1(group, self.main.uuid)
        self.regions = {}

    def _close(self) -> None:
        for view in self.mmaps.values():
            with contextlib.suppress(BufferError, OSError):
                view.close()
        self.mmaps.clear()
        self._close_data_fd()
        if self.opened is not None:
            opened, self.opened = self.opened, None
            opened.close()
        for buffer, _iova in self.buffers.values():
            buffer.close()
        self.buffers.clear()

    def _device(self) -> OpenDevice:
        if self.opened is None:
            raise SkipOpError
        return self.opened

    # -- info -----------------------------------------------------------------------------------

    def _do_device_info(self, _op: Op) -> None:
        self._device().device.info()

    def _do_region_info(self, op: Op) -> None:
        self._device().device.region_info(op["index"])

    def _do_irq_info(self, op: Op) -> None:
        self._device().device.irq_info(op["index"])

    # -- regions --------------------------------------------------------------------------------

    def _region_offset(self, index: int) -> int:
        if index not in self.regions:
            try:
                info = self._device().device.region_info(index)
                self.regions[index] = (info.offset, info.size)
            except OSError:
                self.regions[index] = ((index & 0xFFFF) << REGION_SHIFT, 0)
        return self.regions[index][0]

    def _do_region_read(self, op: Op) -> str | None:
        fd = self._device().device.fd
        data = os.pread(fd, op["width"], self._region_offset(op["index"]) + op["offset"])
        return None if len(data) == op["width"] else f"short {len(data)}"

    def _do_region_write(self, op: Op) -> str | None:
        fd = self._device().device.fd
        width = op["width"]
        data = (op["value"] & ((1 << (8 * min(width, 8))) - 1)).to_bytes(min(width, 8), "little")
        data = (data * (width // len(data) + 1))[:width]
        moved = os.pwrite(fd, data, self._region_offset(op["index"]) + op["offset"])
        return None if moved == width else f"short {moved}"

    def _do_mmap(self, op: Op) -> None:
        fd = self._device().device.fd
        self._drop_mmap(op["slot"])
        self.mmaps[op["slot"]] = mmap.mmap(
            fd,
            op["length"],
            flags=mmap.MAP_SHARED,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
            offset=self._region_offset(op["index"]) + op["offset"],
        )

    def _do_touch(self, op: Op) -> None:
        view = self.mmaps.get(op["slot"])
        if view is None or op["offset"] + 4 > len(view):
            raise SkipOpError
        if op["write"]:
            struct.pack_into("<I", view, op["offset"], op["value"] & 0xFFFFFFFF)
        else:
            struct.unpack_from("<I", view, op["offset"])

    def _do_munmap(self, op: Op) -> None:
        if op["slot"] not in self.mmaps:
            raise SkipOpError
        self._drop_mmap(op["slot"])

    def _drop_mmap(self, slot: int) -> None:
        view = self.mmaps.pop(slot, None)
        if view is not None:
            view.close()

    # -- interrupts -----------------------------------------------------------------------------

    def _do_set_irqs(self, op: Op) -> None:
        device = self._device().device
        flags = IRQ_DATA[op["data"]] | IRQ_ACTION[op["action"]]
        values = op["values"]
        if op["data"] == "bool":
            payload = bytes(1 if value else 0 for value in values)
        elif op["data"] == "eventfd":
            fds = []
            for value in values:
                if value:
                    self.eventfds.append(EventFd())
                    fds.append(self.eventfds[-1].fd)
                else:
                    fds.append(-1)
            payload = struct.pack(f"<{len(fds)}i", *fds)
        else:
            payload = b""
        device.set_irqs(op["index"], op["start"], op["count"], flags, payload)

    # -- DMA ------------------------------------------------------------------------------------

    def _do_map(self, op: Op) -> None:
        opened = self._device()
        slot = op["slot"]
        self._unmap_slot(slot)
        buffer = DmaBuffer(op["pages"] * PAGE)
        try:
            opened.dma.map_buffer(op["iova"], buffer)
        except BaseException:
            buffer.close()
            raise
        buffer.fill(slot.to_bytes(1, "little") * 16)
        self.buffers[slot] = (buffer, op["iova"])

    def _do_unmap(self, op: Op) -> None:
        opened = self._device()
        held = self.buffers.get(op["slot"])
        if held is None:
            raise SkipOpError
        buffer, iova = held
        if op["whole"]:
            opened.dma.unmap(iova, buffer.size)
            self.buffers.pop(op["slot"])
            buffer.close()
        else:  # a part: what is left stays mapped over the buffer, which must outlive it
            opened.dma.unmap(iova + op["offset"], op["length"])

    def _do_unmap_all(self, _op: Op) -> None:
        self._device().dma.unmap_all()
        for buffer, _iova in self.buffers.values():
            buffer.close()
        self.buffers.clear()

    def _unmap_slot(self, slot: int) -> None:
        held = self.buffers.pop(slot, None)
        if held is None:
            return
        buffer, iova = held
        with contextlib.suppress(OSError):
            self._device().dma.unmap(iova, buffer.size)
        buffer.close()

    def _do_dma(self, op: Op) -> str:
        """Our device's DMA engine (BAR0's registers, the copy runs in the DMA_CMD write);
        the result is DMA_ERROR's errno when the device refused the copy."""
        bar0 = self._region_offset(v.VFIO_PCI_BAR0_REGION_INDEX)
        fd = self._device().device.fd
        direction = op["direction"]
        src = self._iova(op["src_slot"], op["src_page"])
        dst = self._iova(op["dst_slot"], op["dst_page"])
        if direction == r.DMA_FROM_DEVICE:
            src = op["mem_offset"]
        elif direction == r.DMA_TO_DEVICE:
            dst = op["mem_offset"]
        command = direction | op["method"] | (r.DMA_KEEP_PINNED if op["keep"] else 0)
        for offset, value, width in (
            (r.REG_DMA_SRC, src, 8),
            (r.REG_DMA_DST, dst, 8),
            (r.REG_DMA_LEN, op["length"], 4),
            (r.REG_DMA_CMD, command, 4),
        ):
            data = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
            os.pwrite(fd, data, bar0 + offset)
        error = int.from_bytes(os.pread(fd, 4, bar0 + r.REG_DMA_ERROR), "little")
        return errno_name(error) if error else "ok"

    def _iova(self, slot: int, page: int) -> int:
        held = self.buffers.get(slot)
        if held is None:
            return (slot + 1) << 30  # nothing mapped there: the device must refuse it
        return held[1] + page * PAGE

    # -- reset and migration --------------------------------------------------------------------

    def _do_reset(self, _op: Op) -> None:
        self._device().device.reset()

    def _do_mig_set(self, op: Op) -> None:
        """A new data fd replaces the old; an arc that gives none (PRE_COPY -> STOP_COPY) keeps
        the old one, which then streams the rest, as vfio.h says."""
        data_fd = Migration(self._device().device).set_state(op["state"])
        if data_fd is not None:
            self._close_data_fd()
            os.set_blocking(data_fd.fd, False)  # a driver that would block must not hang us
            self.data_fd = data_fd

    def _do_mig_read(self, op: Op) -> str | None:
        if self.data_fd is None:
            raise SkipOpError
        data = os.read(self.data_fd.fd, op["size"])
        if op["keep"]:
            self.stream = (self.stream + data)[:MAX_STREAM]
        return None if data else "eof"

    def _do_mig_write(self, op: Op) -> str | None:
        if self.data_fd is None:
            raise SkipOpError
        data = bytearray(self.stream or random.Random(op["random"]).randbytes(op["random"]))
        for position, mask in op["flips"]:
            if data:
                data[position % len(data)] ^= mask
        if op["truncate"] is not None:
            data = data[: op["truncate"]]
        if not data:
            raise SkipOpError
        written = os.write(self.data_fd.fd, bytes(data))
        return None if written == len(data) else f"short {written}"

    def _do_precopy_info(self, _op: Op) -> None:
        if self.data_fd is None:
            raise SkipOpError
        self.data_fd.precopy_info()

    def _do_data_size(self, _op: Op) -> None:
        Migration(self._device().device).data_size()

    def _close_data_fd(self) -> None:
        if self.data_fd is not None:
            self.data_fd.close()
            self.data_fd = None

    def _remove(self, device: MdevDevice) -> None:
        gc.collect()  # a leaked wrapper's fd would make the removal wait
        with contextlib.suppress(MdevError, OSError):
            device.remove(missing_ok=True)


__all__ = ["Executor", "SkipOpError", "available_modes", "chosen_type"]
