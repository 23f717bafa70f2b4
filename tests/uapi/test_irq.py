# SPDX-License-Identifier: MIT
"""Interrupts: eventfd delivery, loopback triggers, disable, INTx mask/unmask, MSI, ERR, REQ on
removal while open, and invalid index/start/count/flags/data (EINVAL)."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator

import pytest

from harness.mdev import MdevDevice
from harness.refdev import Direction, RefDevice
from harness.refdev import pci_config as pci
from harness.refdev import registers as r
from harness.uapi import DmaBuffer, EventFd, IommuMode, IrqIndex, Migration, MigState, OpenDevice
from harness.uapi.errors import errno_name
from harness.uapi.irq import IrqInfo, eventfd_payload
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.concurrent import Removal
from tests.uapi.util import raises_errno

INDEXES = {
    "intx": v.VFIO_PCI_INTX_IRQ_INDEX,
    "msi": v.VFIO_PCI_MSI_IRQ_INDEX,
    "msix": v.VFIO_PCI_MSIX_IRQ_INDEX,
    "err": v.VFIO_PCI_ERR_IRQ_INDEX,
    "req": v.VFIO_PCI_REQ_IRQ_INDEX,
}
TRIGGER_NONE = v.VFIO_IRQ_SET_ACTION_TRIGGER | v.VFIO_IRQ_SET_DATA_NONE
TRIGGER_BOOL = v.VFIO_IRQ_SET_ACTION_TRIGGER | v.VFIO_IRQ_SET_DATA_BOOL
TRIGGER_EVENTFD = v.VFIO_IRQ_SET_ACTION_TRIGGER | v.VFIO_IRQ_SET_DATA_EVENTFD
WAIT = 2.0  # seconds to wait for an interrupt that must come
QUIET = 0.05  # seconds to wait for one that must not
MSI_CONTROL = r.PCI_MSI_CAP_OFFSET + 2


@pytest.fixture
def eventfd() -> Iterator[EventFd]:
    with EventFd() as fd:
        yield fd


def irq_info_or_none(opened: OpenDevice, index: int) -> IrqInfo | None:
    """GET_IRQ_INFO of `index`, or None where the driver says the index is absent (EINVAL:
    vfio-pci does that for ERR on a device that is not PCI Express)."""
    try:
        return opened.device.irq_info(index)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return None


def irq_with_vectors(opened: OpenDevice, name: str) -> IrqIndex:
    if not opened.device.info().is_pci:
        pytest.skip("not a vfio-pci device: IRQ indexes are not the PCI ones")
    index = INDEXES[name]
    info = irq_info_or_none(opened, index) if index < opened.device.info().num_irqs else None
    util.require(name, bool(info and info.count), f"the device has no {name} vector")
    irq = opened.device.irq(index)
    if not irq.info.eventfd:
        pytest.skip(f"{name} does not signal through an eventfd")
    return irq


def first_irq(opened: OpenDevice) -> IrqIndex:
    for index in range(opened.device.info().num_irqs):
        info = irq_info_or_none(opened, index)
        if info is not None and info.count and info.eventfd:
            return opened.device.irq(index)
    pytest.skip("the device has no interrupt with an eventfd")


def fire_undelivered(irq: IrqIndex) -> None:
    """A loopback trigger with no eventfd attached: vfio-pci refuses it (EINVAL); a driver
    may also accept and drop it. Either way nothing may be signalled (checked by the caller)."""
    try:
        irq.fire()
    except OSError as exc:
        assert exc.errno == errno.EINVAL, (
            f"a trigger with no eventfd attached failed with {errno_name(exc.errno or 0)}: "
            "expected success (dropped) or EINVAL"
        )


# -- any device: eventfds, loopback, disable ---------------------------------------------------


@pytest.mark.parametrize("name", INDEXES)
def test_loopback_trigger(opened: OpenDevice, eventfd: EventFd, name: str) -> None:
    irq = irq_with_vectors(opened, name)
    irq.attach_eventfds([eventfd.fd])
    irq.fire()
    assert eventfd.wait(WAIT) == 1, "a DATA_NONE trigger did not signal the eventfd"
    irq.fire_bool([True])
    assert eventfd.wait(WAIT) == 1, "a DATA_BOOL true trigger did not signal the eventfd"
    irq.fire_bool([False])
    assert eventfd.wait(QUIET) == 0, "a DATA_BOOL false trigger signalled"
    irq.disable()
    fire_undelivered(irq)
    assert eventfd.wait(QUIET) == 0, "signalled after the eventfd was detached"


@pytest.mark.parametrize("name", INDEXES)
def test_detach_with_fd_minus_one(opened: OpenDevice, eventfd: EventFd, name: str) -> None:
    irq = irq_with_vectors(opened, name)
    irq.attach_eventfds([eventfd.fd])
    irq.fire()
    assert eventfd.wait(WAIT) == 1, "no signal while attached (the positive control)"
    irq.attach_eventfds([-1])
    fire_undelivered(irq)
    assert eventfd.wait(QUIET) == 0, "signalled after the eventfd was detached with fd -1"


def test_replace_eventfd(opened: OpenDevice, eventfd: EventFd) -> None:
    irq = first_irq(opened)
    with EventFd() as other:
        irq.attach_eventfds([eventfd.fd])
        irq.attach_eventfds([other.fd])
        irq.fire()
        assert other.wait(WAIT) == 1, "the new eventfd was not signalled"
        assert eventfd.wait(QUIET) == 0, "the replaced eventfd was still signalled"


@pytest.mark.parametrize(("start", "count"), [(1, 1), (0, 2)], ids=["start_past", "count_past"])
@pytest.mark.parametrize("action", ["mask", "unmask"])
def test_intx_mask_outside_its_one_vector(
    opened: OpenDevice, eventfd: EventFd, action: str, start: int, count: int
) -> None:
    """INTx has one vector: MASK/UNMASK of vector 0 is accepted (the positive control), of
    anything past it refused (the semantics are tested on our device)."""
    irq = irq_with_vectors(opened, "intx")
    if not irq.info.maskable:
        pytest.skip("INTx is not maskable on this device")
    flag = v.VFIO_IRQ_SET_ACTION_MASK if action == "mask" else v.VFIO_IRQ_SET_ACTION_UNMASK
    irq.attach_eventfds([eventfd.fd])
    irq.device.set_irqs(irq.info.index, 0, 1, flag | v.VFIO_IRQ_SET_DATA_NONE)
    with raises_errno(errno.EINVAL):
        irq.device.set_irqs(irq.info.index, start, count, flag | v.VFIO_IRQ_SET_DATA_NONE)


# -- any device: bad SET_IRQS ------------------------------------------------------------------


def test_set_irqs_index_out_of_range(opened: OpenDevice) -> None:
    num_irqs = opened.device.info().num_irqs
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(num_irqs, 0, 0, TRIGGER_NONE)


def test_set_irqs_index_without_vectors(opened: OpenDevice) -> None:
    """Every index that has no vector (count 0, or absent) refuses SET_IRQS with EINVAL."""
    failures = util.Failures()
    for index in range(opened.device.info().num_irqs):
        info = irq_info_or_none(opened, index)
        if info is None or not info.count:
            with failures.check(f"index {index}"), raises_errno(errno.EINVAL):
                opened.device.set_irqs(index, 0, 1, TRIGGER_NONE)
    failures.verify("every IRQ index has vectors")


@pytest.mark.parametrize(("start", "extra"), [(1, 0), (0, 1)], ids=["start_past", "count_past"])
@pytest.mark.parametrize("name", INDEXES)
def test_set_irqs_beyond_vectors(opened: OpenDevice, name: str, start: int, extra: int) -> None:
    irq = irq_with_vectors(opened, name)
    count = irq.info.count - start + extra
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(
            irq.info.index, irq.info.count if start else 0, max(count, 1), TRIGGER_NONE
        )


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(
            v.VFIO_IRQ_SET_ACTION_TRIGGER | v.VFIO_IRQ_SET_DATA_NONE | v.VFIO_IRQ_SET_DATA_BOOL,
            id="two_data_types",
        ),
        pytest.param(v.VFIO_IRQ_SET_ACTION_TRIGGER | 1 << 10, id="unknown_flag"),
        pytest.param(v.VFIO_IRQ_SET_ACTION_TRIGGER, id="no_data_type"),
    ],
)
def test_set_irqs_bad_flags(opened: OpenDevice, flags: int) -> None:
    irq = first_irq(opened)
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(irq.info.index, 0, 1, flags, bytes(4))


@pytest.mark.parametrize(
    ("flags", "size"), [(TRIGGER_EVENTFD, 4), (TRIGGER_BOOL, 1)], ids=["eventfd", "bool"]
)
def test_set_irqs_short_data(opened: OpenDevice, flags: int, size: int) -> None:
    irq = first_irq(opened)
    data = bytes(size * irq.info.count)
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(
            irq.info.index, 0, irq.info.count, flags, data, argsz=20 + len(data) - 1
        )


def test_set_irqs_argsz_too_small(opened: OpenDevice) -> None:
    irq = first_irq(opened)
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(irq.info.index, 0, 0, TRIGGER_NONE, argsz=19)


def test_set_irqs_not_an_eventfd(opened: OpenDevice) -> None:
    irq = first_irq(opened)
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(
            irq.info.index, 0, 1, TRIGGER_EVENTFD, eventfd_payload([opened.device.fd])
        )


def test_set_irqs_closed_fd(opened: OpenDevice) -> None:
    irq = first_irq(opened)
    with raises_errno(errno.EBADF):
        opened.device.set_irqs(irq.info.index, 0, 1, TRIGGER_EVENTFD, eventfd_payload([65000]))


@pytest.mark.parametrize("flags", [TRIGGER_BOOL, TRIGGER_EVENTFD], ids=["bool", "eventfd"])
def test_count_zero_with_data(opened: OpenDevice, flags: int) -> None:
    """count 0 with a data type that needs data: EINVAL, as vfio-pci (a driver that reads the
    data anyway dereferences nothing)."""
    irq = irq_with_vectors(opened, "intx")
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(irq.info.index, 0, 0, flags)


def test_two_actions(opened: OpenDevice) -> None:
    """MASK and UNMASK at once: refused (vfio-pci: ENOTTY; the UAPI allows EINVAL too)."""
    irq = irq_with_vectors(opened, "intx")
    flags = v.VFIO_IRQ_SET_ACTION_MASK | v.VFIO_IRQ_SET_ACTION_UNMASK | v.VFIO_IRQ_SET_DATA_NONE
    with raises_errno(errno.EINVAL, errno.ENOTTY):
        opened.device.set_irqs(irq.info.index, 0, 1, flags)


# -- REQ: the device is removed while it is open ----------------------------------------------


def test_req_on_remove_while_open(
    make_mdev: Callable[[], MdevDevice], iommu_mode: IommuMode, eventfd: EventFd
) -> None:
    device = make_mdev()
    opened = util.open_device(device, iommu_mode)
    removal: Removal | None = None
    try:
        irq = irq_with_vectors(opened, "req")
        irq.attach_eventfds([eventfd.fd])
        removal = Removal(device)
        assert eventfd.wait(10.0) >= 1, "no REQ while the device was being removed"
        assert not removal.finished(0), "removal finished while the device was still open"
    finally:
        opened.close()
    if removal is not None:
        assert removal.finished(30.0), "removal still blocked 30 s after the device was closed"
        assert not device.exists


# -- the reference device: INTx, MSI, ERR semantics -------------------------------------------


@pytest.mark.refdev
def test_intx_level_automask_unmask(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    intx = opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX)
    intx.attach_eventfds([eventfd.fd])
    ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert eventfd.wait(WAIT) == 1
    assert ref.read32(r.REG_IRQ_STATUS) == r.IRQ_SOFTWARE
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert eventfd.wait(QUIET) == 0, "fired while auto-masked"
    intx.unmask()
    assert eventfd.wait(WAIT) == 1, "unmask with the line asserted must fire again"
    ref.write32(r.REG_IRQ_STATUS, r.IRQ_SOFTWARE)  # W1C: the line drops
    assert ref.read32(r.REG_IRQ_STATUS) == 0
    intx.unmask()
    assert eventfd.wait(QUIET) == 0


@pytest.mark.refdev
def test_intx_masked_by_user(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    intx = opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX)
    intx.attach_eventfds([eventfd.fd])
    intx.mask()
    ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert eventfd.wait(QUIET) == 0
    intx.unmask()
    assert eventfd.wait(WAIT) == 1


@pytest.mark.refdev
def test_intx_source_masked_in_device(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).attach_eventfds([eventfd.fd])
    ref.write32(r.REG_IRQ_MASK, 0)
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert eventfd.wait(QUIET) == 0
    ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
    assert eventfd.wait(WAIT) == 1, "unmasking an asserted source must raise the line"


@pytest.mark.refdev
def test_intx_disabled_in_command(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).attach_eventfds([eventfd.fd])
    ref.config.write_int(pci.COMMAND, 2, 0x400)  # INTx disable
    ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert eventfd.wait(QUIET) == 0


INTX_DISABLE = 0x400  # PCI_COMMAND_INTX_DISABLE


@pytest.mark.refdev
@pytest.mark.parametrize("trigger", ["attach", "unmask", "command"])
def test_a_stopped_device_signals_no_intx(
    ref: RefDevice, opened: OpenDevice, eventfd: EventFd, trigger: str
) -> None:
    """With the line asserted, attaching the eventfd, UNMASK or clearing INTx disable in the
    command register fire INTx, but not while migration has the device stopped: the
    interrupt comes when it runs again."""
    intx = opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX)
    if trigger != "attach":
        intx.attach_eventfds([eventfd.fd])
    if trigger == "unmask":
        intx.mask()
    if trigger == "command":
        ref.config.write_int(pci.COMMAND, 2, ref.config.read_int(pci.COMMAND, 2) | INTX_DISABLE)
    ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert eventfd.wait(QUIET) == 0, f"fired before the {trigger}"
    mig = Migration(opened.device)
    mig.set_state(MigState.STOP)
    if trigger == "attach":
        intx.attach_eventfds([eventfd.fd])
    elif trigger == "unmask":
        intx.unmask()
    else:
        ref.config.write_int(pci.COMMAND, 2, ref.config.read_int(pci.COMMAND, 2) & ~INTX_DISABLE)
    assert eventfd.wait(QUIET) == 0, f"a stopped device signalled INTx on {trigger}"
    mig.set_state(MigState.RUNNING)
    assert eventfd.wait(WAIT) == 1, "the asserted line must fire once the device runs again"


@pytest.mark.refdev
def test_status_interrupt_bit_follows_the_line(ref: RefDevice, opened: OpenDevice) -> None:
    """PCI_STATUS_INTERRUPT: set while INTx is asserted, INTx disable or not; never under MSI."""

    def pending() -> bool:
        return bool(ref.config.read_int(pci.STATUS, 2) & pci.STATUS_INTERRUPT)

    assert not pending()
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    assert not pending(), "set for a source masked in the device"
    ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
    assert pending(), "not set with the line asserted"
    ref.config.write_int(pci.COMMAND, 2, ref.config.read_int(pci.COMMAND, 2) | 0x400)
    assert pending(), "INTx disable must not hide the status"
    assert ref.config.read_int(pci.STATUS - 2, 4) >> 16 & pci.STATUS_INTERRUPT, "dword read"
    ref.write32(r.REG_IRQ_STATUS, r.IRQ_SOFTWARE)  # W1C: the line drops
    assert not pending()
    with EventFd() as msi_fd:
        opened.device.irq(v.VFIO_PCI_MSI_IRQ_INDEX).attach_eventfds([msi_fd.fd])
        ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
        assert not pending(), "set while MSI is enabled"


@pytest.mark.refdev
def test_intx_on_dma_done(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).attach_eventfds([eventfd.fd])
    ref.write32(r.REG_IRQ_MASK, r.IRQ_DMA_DONE)
    with DmaBuffer(4096) as buffer:
        opened.dma.map_buffer(util.IOVA, buffer)
        ref.dma(util.IOVA, 0, 64, Direction.TO_DEVICE).check()
    assert eventfd.wait(WAIT) == 1
    assert ref.read32(r.REG_IRQ_STATUS) == r.IRQ_DMA_DONE


@pytest.mark.refdev
def test_msi_enable_and_delivery(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    with EventFd() as intx_fd:
        opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).attach_eventfds([intx_fd.fd])
        msi = opened.device.irq(v.VFIO_PCI_MSI_IRQ_INDEX)
        msi.attach_eventfds([eventfd.fd])
        assert ref.config.read_int(MSI_CONTROL, 2) & 1, "SET_IRQS did not enable MSI"
        ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
        ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
        assert eventfd.wait(WAIT) == 1
        assert intx_fd.wait(QUIET) == 0, "INTx fired while MSI was enabled"
        msi.disable()
        assert not ref.config.read_int(MSI_CONTROL, 2) & 1, "MSI still enabled after disable"


@pytest.mark.refdev
def test_err_on_dma_error(ref: RefDevice, opened: OpenDevice, eventfd: EventFd) -> None:
    opened.device.irq(v.VFIO_PCI_ERR_IRQ_INDEX).attach_eventfds([eventfd.fd])
    assert ref.dma(util.IOVA, 0, 64, Direction.TO_DEVICE).failed  # nothing mapped
    assert eventfd.wait(WAIT) == 1


@pytest.mark.refdev
@pytest.mark.parametrize(
    ("action", "name"),
    [(v.VFIO_IRQ_SET_ACTION_MASK, "mask"), (v.VFIO_IRQ_SET_ACTION_UNMASK, "unmask")],
)
@pytest.mark.parametrize("index", ["msi", "err", "req"])
def test_mask_on_edge_interrupt(opened: OpenDevice, action: int, name: str, index: str) -> None:
    with raises_errno(errno.ENOTTY):  # as vfio-pci: only INTx masks
        opened.device.set_irqs(INDEXES[index], 0, 1, action | v.VFIO_IRQ_SET_DATA_NONE)


@pytest.mark.refdev
def test_unmask_by_eventfd(opened: OpenDevice, eventfd: EventFd) -> None:
    with raises_errno(errno.ENOTTY):
        opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).unmask_with_eventfd(eventfd.fd)


@pytest.mark.refdev
def test_negative_eventfd(opened: OpenDevice) -> None:
    with raises_errno(errno.EINVAL):
        opened.device.set_irqs(
            v.VFIO_PCI_INTX_IRQ_INDEX, 0, 1, TRIGGER_EVENTFD, eventfd_payload([-2])
        )
