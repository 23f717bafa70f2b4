# SPDX-License-Identifier: MIT
"""Before the suite: is the device asked for there, and what does its driver offer? Runs where
the device is (in a guest: `python3 -m harness.plugin.device_check`, with the suite's
HARNESS_MDEV_* contract; with --target local: in-process). Standard library and the
guest-safe layers only.

It chooses the device (harness.mdev.choice: fails closed, lists what the host offers), creates
one if none was named by UUID, opens it, reads its profile (harness.uapi.profile) and removes
it again. The result is one JSON object: {"error": "..."} or {"type", "parent", "driver",
"profile"}.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

from harness.mdev import MdevSysfs
from harness.mdev.choice import DeviceChoiceError, DeviceRequest, choose_device
from harness.refdev import contract
from harness.uapi import open_iommufd, open_type1
from harness.uapi.errors import VfioError
from harness.uapi.profile import DeviceProfile

OUR_DEVICE = DeviceRequest(contract.SMALL.type_id, contract.PARENT_NAME)
CONTAINER = "/dev/vfio/vfio"


def check_device(request: DeviceRequest, sysfs: MdevSysfs | None = None) -> dict[str, Any]:
    sysfs = sysfs or MdevSysfs()
    try:
        chosen = choose_device(sysfs, request, OUR_DEVICE)
    except DeviceChoiceError as exc:
        return {"error": str(exc)}
    mdev_type = chosen.mdev_type
    device = chosen.existing or mdev_type.create()
    try:
        profile = _profile(device, mdev_type.device_api)
        driver = device.driver
    except (OSError, VfioError) as exc:
        return {"error": f"mdev {device.uuid} of type {mdev_type.type_id} does not open: {exc}"}
    finally:
        if chosen.existing is None:
            gc.collect()  # no wrapper may hold the device's fd while it is removed
            device.remove(missing_ok=True)
    return {
        "type": mdev_type.type_id,
        "parent": mdev_type.parent_name,
        "driver": driver,
        "profile": profile.as_dict(),
    }


def _profile(device: Any, device_api: str) -> DeviceProfile:
    if os.path.exists(CONTAINER):
        opened = open_type1(device.iommu_group, device.uuid)
    else:
        cdev = device.vfio_cdev
        if cdev is None:
            raise OSError(f"mdev {device.uuid} has neither an IOMMU group container nor a cdev")
        opened = open_iommufd(str(cdev))
    with opened:
        return DeviceProfile.read(opened.device, device_api)


def main() -> int:
    result = check_device(DeviceRequest.from_env())
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 2


if __name__ == "__main__":
    sys.exit(main())
