# SPDX-License-Identifier: MIT
"""What a device offers through the VFIO UAPI, read once: its profile.

    profile = DeviceProfile.read(opened.device, device_api="vfio-pci")
    profile.capabilities()        # {"mmap", "intx", "msi", "reset", ...}
    json.dumps(profile.as_dict())

Descriptive only: no judgement here. The conformance suite cross-checks the profile
(tests/uapi/test_profile.py), and `--expect CAPS` turns a capability that is missing from it
into a failure instead of a skip (tests/uapi/util.py). The capability names are CAPABILITIES.
"""

from __future__ import annotations

import errno
from dataclasses import asdict, dataclass

from harness.uapi.device import Device
from harness.uapi.errors import VfioError
from harness.uapi.migration import Migration
from harness.uapi.raw import vfio as v
from harness.uapi.region import RegionFlags

# Capability names for --expect, with what offering each means.
CAPABILITIES = {
    "pci": "the device API is vfio-pci (VFIO_DEVICE_FLAGS_PCI)",
    "config": "a PCI config space region",
    "rw-region": "a region (other than config space) that is readable and writable",
    "mmap": "a region with an mmap-able area",
    "intx": "an INTx interrupt with at least one vector",
    "msi": "MSI with at least one vector",
    "msix": "MSI-X with at least one vector",
    "err": "the error interrupt (VFIO_PCI_ERR_IRQ_INDEX)",
    "req": "the device request interrupt (VFIO_PCI_REQ_IRQ_INDEX)",
    "reset": "VFIO_DEVICE_RESET (VFIO_DEVICE_FLAGS_RESET)",
    "migration": "VFIO migration v2 (VFIO_DEVICE_FEATURE_MIGRATION)",
    "pre-copy": "migration with VFIO_MIGRATION_PRE_COPY",
    "dirty-logging": "device DMA dirty logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_START)",
}
_IRQ_CAPABILITIES = {
    v.VFIO_PCI_INTX_IRQ_INDEX: "intx",
    v.VFIO_PCI_MSI_IRQ_INDEX: "msi",
    v.VFIO_PCI_MSIX_IRQ_INDEX: "msix",
    v.VFIO_PCI_ERR_IRQ_INDEX: "err",
    v.VFIO_PCI_REQ_IRQ_INDEX: "req",
}
DMA_LOGGING_START = v.VFIO_DEVICE_FEATURE_DMA_LOGGING_START


@dataclass(frozen=True)
class RegionProfile(RegionFlags):
    index: int
    size: int
    flags: int
    offset: int
    mmap_areas: tuple[tuple[int, int], ...]  # (offset, size) within the region
    capability_ids: tuple[int, ...]


@dataclass(frozen=True)
class IrqProfile:
    index: int
    count: int
    flags: int
    absent: bool = False  # GET_IRQ_INFO said EINVAL (vfio-pci: ERR on a conventional device)


@dataclass(frozen=True)
class DeviceProfile:
    device_api: str
    flags: int
    regions: tuple[RegionProfile, ...]
    irqs: tuple[IrqProfile, ...]
    migration_flags: int | None  # None: the device does not migrate
    dirty_logging: bool

    @classmethod
    def read(cls, device: Device, device_api: str) -> DeviceProfile:
        info = device.info()
        regions = []
        for index in range(info.num_regions):
            region = device.region_info(index)
            regions.append(
                RegionProfile(
                    index,
                    region.size,
                    region.flags,
                    region.offset,
                    tuple((a.offset, a.size) for a in region.mmap_areas()),
                    tuple(cap.id for cap in region.capabilities),
                )
            )
        irqs = []
        for index in range(info.num_irqs):
            try:
                irq = device.irq_info(index)
            except VfioError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                irqs.append(IrqProfile(index, 0, 0, absent=True))
                continue
            irqs.append(IrqProfile(index, irq.count, irq.flags))
        return cls(
            device_api,
            info.flags,
            tuple(regions),
            tuple(irqs),
            _migration_flags(device),
            _supports(device, DMA_LOGGING_START),
        )

    @property
    def is_pci(self) -> bool:
        return bool(self.flags & v.VFIO_DEVICE_FLAGS_PCI)

    def capabilities(self) -> set[str]:
        found = set()
        if self.is_pci:
            found.add("pci")
        config = v.VFIO_PCI_CONFIG_REGION_INDEX if self.is_pci else None
        for region in self.regions:
            if region.size and region.index == config:
                found.add("config")
            elif region.size and region.readable and region.writable:
                found.add("rw-region")
            if region.mmap_areas:
                found.add("mmap")
        for irq in self.irqs:
            name = _IRQ_CAPABILITIES.get(irq.index) if self.is_pci else None
            if name and irq.count:
                found.add(name)
        if self.flags & v.VFIO_DEVICE_FLAGS_RESET:
            found.add("reset")
        if self.migration_flags is not None:
            found.add("migration")
            if self.migration_flags & v.VFIO_MIGRATION_PRE_COPY:
                found.add("pre-copy")
        if self.dirty_logging:
            found.add("dirty-logging")
        return found

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["capabilities"] = sorted(self.capabilities())
        return data


def _migration_flags(device: Device) -> int | None:
    try:
        return Migration(device).flags()
    except VfioError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise


def _supports(device: Device, feature: int) -> bool:
    try:
        device.probe_feature(feature, set=True)
    except VfioError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            return False
        raise
    return True
