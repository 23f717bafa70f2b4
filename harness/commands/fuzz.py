# SPDX-License-Identifier: MIT
"""`vfio-harness fuzz`: coverage-guided, stateful fuzzing of a driver's mdev in disposable VMs.

    vfio-harness fuzz --kernel debug --duration 10m            # our driver
    vfio-harness fuzz --vendor-sample mtty --mdev-type mtty-2 --iterations 2000
    vfio-harness fuzz --module-faults 4 --duration 5m          # find our deliberate bugs
    vfio-harness fuzz --replay path/to/test_finding_X.py       # a reproducer, in the VM

Programs of VFIO operations (harness.fuzz.program) run in the guest with KCOV around each op;
those that reach new code join the corpus. Each new splat or leak is minimized and written
as a pytest reproducer. Corpus, coverage and findings persist in the cache per target
(kernel, driver build, device type); the reports folder gets summary.json, timeline.csv and
the reproducers this run wrote. Exit status: 0 clean, 1 new findings, 65 nothing ran.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli_errors import UsageError, UserError
from harness.commands.run_prepare import prepare, progress

if TYPE_CHECKING:
    from harness.campaign.coverage_copies import GcovCopies
    from harness.campaign.worker import Target
    from harness.plugin.guest_vm import GuestVm

DEFAULT_KERNEL = "debug"
REPORTS_ROOT = "vfio-harness-fuzz"
EXIT_FINDINGS = 1
EXIT_NOTHING_RAN = 65
REPLAY_TIMEOUT_S = 300.0  # stretched for TCG
COVERAGE_DIR = "coverage"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fuzz = commands.add_parser(
        "fuzz",
        help="coverage-guided fuzzing of the driver's device fd in VMs, with reproducers",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    fuzz.add_argument(
        "--kernel", default=DEFAULT_KERNEL, help="the kernel to fuzz on (default: debug, "
        "which has KCOV for the feedback and KASAN, kmemleak and lockdep to catch bugs)",
    )  # fmt: skip
    fuzz.add_argument("--duration", type=duration_arg, help="stop after this long (90s, 10m, 1h)")
    fuzz.add_argument("--iterations", type=int, help="stop after this many programs")
    fuzz.add_argument(
        "--max-findings", type=int, metavar="N", help="stop after N new findings (e.g. 1)"
    )
    fuzz.add_argument("-n", "--workers", type=int, default=1, help="VMs fuzzing at once")
    fuzz.add_argument("--seed", type=int, help="the random seed (default: a new one, printed)")
    fuzz.add_argument("--mdev-type", help="the device type (default: our module's small type)")
    fuzz.add_argument("--mdev-parent", help="parent device of --mdev-type")
    fuzz.add_argument("--vendor-module", type=Path, help="load this .ko instead of ours")
    fuzz.add_argument("--vendor-src", type=Path, metavar="DIR", help="build this driver source")
    fuzz.add_argument("--vendor-sample", choices=("mtty", "mdpy", "mbochs"),
                      help="fuzz one of the kernel's sample drivers")  # fmt: skip
    fuzz.add_argument(
        "--module-faults", type=int, default=0, metavar="BITS",
        help="fuzz our module's fault-injection build with these faults on (kmod/faults.h)",
    )  # fmt: skip
    fuzz.add_argument(
        "--corpus", type=Path, metavar="DIR",
        help="keep corpus, coverage and findings here (default: the cache, per target)",
    )  # fmt: skip
    fuzz.add_argument("--reports", type=Path, help="where summary.json and reproducers go")
    fuzz.add_argument("--no-minimize", action="store_true", help="keep findings' programs whole")
    fuzz.add_argument(
        "--leak-every", type=float, default=20.0, metavar="S",
        help="ask kmemleak every S seconds (default 20; kernels with kmemleak only)",
    )  # fmt: skip
    fuzz.add_argument(
        "--coverage-every", type=float, metavar="S",
        help="copy the VMs' gcov counters every S seconds and at the end (a kernel with gcov: "
        "debug): the reports get coverage/at-SECONDS/, each the campaign's coverage so far "
        "(replaced VMs' included), and the last one's line coverage of the driver and of "
        "drivers/vfio/, as `run --coverage` gives",
    )  # fmt: skip
    fuzz.add_argument(
        "--replay", type=Path, metavar="FILE",
        help="run a reproducer (test_finding_*.py) in a VM of this kernel and driver instead",
    )  # fmt: skip
    fuzz.set_defaults(handler=fuzz_command)


def duration_arg(value: str) -> float:
    match = _DURATION.match(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r}: a duration like 90s, 10m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def check_options(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise UsageError(f"-n {args.workers}: give 1 or more VMs")
    for option in ("iterations", "max_findings"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise UsageError(f"--{option.replace('_', '-')}: give 1 or more")
    for option in ("duration", "leak_every", "coverage_every"):
        if getattr(args, option) is not None and getattr(args, option) <= 0:
            raise UsageError(f"--{option.replace('_', '-')}: give a time above 0")
    drivers = [o for o in ("vendor_module", "vendor_src", "vendor_sample") if getattr(args, o)]
    if len(drivers) > 1:
        raise UsageError("give one of --vendor-module, --vendor-src and --vendor-sample")
    if drivers and args.module_faults:
        raise UsageError("--module-faults is for our module's fault-injection build")
    if drivers and not args.mdev_type:
        raise UsageError("a vendor's driver needs --mdev-type: the type of its device to fuzz")
    if args.replay is not None and not args.replay.is_file():
        raise UsageError(f"--replay {args.replay}: no such file")
    if args.duration is None and args.iterations is None and args.replay is None:
        args.duration = 600.0


def fuzz_command(args: argparse.Namespace) -> int:
    check_options(args)
    target = make_target(args)
    if args.replay is not None:
        return replay_in_vm(target, args.replay.resolve())
    return run_campaign(args, target)


def make_target(args: argparse.Namespace) -> Target:
    from harness.campaign.worker import Target
    from harness.plugin.guest_vm import VendorModule
    from harness.vm.accel import choose_accelerator

    first = prepare(
        args.kernel,
        vendor_module=args.vendor_module.expanduser().resolve() if args.vendor_module else None,
        faults=bool(args.module_faults),
        source=args.vendor_src.expanduser().resolve() if args.vendor_src else None,
        sample=args.vendor_sample,
    )[0]
    params = (f"fault={args.module_faults}",) if args.module_faults else ()
    accelerator = choose_accelerator()
    progress(f"accelerator: {accelerator.name} ({accelerator.reason})")
    return Target(
        first.choice.id,
        first.image,
        first.bundle,
        VendorModule.read(first.module, params),
        args.mdev_type,
        args.mdev_parent,
        accelerator,
    )


def target_key(target: Target) -> str:
    """The corpus's folder: PCs and findings only compare within one kernel, driver build and
    device type (fault bits included: they change what the driver does)."""
    module = hashlib.sha256(target.module.path.read_bytes()).hexdigest()[:12]
    parts = [target.kernel_id, target.module.name, module, target.mdev_type or "default"]
    parts += [p.replace("=", "-") for p in target.module.params]
    return "-".join(re.sub(r"[^\w.-]", "_", p) for p in parts)


def run_campaign(args: argparse.Namespace, target: Target) -> int:
    import random

    from harness.campaign.campaign import Budget, Campaign, summary
    from harness.campaign.corpus import Corpus
    from harness.campaign.findings import FindingStore
    from harness.campaign.worker import FuzzStartError
    from harness.core.cache import cache_dir
    from harness.ssh.errors import SshError
    from harness.vm.machine import BootError
    from harness.vm.saved_state import SavedStateError

    root = (
        args.corpus.expanduser().resolve() if args.corpus else cache_dir("fuzz", target_key(target))
    )
    reports = (args.reports or Path.cwd() / REPORTS_ROOT / time.strftime("%Y%m%d-%H%M%S")).resolve()
    reports.mkdir(parents=True, exist_ok=True)
    corpus = Corpus.open(root)
    store = FindingStore(root / "findings")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    progress(
        f"fuzz: {target.kernel_id}, {target.module.name}"
        f"{' ' + ' '.join(target.module.params) if target.module.params else ''}, type "
        f"{target.mdev_type or 'default'}; seed {seed}; corpus {root} ({len(corpus.programs)} "
        f"programs, {len(corpus.pcs)} PCs)"
    )
    snapshot = gcov_copies(target, reports / COVERAGE_DIR, args) if args.coverage_every else None
    campaign = Campaign(
        target,
        corpus,
        store,
        Budget(args.duration, args.iterations, args.max_findings),
        progress,
        minimize_findings=not args.no_minimize,
        leak_every_s=args.leak_every,
        snapshot=snapshot,
        snapshot_every_s=args.coverage_every or 60.0,
    )
    try:
        stats = campaign.run(args.workers, seed)
    except FuzzStartError as err:
        raise UserError(str(err)) from None
    except (BootError, SavedStateError, SshError) as err:
        raise UserError(f"the campaign stopped: a VM failed 3 times to start: {err}") from None
    result = summary(stats, corpus)
    result.update(seed=seed, kernel=target.kernel_id, module=target.module.name,
                  params=list(target.module.params), corpus_dir=str(root))  # fmt: skip
    write_reports(reports, result, [store.root / r.fingerprint for r in stats.findings])
    print_summary(result, reports)
    if snapshot is not None:
        print("\n".join(last_coverage(snapshot)), flush=True)
    if not stats.iterations:
        return EXIT_NOTHING_RAN
    if not stats.ops_ok:
        print(
            "vfio-harness fuzz: no operation but open reached the device (every one was refused "
            "or did not apply): the campaign tested nothing; is --mdev-type the device's type?",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_NOTHING_RAN
    return EXIT_FINDINGS if stats.findings else 0


def gcov_copies(target: Target, root: Path, args: argparse.Namespace) -> GcovCopies:
    """The campaign's gcov copies, under root (harness.campaign.coverage_copies)."""
    from harness.campaign.coverage_copies import GcovCopies
    from harness.kmod.module_cache import kmod_dir
    from harness.plugin.coverage import module_notes

    # Lines are only known for a source we built: ours or --vendor-src (not a sample's copy,
    # not a prebuilt --vendor-module, whose counters count for drivers/vfio/ only).
    ours = not (args.vendor_sample or args.vendor_module)
    source = args.vendor_src or (kmod_dir() if ours else None)
    notes = module_notes(target.module.path, Path(source).resolve()) if source else None
    return GcovCopies(root, target.kernel_id, notes, progress)


