"""The pool replaces a shared VM that died, and says so only when nobody closed it on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.kernel.choice import KernelChoice
from harness.plugin.pool import VmPool


@dataclass
class FakeSsh:
    is_active: bool = True


@dataclass(eq=False)
class FakeVm:
    ssh: FakeSsh = field(default_factory=FakeSsh)
    closed: bool = False

    def alive(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


class FakePool(VmPool):
    def start(self, choice: KernelChoice) -> Any:
        return FakeVm()


def test_a_dead_vm_is_replaced_and_reported() -> None:
    said: list[str] = []
    pool = FakePool(progress=said.append)
    choice = KernelChoice("bookworm", "bookworm")
    first = pool.shared(choice)
    assert pool.shared(choice) is first
    first.close()
    assert pool.shared(choice) is not first
    assert said == ["bookworm: the shared VM died; starting a new one"]


def test_a_retired_vm_is_replaced_quietly() -> None:
    said: list[str] = []
    pool = FakePool(progress=said.append)
    choice = KernelChoice("bookworm", "bookworm")
    first = pool.shared(choice)
    pool.retire(first)
    assert not first.alive()
    second = pool.shared(choice)
    assert second is not first and said == []
