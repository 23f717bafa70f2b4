# SPDX-License-Identifier: MIT
"""QMP `query-pci` as a flat list of functions. QEMU nests a bridge's devices under its
"pci_bridge" entry, and on q35 libvirt puts every device (ours too) behind a pcie-root-port,
so the functions are only found by following the bridges down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PciFunction:
    bus: int
    slot: int
    function: int
    vendor: int
    device: int
    qdev_id: str
    bar_sizes: Mapping[int, int]  # BAR index -> bytes (memory and I/O)
    bridges: tuple[str, ...]  # qdev ids of the bridges above it, outermost first

    def __str__(self) -> str:
        where = " behind " + "/".join(self.bridges) if self.bridges else ""
        return (
            f"{self.bus:02x}:{self.slot:02x}.{self.function} {self.vendor:04x}:{self.device:04x} "
            f"{self.qdev_id or '(no id)'}{where}"
        )


def _walk(devices: Iterable[Mapping[str, Any]], bridges: tuple[str, ...]) -> list[PciFunction]:
    found = []
    for entry in devices:
        ids = entry.get("id", {})
        found.append(
            PciFunction(
                bus=entry["bus"],
                slot=entry["slot"],
                function=entry["function"],
                vendor=ids.get("vendor", 0xFFFF),
                device=ids.get("device", 0xFFFF),
                qdev_id=entry.get("qdev_id", ""),
                bar_sizes={r["bar"]: r["size"] for r in entry.get("regions", [])},
                bridges=bridges,
            )
        )
        below = entry.get("pci_bridge", {}).get("devices", [])
        found += _walk(below, (*bridges, entry.get("qdev_id", "")))
    return found


def functions(query_pci: Iterable[Mapping[str, Any]]) -> list[PciFunction]:
    """Every function of every root bus in a `query-pci` return value, bridges followed."""
    found = []
    for bus in query_pci:
        found += _walk(bus.get("devices", []), ())
    return found


def matching(query_pci: Iterable[Mapping[str, Any]], vendor: int, device: int) -> list[PciFunction]:
    return [f for f in functions(query_pci) if (f.vendor, f.device) == (vendor, device)]