def last_coverage(copies: GcovCopies) -> list[str]:
    """`run --coverage`'s table and reports for the last copy: the whole campaign's."""
    from harness.commands.run import report_coverage

    taken = copies.copies()
    if not taken:
        return ["coverage: no counters were copied (a kernel without gcov?)"]
    return report_coverage(taken[-1])


def write_reports(reports: Path, result: dict[str, object], findings: list[Path]) -> None:
    (reports / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    with (reports / "timeline.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seconds", "programs", "pcs"])
        writer.writerows(result["timeline"])  # type: ignore[arg-type]
    for folder in findings:
        shutil.copytree(folder, reports / "findings" / folder.name, dirs_exist_ok=True)


def print_summary(result: dict[str, object], reports: Path) -> None:
    findings = result["findings"]
    assert isinstance(findings, list)
    print(
        f"\nvfio-harness fuzz: {result['programs']} programs ({result['ops']} ops) in "
        f"{result['seconds']:.0f} s [{result['accelerator']}], {result['ops_per_s_guest']} ops/s "
        f"in the guest; {result['pcs']} PCs reached ({result['pcs_before']} before this run), "
        f"corpus {result['corpus']}; {result['ops_ok']} ops accepted by the device, "
        f"{result['ops_skipped']} did not apply; {len(findings)} new finding(s), "
        f"{result['duplicates']} repeat(s)",
        flush=True,
    )
    known = result.get("known_kernel_issues") or {}
    assert isinstance(known, dict)
    for key, count in known.items():
        print(f"  known kernel issue {key}: seen {count} time(s), not a finding", flush=True)
    errors = result.get("executor_errors") or {}
    assert isinstance(errors, dict)
    for error, count in errors.items():
        print(f"  the fuzzer's own executor failed {count} time(s): {error}", flush=True)
    if not result["kcov"]:
        print("  no KCOV in this kernel: the fuzzer ran without coverage feedback", flush=True)
    for f in findings:
        print(
            f"  {f['fingerprint']}  {f['kind']}: {f['headline']}\n"
            f"      after {f['found_after_s']:.0f} s; {f['original_ops']} -> {f['ops']} ops"
            f"{'' if f['reproduced'] else ' (not reproduced: kept as found)'}",
            flush=True,
        )
    print(f"  reports: {reports}", flush=True)


