# SPDX-License-Identifier: MIT
"""Running guest tests: host items whose execution happens in a guest (or, with --target
local, in this process), reported through the host's own hooks.

Guest tests are collected on the host like any test, so -k, -x, --lf, markers and xdist
select and distribute them as usual. This plugin's pytest_runtest_protocol takes over for
them: it gets this process's VM of the item's kernel (VmPool; under xdist one per worker),
makes it ready (harness.plugin.guest_vm), has the guest runner run the item, and emits the
guest's reports through item.ihook (logstart, logreport, logfinish) so the terminal, junitxml,
the --lf cache and xdist see ordinary results. Kernel health (harness.plugin.health) can turn
a passed test into a failure; a guest that dies fails the running test with its console's
panic, and the next test gets a new VM.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
from _pytest.runner import runtestprotocol

from harness.core.kmsg import KmsgReader, read_taint
from harness.kernel.choice import KernelChoice
from harness.plugin import guest_items
from harness.plugin.health import Finding, apply_findings, is_fatal, item_findings
from harness.plugin.known_failures import KnownFailure, kernel_names, not_run
from harness.plugin.known_failures import apply as apply_known
from harness.plugin.properties import INTERRUPTED, KERNEL_CHOICE
from harness.plugin.protocol import ItemDone

if TYPE_CHECKING:
    from harness.coverage.gcov import NotesDir
    from harness.plugin.coverage import CoverageCollector
    from harness.plugin.guest_vm import GuestVm, VendorModule
    from harness.plugin.pool import VmPool
    from harness.plugin.runner_client import RunnerClient


class SuiteRun:
    """Registered by pytest_configure (harness/plugin/__init__.py) in every process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.target = str(config.getoption("--target"))
        self.roots = guest_items.suite_roots(config)
        self.env = guest_items.mdev_environment(config)
        self._pool: VmPool | None = None
        self._guests: dict[KernelChoice, GuestVm] = {}
        self._modules: dict[KernelChoice | None, VendorModule] = {}  # None: --vendor-module
        self._tarballs: dict[Path, bytes] = {}
        self._kmsg: KmsgReader | None = None
        self._kmsg_error: str | None = None
        self._known_failures = guest_items.known_failures(config, self.roots)
        self._coverage = _coverage_collector(config)
        self._notes: dict[KernelChoice, NotesDir | None] = {}  # the gcov notes of its module

    # Collection -----------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)  # last, so the kernel is the last part of the id
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if self.target != "vm" or guest_items.suite_of(metafunc.definition, self.roots) is None:
            return
        from harness.plugin import _kernel_choices

        choices = self.config.stash.get(_KERNELS_KEY, None) or _kernel_choices(self.config)
        self.config.stash[_KERNELS_KEY] = choices
        if guest_items.KERNEL_PARAM not in metafunc.fixturenames:
            # The host never sets these items up: the name only has to pass parametrize's check.
            metafunc.fixturenames.append(guest_items.KERNEL_PARAM)
        metafunc.parametrize(
            guest_items.KERNEL_PARAM,
            choices,
            indirect=True,
            ids=[c.id for c in choices],
            scope="session",  # groups a worker's items by kernel: its VMs are reused
        )

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if guest_items.suite_of(item, self.roots) is not None:
                item.add_marker(guest_items.GUEST_MARKER)
                if self.target == "vm":
                    item.add_marker("vm")

    # Running ---------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        suite = guest_items.suite_of(item, self.roots)
        if suite is None:
            return None  # not a guest test: pytest's own protocol runs it
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        known: KnownFailure | None
        if self.target == "local":
            known = self._known(item, kernel_names(os.uname().release, "local"))
            if known is not None and known.crashes:
                reports = not_run(item, known)  # an oops here would take this host down
                known = None  # its reports already say it
            else:
                reports = self._run_local(item, nextitem)
        else:
            reports, known = self._run_in_vm(item, nextitem, suite)
        if known is not None:
            apply_known(reports, known)
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _run_local(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> list[pytest.TestReport]:
        if self._kmsg is None and self._kmsg_error is None:
            try:
                self._kmsg = KmsgReader.open()
            except OSError as err:
                self._kmsg_error = f"kernel health not checked: cannot read /dev/kmsg ({err})"
                _warn(self.config, f"{self._kmsg_error}: run as root")
        before = self._kmsg.drain() if self._kmsg else []
        taint_before = read_taint()
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        log = self._kmsg.drain() if self._kmsg else []
        done = ItemDone(item.nodeid, log, before, taint_before, read_taint(), self._kmsg_error)
        apply_findings(reports, item_findings(done))
        return reports

    def _known(self, item: pytest.Item, names: frozenset[str]) -> KnownFailure | None:
        if self._known_failures is None:
            return None
        return self._known_failures.match(guest_items.guest_nodeid(item), names)

    def _run_in_vm(
        self, item: pytest.Item, nextitem: pytest.Item | None, suite: Path
    ) -> tuple[list[pytest.TestReport], KnownFailure | None]:
        choice = guest_items.kernel_of(item) or self._default_kernel()
        # The kernel asked for, which reports group by even when its VM never started.
        chosen = (KERNEL_CHOICE, choice.id)
        ready = pytest.CallInfo.from_call(lambda: self._ready(choice, suite), when="setup")
        if ready.excinfo is not None:
            setup = item.ihook.pytest_runtest_makereport(item=item, call=ready)
            teardown = _teardown(item)
            for report in (setup, teardown):
                report.user_properties.append(chosen)
            if setup.failed:  # not a skip for a VM this machine cannot run
                setup.user_properties.append((INTERRUPTED, "error"))
            return [setup, teardown], None
        guest, runner = ready.result
        properties = [chosen, *_vm_properties(guest)]
        # A known crash runs here too: its VM is replaced, and the kernel's own report of it
        # (KASAN, an oops) is what makes it a safety failure.
        known = self._known(item, kernel_names(guest.vm.machine.kernel_release, choice.id))
        same_runner = (
            nextitem is not None
            and guest_items.suite_of(nextitem, self.roots) == suite
            and (guest_items.kernel_of(nextitem) or choice) == choice
        )
        next_id = guest_items.guest_nodeid(nextitem) if same_runner and nextitem else None
        mark = guest.console_mark()
        timeout = guest.scaled(guest_timeout(item, float(self.config.getoption("--guest-timeout"))))
        outcome = runner.run(
            guest_items.guest_nodeid(item),
            next_id,
            timeout,
            give_up=lambda: guest.stalled(mark),
        )
        moved = (runner.guest_rootdir, str(self.config.rootpath)) if runner.guest_rootdir else None
        reports = [self._report(item, _moved(data, moved)) for data in outcome.reports]
        findings: list[Finding] = []
        if outcome.done is not None:
            findings = item_findings(outcome.done)
            apply_findings(reports, findings)
            if is_fatal(findings):
                # An Oopsed kernel is no base for the next test: it gets a new VM.
                self._retire(choice, "the kernel oopsed or hit a BUG in the last test")
            elif outcome.done.lockdep_off:
                # Lockdep stops checking after its first report: later tests need a new VM.
                self._retire(choice, "lockdep reported and switched itself off")
        else:
            death = guest.diagnose_death(mark, outcome.problem or "the guest runner stopped")
            reports = _failed_by(item, reports, death.text)
            findings = list(death.findings)
            # A test that never ended, or a guest that hung, is a timeout; anything else that
            # stopped the guest runner (a panic, a broken connection) is an error.
            interrupted = (INTERRUPTED, "timeout" if outcome.timed_out else "error")
            for report in reports:
                report.user_properties.extend(
                    ("kernel_splat", f"{f.kind} {f.fingerprint} {f.headline}") for f in findings
                )
                report.user_properties.append(interrupted)
            if death.vm_dead or outcome.timed_out:
                why = "the guest died" if death.vm_dead else "a test timed out"
                self._retire(choice, why, hung=True)
            else:
                runner.close()  # the next test starts a new runner in the same VM
        if not any(r.when == "teardown" for r in reports):
            reports.append(_teardown(item))
        for report in reports:
            report.user_properties.extend(properties)
        return reports, known

    def _report(self, item: pytest.Item, data: dict[str, Any]) -> pytest.TestReport:
        report = self.config.hook.pytest_report_from_serializable(
            config=self.config, data=_tuples_back(data)
        )
        if not isinstance(report, pytest.TestReport):
            raise TypeError(f"the guest runner sent a {type(report).__name__}, not a TestReport")
        # The guest knows the item by its unparametrized id; the host's names it everywhere.
        report.nodeid = item.nodeid
        report.location = item.location
        return report

    # VMs -------------------------------------------------------------------------------------

    def _default_kernel(self) -> KernelChoice:
        from harness.plugin import _kernel_choices

        return _kernel_choices(self.config)[0]

    def _pool_for(self) -> VmPool:
        if self._pool is None:
            from harness.plugin.fixtures import TerminalProgress
            from harness.plugin.pool import VmPool
            from harness.plugin.secure_boot import firmware_of, mok_of

            self._pool = VmPool(
                fresh=self.config.getoption("--fresh-vm"),
                memory_mib=self.config.getoption("--vm-memory"),
                progress=TerminalProgress(self.config),
                firmware=firmware_of(self.config),
                mok=mok_of(self.config),
            )
        return self._pool

    def _ready(self, choice: KernelChoice, suite: Path) -> tuple[GuestVm, RunnerClient]:
        """The VM of `choice` with the module loaded and a runner over `suite` (fails the test
        with the reason when any of it cannot be had)."""
        from harness.plugin.fixtures import _need_qemu, _start_failed
        from harness.plugin.guest_vm import GuestVm
        from harness.plugin.secure_boot import firmware_of

        _need_qemu()
        pool = self._pool_for()
        try:
            vm = pool.shared(choice)
        except Exception as exc:  # every start failure is reported the same way
            _start_failed(choice, exc)
        guest = self._guests.get(choice)
        if guest is None or guest.vm is not vm:
            if guest is not None:
                guest.close()
            guest = self._guests[choice] = GuestVm(vm, pool.progress)
        try:
            if firmware_of(self.config).secure_boot:
                guest.require_lockdown()  # else the run would not show what Secure Boot does
            guest.load_module(self._module(choice, guest))
            relative = suite.relative_to(self.config.rootpath).as_posix()
            runner = guest.runner(suite, relative, self._tarball(suite), self.env)
        except pytest.fail.Exception:
            raise
        except Exception as exc:
            pytest.fail(f"{choice.id}: could not prepare the guest: {exc}", pytrace=False)
        return guest, runner

    def _module(self, choice: KernelChoice, guest: GuestVm) -> VendorModule:
        from harness.plugin.guest_vm import VendorModule
        from harness.plugin.secure_boot import firmware_of, identity_of, signed_module

        given = self.config.getoption("--vendor-module")
        # A given module is signed for each kernel under Secure Boot (its build chroot's
        # sign-file), so it is kept per kernel then.
        key = None if given and not firmware_of(self.config).secure_boot else choice
        if key not in self._modules:
            if given:
                path = Path(given).expanduser().resolve()
                if not path.is_file():
                    pytest.fail(f"--vendor-module {given}: no such file", pytrace=False)
            else:
                path = self._build_module(choice, guest)
                self._notes[choice] = self._module_notes(path)
            identity = identity_of(self.config)
            if identity is not None:  # Secure Boot: the guest loads signed modules only
                path = signed_module(path, self._pool_for().image(choice.recipe), identity)
            faults = int(self.config.getoption("--module-faults"))
            params = (f"fault={faults}",) if faults and not given else ()
            self._modules[key] = VendorModule.read(path, params)
        return self._modules[key]

    def _build_module(self, choice: KernelChoice, guest: GuestVm) -> Path:
        """Our module (or --vendor-src) for the kernel of `choice`: in the image's chroot for
        a Debian kernel, on the host against the kernel's build tree for any other."""
        import os

        from harness.kmod.module_cache import VendorModuleError, build_vendor_module
        from harness.plugin.policy import vm_unavailable

        source = self.config.getoption("--vendor-src")
        source_dir = Path(source).resolve() if source else None
        sample = self.config.getoption("--vendor-sample")
        if sample:
            from harness.kmod.samples import SampleError, sample_for

            try:
                source_dir = sample_for(str(sample), choice, guest.progress)
            except SampleError as err:
                pytest.fail(str(err), pytrace=False)
        faults = bool(self.config.getoption("--module-faults"))
        try:
            if choice.own_kernel:
                from harness.kmod.tree_module import tree_module_for

                bundle = self._pool_for().kernel(choice)
                return tree_module_for(
                    choice, bundle, guest.progress, source=source_dir, faults=faults
                )
            if os.geteuid() != 0:
                vm_unavailable("building the vendor module in a Debian chroot needs root")
            return build_vendor_module(
                guest.vm.image, guest.progress, source=source_dir, faults=faults
            )
        except VendorModuleError as err:
            pytest.fail(str(err), pytrace=False)

    def _module_notes(self, module: Path) -> NotesDir | None:
        if self._coverage is None:
            return None
        from harness.kmod.module_cache import kmod_dir
        from harness.plugin.coverage import module_notes

        source = self.config.getoption("--vendor-src")
        if self.config.getoption("--vendor-sample"):
            return None  # the sample's source is a copy in the cache: its lines are not asked for
        return module_notes(module, Path(source).resolve() if source else kmod_dir())

    def _collect_coverage(self, choice: KernelChoice, guest: GuestVm) -> None:
        if self._coverage is None or not guest.vm.alive():
            return  # a dead VM took its counters with it
        guest.progress(self._coverage.collect(guest, choice.id, self._notes.get(choice)))

    def _tarball(self, suite: Path) -> bytes:
        if suite not in self._tarballs:
            markers = [str(line) for line in self.config.getini("markers")]
            self._tarballs[suite] = guest_items.suite_tarball(suite, self.config.rootpath, markers)
        return self._tarballs[suite]

    def _retire(self, choice: KernelChoice, why: str, *, hung: bool = False) -> None:
        guest = self._guests.pop(choice, None)
        if guest is None:
            return
        guest.progress(f"{choice.id}: replacing the VM: {why}")
        with contextlib.suppress(Exception):
            guest.close()
        if not hung:
            self._collect_coverage(choice, guest)
        elif self._coverage is not None:
            guest.progress(f"{choice.id}: coverage: the counters of that VM are lost with it")
        self._pool_for().retire(guest.vm)  # VmPool.shared starts a new one for the next test

    # Ending ---------------------------------------------------------------------------------

    def pytest_sessionfinish(self) -> None:
        guests, self._guests = list(self._guests.items()), {}
        for choice, guest in guests:
            with contextlib.suppress(Exception):
                guest.close()  # the runners tear their sessions down
            self._collect_coverage(choice, guest)
        if self._pool is not None:
            self._pool.close()
        if self._kmsg is not None:
            self._kmsg.close()


def _coverage_collector(config: pytest.Config) -> CoverageCollector | None:
    directory = config.getoption("--coverage-dir")
    if not directory:
        return None
    from harness.plugin.coverage import CoverageCollector

    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    return CoverageCollector(Path(directory), str(worker))


_KERNELS_KEY = pytest.StashKey[list[KernelChoice]]()


def _moved(data: Any, paths: tuple[str, str] | None) -> Any:
    """`data` with the guest's suite root in every string replaced by the host's rootdir, so
    tracebacks and skip locations name the files the user has."""
    if paths is None:
        return data
    if isinstance(data, str):
        return data.replace(paths[0], paths[1])
    if isinstance(data, list):
        return [_moved(value, paths) for value in data]
    if isinstance(data, dict):
        return {key: _moved(value, paths) for key, value in data.items()}
    return data


def _tuples_back(data: dict[str, Any]) -> dict[str, Any]:
    """JSON turned the report's tuples into lists; pytest checks for tuples (a skip's
    longrepr is (path, lineno, reason)), as xdist's transport would have kept them."""
    data = dict(data)
    if isinstance(data.get("longrepr"), list):
        data["longrepr"] = tuple(data["longrepr"])
    for key in ("location", "sections", "user_properties"):
        if isinstance(data.get(key), list):
            value = data[key]
            data[key] = tuple(value) if key == "location" else [tuple(v) for v in value]
    return data


def _vm_properties(guest: GuestVm) -> list[tuple[str, object]]:
    vm = guest.vm
    return [
        ("kernel", vm.machine.kernel_release),
        ("accelerator", vm.accelerator.name),
        ("accelerator_reason", vm.accelerator.reason),
    ]


def _teardown(item: pytest.Item) -> pytest.TestReport:
    return pytest.TestReport(
        item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "passed", None, "teardown"
    )


def _failed_by(
    item: pytest.Item, reports: list[pytest.TestReport], text: str
) -> list[pytest.TestReport]:
    """The reports so far plus a failure for the phase that was running when the guest died."""
    done = {r.when for r in reports}
    when: Literal["setup", "call", "teardown"] = "teardown"
    if "setup" not in done:
        when = "setup"
    elif "call" not in done and reports[-1].passed:
        when = "call"  # (setup failed or skipped: the death came in its teardown)
    failure = pytest.TestReport(
        item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "failed", text, when
    )
    return [*reports, failure]


def _warn(config: pytest.Config, text: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[vfio-harness] {text}")


def guest_timeout(item: pytest.Item, default: float) -> float:
    """Seconds `item` may run in its guest: its guest_timeout marker's, if lower."""
    marker = item.get_closest_marker("guest_timeout")
    if marker is None or not marker.args:
        return default
    return min(default, float(marker.args[0]))
