# SPDX-License-Identifier: MIT
"""The guest side: one pytest session over the suite, running the items the host asks for.

    python3 -m harness.plugin.guest_runner --rootdir /opt/vfio-harness-suite SUITE_DIR

collects SUITE_DIR, says {"ready": ...} on stdout, then serves harness.plugin.protocol on
stdin/stdout until {"quit": true} or EOF. Each item runs through pytest's own
pytest_runtest_protocol with the `nextitem` the host names, so module and session fixtures are
set up and torn down exactly as in a plain pytest run; each report goes back as
pytest_report_to_serializable made it. Around every item the runner reads the new kernel log
lines and the taint mask (harness.core.kmsg) and sends them with {"done": ...}: the host
judges them, because only the host has the console parser. On a debug kernel it also sends
kmemleak's reports from a scan after the last item of each test module, and whether lockdep
has switched itself off (harness.core.debug_checks).

The protocol owns the process's original stdout and stdin: fd 1 is pointed at stderr and fd 0
at /dev/null, so nothing a test or plugin prints can corrupt a message. Imports stay within
the standard library, pytest and the guest-safe harness packages (it runs from the tar that
harness.vm.guest_python pushes).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from typing import IO, Any

import pytest

from harness.core.debug_checks import Kmemleak, lockdep_live
from harness.core.kmsg import KmsgReader, read_taint
from harness.plugin.protocol import ItemDone, Message, ProtocolError, RunnerInfo, decode, encode


class Channel:
    """The protocol's ends: the process's original stdin and stdout."""

    def __init__(self, reader: IO[bytes], writer: IO[bytes]) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    def claim(cls) -> Channel:
        reader = os.fdopen(os.dup(0), "rb")
        writer = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)  # stray prints now land on stderr, never inside a message
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        self._writer.write(encode(message) + b"\n")
        self._writer.flush()

    def receive(self) -> Message | None:
        """The next request; None at EOF (the host went away)."""
        while True:
            line = self._reader.readline()
            if not line:
                return None
            if not line.strip():
                continue
            try:
                return decode(line)
            except ProtocolError as err:
                self.send({"error": str(err)})


class RunnerPlugin:
    """Registered into the guest's pytest session; replaces its run loop with the protocol."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.collect_failures: dict[str, pytest.CollectReport] = {}
        self._config: pytest.Config | None = None
        self._running = False
        self._expected_next: str | None = None
        self._kmsg: KmsgReader | None = None
        self._kmsg_error: str | None = None
        self._kmemleak: Kmemleak | None = None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.passed:
            self.collect_failures[report.nodeid] = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._running and (config := self._config) is not None:
            data = config.hook.pytest_report_to_serializable(config=config, report=report)
            self.channel.send({"report": data})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self._config = session.config
        items = {item.nodeid: item for item in session.items}
        try:
            self._kmsg = KmsgReader.open()
        except OSError as err:
            self._kmsg_error = f"cannot read the kernel log: {err}"
        self._kmemleak = Kmemleak.find()
        if self._kmemleak is not None:
            self._kmemleak.clear()  # what boot and collection allocated is not the tests'
        problems = [
            f"{nodeid}: {report.outcome}: {_reason(report)}"
            for nodeid, report in self.collect_failures.items()
        ]
        self.channel.send(
            RunnerInfo(
                pytest_version=pytest.__version__,
                python_version=platform.python_version(),
                kernel_release=platform.release(),
                items=len(items),
                collect_problems=problems,
            ).message()
        )
        while (request := self.channel.receive()) is not None:
            if "quit" in request:
                break
            if "run" not in request:
                self.channel.send({"error": f"unknown request {sorted(request)}"})
                continue
            nodeid, next_nodeid = str(request["run"]), request.get("next")
            item, nextitem = items.get(nodeid), items.get(str(next_nodeid))
            self._run(session, nodeid, item, nextitem)
        return True

    def _run(
        self,
        session: pytest.Session,
        nodeid: str,
        item: pytest.Item | None,
        nextitem: pytest.Item | None,
    ) -> None:
        if self._expected_next is not None and self._expected_next != nodeid:
            _teardown_all(session)  # the host changed its mind: start from a clean stack
        self._expected_next = nextitem.nodeid if nextitem is not None else None
        before = self._drain()
        taint_before = read_taint()
        self._running = True
        try:
            if item is None:
                for report in self._not_collected(nodeid):
                    self.pytest_runtest_logreport(report)
            else:
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        finally:
            self._running = False
        leaks = self._scan_for_leaks() if _last_of_module(nodeid, nextitem) else []
        log = self._drain()
        done = ItemDone(
            nodeid,
            log,
            before,
            taint_before,
            read_taint(),
            self._kmsg_error,
            kmemleak=leaks,
            lockdep_off=lockdep_live() is False,
        )
        self.channel.send(done.message())

    def _scan_for_leaks(self) -> list[str]:
        if self._kmemleak is None:
            return []
        try:
            return self._kmemleak.scan()
        except OSError as err:  # kmemleak disables itself on an internal error
            self._kmemleak = None
            return [f"vfio-harness: kmemleak scan failed, no more scans: {err}"]

    def _drain(self) -> list[str]:
        return self._kmsg.drain() if self._kmsg is not None else []

    def _not_collected(self, nodeid: str) -> list[pytest.TestReport]:
        """Reports for an item the host has and the guest did not collect."""
        owners = [n for n in self.collect_failures if nodeid.startswith(n) and n]
        location = (nodeid.split("::", 1)[0], None, nodeid)
        if owners:
            owner = self.collect_failures[max(owners, key=len)]
            outcome, longrepr = owner.outcome, owner.longrepr
        else:
            outcome = "failed"
            longrepr = (
                f"{nodeid} was not collected in the guest: are the host's test files and "
                "harness the ones pushed to the guest? (the guest's collection reported no "
                "error for it)"
            )
        setup = _report(nodeid, location, outcome, longrepr, "setup")
        return [setup, _report(nodeid, location, "passed", None, "teardown")]


def _last_of_module(nodeid: str, nextitem: pytest.Item | None) -> bool:
    return nextitem is None or nextitem.nodeid.split("::", 1)[0] != nodeid.split("::", 1)[0]


def _report(
    nodeid: str, location: tuple[str, int | None, str], outcome: str, longrepr: Any, when: str
) -> pytest.TestReport:
    # Keyword arguments only: the constructor grew fields (start, stop) across pytest versions.
    return pytest.TestReport(
        nodeid=nodeid,
        location=location,
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
    )


def _reason(report: pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    text = str(longrepr).strip().splitlines()
    return text[-1] if text else "?"


def _teardown_all(session: pytest.Session) -> None:
    setup_state = getattr(session, "_setupstate", None)
    try:
        if setup_state is not None:
            setup_state.teardown_exact(None)
    except Exception as err:  # a failing finalizer must not end the runner
        print(f"vfio-harness runner: teardown before an out-of-order item: {err}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m harness.plugin.guest_runner")
    parser.add_argument("--rootdir", required=True, help="the suite's root (nodeids are below)")
    parser.add_argument("suite", help="the directory to collect")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    channel = Channel.claim()
    ini = os.path.join(args.rootdir, "pytest.ini")
    pytest_args = [
        args.suite,
        "--rootdir",
        args.rootdir,
        *(["-c", ini] if os.path.isfile(ini) else []),
        "-p",
        "no:cacheprovider",  # the host keeps --lf's cache
        "-q",
        *args.pytest_args,
    ]
    return int(pytest.main(pytest_args, plugins=[RunnerPlugin(channel)]))


if __name__ == "__main__":
    sys.exit(main())
