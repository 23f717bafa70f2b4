# SPDX-License-Identifier: MIT
"""A cold boot retries once on an early kernel panic under TCG, and only then."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.images.build import BuiltImage
from harness.images.manifest import ImageManifest
from harness.vm import machine as machine_module
from harness.vm.accel import KVM_ARGS, Accelerator, tcg
from harness.vm.machine import BootError, GuestMachine, cold_boot

MANIFEST = ImageManifest(
    name="sid",
    suite="sid",
    key="k",
    builder_version=2,
    kernel_package="linux-image-amd64",
    kernel_release="7.2.0",
    host_key="ssh-ed25519 AAAA",
    initrd_modules=(),
    sizes={},
    rootfs_capacity=0,
    build_seconds=0.0,
)
TCG_MACHINE = GuestMachine(BuiltImage(Path("/img"), MANIFEST), tcg("test"))


def attempts(monkeypatch: pytest.MonkeyPatch, *outcomes: BaseException | str) -> list[str]:
    calls: list[str] = []
    queue = list(outcomes)

    def once(_machine: GuestMachine, _progress: Any) -> Any:
        calls.append("boot")
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(machine_module, "_cold_boot_once", once)
    return calls


def test_an_early_panic_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = attempts(monkeypatch, BootError("panic", early_panic=True), "vm")
    lines: list[str] = []
    assert cold_boot(TCG_MACHINE, lines.append) == "vm"  # type: ignore[comparison-overlap]
    assert calls == ["boot", "boot"]
    assert "early kernel panic under TCG" in lines[0]


def test_a_second_early_panic_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = attempts(
        monkeypatch, BootError("first", early_panic=True), BootError("again", early_panic=True)
    )
    with pytest.raises(BootError, match="again"):
        cold_boot(TCG_MACHINE, lambda _line: None)
    assert len(calls) == 2


@pytest.mark.parametrize(
    "machine",
    [
        replace(TCG_MACHINE, accelerator=Accelerator("kvm", KVM_ARGS, 1.0, "test")),
        replace(TCG_MACHINE, kernel=object()),  # type: ignore[arg-type]  # a user's kernel
    ],
    ids=["kvm", "custom-kernel"],
)
def test_no_retry_under_kvm_or_for_a_custom_kernel(
    monkeypatch: pytest.MonkeyPatch, machine: GuestMachine
) -> None:
    calls = attempts(monkeypatch, BootError("panic", early_panic=True))
    with pytest.raises(BootError):
        cold_boot(machine, lambda _line: None)
    assert calls == ["boot"]


def test_a_late_panic_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = attempts(monkeypatch, BootError("panic in our init", early_panic=False))
    with pytest.raises(BootError):
        cold_boot(TCG_MACHINE, lambda _line: None)
    assert calls == ["boot"]
