# SPDX-License-Identifier: MIT
"""The VMs of one pytest process: one shared VM per kernel, plus throwaway fresh ones.

Under pytest-xdist every worker is its own process with its own pool, so `-n 3` runs three
VMs per kernel side by side. A shared VM that died (a guest panic, QEMU killed) is replaced
the next time a test asks for it. Everything the pool started is closed by `close()`; if the
process dies first, each VM's watchdog cleans up (harness.vm.watchdog).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.progress import Progress
from harness.firmware import Firmware
from harness.kernel.choice import KernelChoice

if TYPE_CHECKING:
    from harness.images.build import BuiltImage
    from harness.kernel.custom import KernelBundle
    from harness.vm.accel import Accelerator
    from harness.vm.machine import Vm
    from harness.vm.saved_state import Fresh


class VmPool:
    def __init__(
        self,
        fresh: Fresh = "auto",
        memory_mib: int = 1024,
        progress: Progress | None = None,
        firmware: Firmware = Firmware.DIRECT,
        mok: tuple[Path, ...] = (),
    ) -> None:
        self.fresh_mode: Fresh = fresh
        self.memory_mib = memory_mib
        self.firmware = firmware
        self.mok = mok  # certificates for shim's MokList (Secure Boot)
        self.progress: Progress = progress or (lambda _line: None)
        self._shared: dict[KernelChoice, Vm] = {}
        self._images: dict[str, BuiltImage] = {}
        self._kernels: dict[KernelChoice, KernelBundle | None] = {}
        self._accelerator: Accelerator | None = None
        self._closed = False
        self._retired: set[int] = set()  # id() of shared VMs closed on purpose

    @property
    def accelerator(self) -> Accelerator:
        if self._accelerator is None:
            from harness.vm.accel import choose_accelerator

            self._accelerator = choose_accelerator()
        return self._accelerator

    def image(self, recipe: str) -> BuiltImage:
        if recipe not in self._images:
            from harness.images.build import build_image

            self._images[recipe] = build_image(recipe, progress=self.progress)
        return self._images[recipe]

    def kernel(self, choice: KernelChoice) -> KernelBundle | None:
        """What `choice` boots instead of its image's kernel (None: the image's own), built
        or prepared once per process: a kernel recipe's build runs make, which takes seconds
        even when nothing changed."""
        if choice not in self._kernels:
            from harness.kernel.prepare import choice_kernel

            self._kernels[choice] = choice_kernel(choice, self.progress)
        return self._kernels[choice]

    def start(self, choice: KernelChoice) -> Vm:
        """A new pristine VM of `choice`; the caller closes it."""
        if self._closed:
            raise RuntimeError("the VM pool is closed")
        from harness.vm.saved_state import start_vm

        if self.firmware.uses_ovmf and choice.own_kernel:  # before building it, for nothing
            from harness.firmware import FirmwareError
            from harness.firmware.modes import firmware_needs_debian_kernels

            raise FirmwareError(firmware_needs_debian_kernels(self.firmware))
        return start_vm(
            self.image(choice.recipe),
            kernel=self.kernel(choice),
            accelerator=self.accelerator,
            memory_mib=self.memory_mib,
            fresh=self.fresh_mode,
            progress=self.progress,
            firmware=self.firmware,
            mok=self.mok,
        )

    def shared(self, choice: KernelChoice) -> Vm:
        """This process's VM of `choice`, started on first use and replaced if it died."""
        vm = self._shared.get(choice)
        if vm is not None and not (vm.alive() and vm.ssh.is_active):
            if id(vm) not in self._retired:
                self.progress(f"{choice.id}: the shared VM died; starting a new one")
            self._retired.discard(id(vm))
            vm.close()
            vm = None
        if vm is None:
            vm = self._shared[choice] = self.start(choice)
        return vm

    def retire(self, vm: Vm) -> None:
        """Close `vm` on purpose: the next test of its kernel gets a new one, without a
        "died" message."""
        self._retired.add(id(vm))
        vm.close()

    def close(self) -> None:
        self._closed = True
        vms, self._shared = list(self._shared.values()), {}
        for vm in vms:
            vm.close()
