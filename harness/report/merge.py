# SPDX-License-Identifier: MIT
"""Joins the results.json of the shards of one run (`--shard K/N` on N hosts or CI jobs) into
one, as if one host had run them all: the tests of every part, the kernels of all, the run's
start and end over all, and an exit status that fails if any part failed.

Parts must not overlap (a test of one kernel in two parts means they were not shards of one
split), and must come from one harness version and one --kernel list. Shards of N that are
missing are recorded in the merged run (`missing_shards`), which `compare` then counts as an
incomplete run.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.results import KernelInfo, Results, RunInfo, TestResult

NOT_COLLECTED = 5  # pytest's exit status for "no tests": an empty shard


class MergeError(ValueError):
    """Parts that are not shards of one run."""


def _exit_status(statuses: list[int | None]) -> int | None:
    failing = {s for s in statuses if s not in (0, NOT_COLLECTED, None)}
    if not failing:
        return 0 if any(s is not None for s in statuses) else None
    return 1 if 1 in failing else max(failing)


def _kernels(parts: Sequence[Results]) -> list[KernelInfo]:
    found: dict[str, KernelInfo] = {}
    for part in parts:
        for kernel in part.run.kernels:
            have = found.setdefault(kernel.choice, KernelInfo(kernel.choice))
            have.release = have.release or kernel.release
            have.accelerator = have.accelerator or kernel.accelerator
            have.commit = have.commit or kernel.commit
    return [found[name] for name in sorted(found)]


def missing_shards(parts: Sequence[Results]) -> list[str]:
    """The K/N of the split that no part is (empty when the parts are not shards at all)."""
    shards = [p.run.shard for p in parts if p.run.shard]
    totals = {int(s.split("/")[1]) for s in shards}
    if len(totals) != 1:
        return []
    total = totals.pop()
    return [f"{k}/{total}" for k in range(1, total + 1) if f"{k}/{total}" not in shards]


def merge(parts: Sequence[Results]) -> Results:
    if not parts:
        raise MergeError("nothing to merge")
    versions = {p.run.harness for p in parts}
    if len(versions) > 1:
        raise MergeError(f"the parts come from different harness versions: {sorted(versions)}")
    totals = {p.run.shard.split("/")[1] for p in parts if p.run.shard}
    if len(totals) > 1:
        raise MergeError(f"the parts are shards of different splits (N = {sorted(totals)})")
    asked = {tuple(p.run.kernels_asked) for p in parts}
    if len(asked) > 1:
        raise MergeError(f"the parts ran different --kernel lists: {sorted(asked)}")
    tests: dict[tuple[str, str], TestResult] = {}
    for part in parts:
        for test in part.tests:
            if test.key in tests:
                raise MergeError(
                    f"{test.kernel}: {test.id} is in two parts: not shards of one split"
                )
            tests[test.key] = test
    first = parts[0].run
    shards = sorted((p.run.shard for p in parts if p.run.shard), key=lambda s: int(s.split("/")[0]))
    run = RunInfo(
        harness=first.harness,
        python=first.python,
        host=", ".join(dict.fromkeys(p.run.host for p in parts if p.run.host)),
        started=min((p.run.started for p in parts if p.run.started), default=""),
        finished=max((p.run.finished for p in parts if p.run.finished), default=""),
        exit_status=_exit_status([p.run.exit_status for p in parts]),
        command=first.command,
        firmware=first.firmware,
        driver=next((p.run.driver for p in parts if p.run.driver), None),
        qemu=next((p.run.qemu for p in parts if p.run.qemu), None),
        kernels=_kernels(parts),
        shard=f"merged {','.join(shards)}" if shards else None,
        missing_shards=missing_shards(parts),
        kernels_asked=list(first.kernels_asked),
    )
    return Results(run, sorted(tests.values(), key=lambda t: t.key))


__all__ = ["MergeError", "merge", "missing_shards"]