def _run_watched(
    guest: GuestVm, remote: str, env: dict[str, str], mark: int
) -> tuple[int | None, str]:
    """pytest on `remote` in the guest, its output shown as it comes: (exit status, "") or
    (None, why it was given up: the kernel oopsed under it, or it did not finish)."""
    from harness.ssh.errors import SshError

    pipe = guest.vm.ssh.start(["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", remote],
                              env=env)  # fmt: skip
    deadline = time.monotonic() + guest.scaled(REPLAY_TIMEOUT_S)
    try:
        while True:
            try:
                line = pipe.read_line(1.0)
            except TimeoutError:
                if time.monotonic() > deadline:
                    return None, f"the reproducer did not finish in {REPLAY_TIMEOUT_S:.0f} s"
                reason = guest.stalled(mark)
                if reason is not None:
                    return None, reason
                continue
            except SshError as err:
                return None, f"the connection broke: {err}"
            if line is None:
                return pipe.exit_status(guest.scaled(10.0)), ""
            print(line.decode(errors="replace"), flush=True)
    finally:
        pipe.close()


def replay_in_vm(target: Target, test: Path) -> int:
    """Run a reproducer with pytest in a VM of `target`: pytest's status, or 1 when the kernel
    crashed under it (an oops kills the test's process before it can fail)."""
    from harness.campaign.worker import FuzzVm
    from harness.plugin.guest_vm import FATAL_KINDS
    from harness.vm.console import parse_console

    fvm = FuzzVm(target, progress)
    try:
        guest = fvm.boot()
        vm = guest.vm
        remote = f"/tmp/{test.name}"
        vm.ssh.put(test, remote)
        mark = guest.console_mark()
        status, problem = _run_watched(guest, remote, target.env(), mark)
        if not (vm.alive() and vm.ssh.is_active):
            print(guest.diagnose_death(mark, "the VM died under the reproducer").text)
            return EXIT_FINDINGS
        vm.console.poll()
        verdict = parse_console(line.text for line in vm.console.lines[mark:])
        if status is None and verdict.kind not in FATAL_KINDS:
            raise UserError(problem)
        if status not in (0, 1) and verdict.kind in FATAL_KINDS:
            print(
                f"the kernel crashed under the reproducer ({verdict.kind}): "
                f"{verdict.first_bad_line}",
                flush=True,
            )
            return EXIT_FINDINGS
        assert status is not None
        return status
    finally:
        fvm.close()
