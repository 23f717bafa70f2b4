# SPDX-License-Identifier: MIT
"""What the fuzzing VM's answers become on the host: findings pinned on the op they showed in,
and a hang named by where the kernel keeps the program waiting."""

from __future__ import annotations

import pytest

from harness.campaign.worker import FuzzVm, Target, _outcome, hang_finding

WARN = [
    "[   25.106489] ------------[ cut here ]------------",
    "[   25.106972] WARNING: CPU: 1 PID: 107 at main.c:541 hmdev_ioctl+0x7d5/0xa00 [hmdev]",
    "[   25.114111] Call Trace:",
    "[   25.114462]  <TASK>",
    "[   25.116286]  vfio_device_fops_unl_ioctl+0x1e2/0x16b0",
    "[   25.117304]  __x64_sys_ioctl+0xcfc/0x17f0",
    "[   25.117304]  </TASK>",
    "[   25.117304] ---[ end trace 0000000000000000 ]---",
]


def test_a_splat_is_pinned_on_the_op_whose_log_it_is_in() -> None:
    done = {
        "results": ["ok", "ok", "ok"],
        "new_pcs": [1, 2],
        "pcs": 9,
        "seconds": 0.01,
        "logs": [[0, ["[ 25.0] some info line"]], [2, WARN]],
        "error": None,
    }
    outcome = _outcome(done)
    [finding] = outcome.findings
    assert finding.kind == "warning" and "hmdev_ioctl" in finding.headline
    assert outcome.finding_ops == {finding.fingerprint: 2}
    assert (outcome.new_pcs, outcome.pcs, outcome.error) == ([1, 2], 9, None)


STACK = """[<0>] __schedule+0x3c1/0x9e0
[<0>] schedule+0x4a/0x100
[<0>] vfio_unregister_group_dev+0x1a2/0x2c0
[<0>] mdev_device_remove+0x58/0x90 [mdev]
[<0>] remove_store+0x6c/0xa0 [mdev]
[<0>] kernfs_fop_write_iter+0x13e/0x1f0
"""


def test_a_hang_is_named_by_its_first_frame_past_the_scheduler() -> None:
    finding = hang_finding(STACK, "remove")
    assert finding.kind == "hung"
    assert finding.headline == (
        "hang: the fuzzer's remove never returned; it waits in vfio_unregister_group_dev"
    )
    assert (
        finding.fingerprint == hang_finding(STACK.replace("0x1a2", "0x1b0"), "remove").fingerprint
    )
    assert finding.fingerprint != hang_finding(STACK, "close").fingerprint


class _Closes:
    """A guest, its VM or a pipe: what FuzzVm.close closes; `log` says in which order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def close(self) -> None:
        self.log.append(f"close {self.name}")


def test_a_live_vm_is_handed_to_before_replace_before_it_is_closed_a_dead_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.vm import saved_state

    class NoNewVmError(Exception):
        pass

    def start_vm(*_args: object, **_kwargs: object) -> None:
        raise NoNewVmError

    monkeypatch.setattr(saved_state, "start_vm", start_vm)
    log: list[str] = []
    fvm = FuzzVm(Target("debug", None, None, None, None), lambda _line: None)  # type: ignore[arg-type]
    fvm.before_replace = lambda vm: log.append(f"retire {vm.guest is not None}")
    guest = _Closes("guest", log)
    guest.vm = _Closes("vm", log)  # type: ignore[attr-defined]
    fvm.guest, fvm.pipe = guest, _Closes("pipe", log)  # type: ignore[assignment]
    with pytest.raises(NoNewVmError):
        fvm.boot()
    assert log[0] == "retire True" and log[1:] == ["close pipe", "close guest", "close vm"]
    log.clear()
    with pytest.raises(NoNewVmError):  # nothing running: nothing to keep
        fvm.boot()
    assert log == []
