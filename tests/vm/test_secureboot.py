# SPDX-License-Identifier: MIT
"""Secure Boot guests of each Debian kernel (--firmware secureboot): the firmware, shim and the
kernel agree that Secure Boot is on, the kernel is locked down, and it loads our module only
when it is signed with a key enrolled in shim's MokList. An unsigned module and one signed with
a key nobody enrolled are refused, with the errno and the kernel's line that each kernel gives.
"""

from __future__ import annotations

import errno
import os
import shlex
from pathlib import Path

import pytest

from harness.firmware import Firmware
from harness.kmod.build_env import build_env_for
from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.kmod.signing import identity_in, sign_module, signing_identity
from harness.refdev import contract
from harness.vm.machine import Vm
from harness.vm.saved_state import start_vm
from tests.vm.test_refdev import image_for

pytestmark = pytest.mark.vm

KERNELS = ["bookworm", "trixie", "sid"]
# Each refusal's errno (insmod prints its strerror) and the kernel's log line, per kernel:
# measured on 6.1, 6.12 and 7.2, the same on all three. Lockdown turns the module.sig_enforce
# check on; Debian's kernels then trust keys in shim's MokList (the platform keyring).
_SAME_ON_EVERY_KERNEL = {
    "unsigned": (errno.EKEYREJECTED, "Loading of unsigned module is rejected"),
    "unenrolled": (errno.EKEYREJECTED, "Loading of module with unavailable key is rejected"),
}
REFUSED: dict[str, dict[str, tuple[int, str]]] = {k: _SAME_ON_EVERY_KERNEL for k in KERNELS}


def insmod(vm: Vm, module: Path, name: str) -> tuple[int, str, str]:
    """insmod `module` in the guest: (exit status, insmod's stderr, new kernel log lines)."""
    guest = f"/tmp/{name}.ko"
    vm.ssh.put(module, guest)
    before = len(vm.run("dmesg").splitlines())
    result = vm.ssh.run(f"insmod {shlex.quote(guest)}", 60, check=False)
    after = vm.run("dmesg").splitlines()[before:]
    return result.exit_status, result.stderr.strip(), "\n".join(after)


@pytest.mark.parametrize("name", KERNELS)
def test_secure_boot_loads_only_modules_signed_with_an_enrolled_key(
    name: str, tmp_path: Path
) -> None:
    image = image_for(name)
    try:
        module = build_vendor_module(image)
    except VendorModuleError as err:
        pytest.fail(str(err), pytrace=False)
    env = build_env_for(image)
    enrolled = signing_identity()
    stranger = identity_in(tmp_path, "a key nobody enrolled")
    signed = sign_module(module, enrolled, env, tmp_path / "signed.ko")
    unenrolled = sign_module(module, stranger, env, tmp_path / "unenrolled.ko")

    with start_vm(image, firmware=Firmware.SECUREBOOT, mok=(enrolled.certificate,)) as vm:
        assert vm.run("mokutil --sb-state").strip() == "SecureBoot enabled"
        assert "[integrity]" in vm.run("cat /sys/kernel/security/lockdown")
        outcomes = {
            kind: insmod(vm, candidate, kind)
            for kind, candidate in (("unsigned", module), ("unenrolled", unenrolled))
        }
        loaded = insmod(vm, signed, "signed")
        if loaded[0] == 0:
            vm.run(f"rmmod {contract.MODULE_NAME}")
    for kind, (status, said, log) in outcomes.items():
        print(f"{name} {kind}: exit {status}, said {said!r}, log {log!r}")
    for kind, (status, said, log) in outcomes.items():
        assert status != 0, f"{name}: the {kind} module loaded under Secure Boot"
        number, line = REFUSED[name][kind]
        assert said.endswith(os.strerror(number)), (
            f"{name}: insmod of the {kind} module said {said!r}, not {errno.errorcode[number]}"
        )
        assert line in log, f"{name}: no {line!r} in the kernel log:\n{log}"
    status, said, log = loaded
    assert status == 0, f"{name}: refused though signed with the enrolled key: {said}\n{log}"
