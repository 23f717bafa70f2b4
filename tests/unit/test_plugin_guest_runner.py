# SPDX-License-Identifier: MIT
"""The guest runner and its protocol without a VM: the runner runs here as a subprocess over
a small suite, the host side deserializes its reports with pytest's own hook; and the same
suite through the plugin with --target local."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.core.kmsg import format_record, taint_letters
from harness.kernel.choice import KernelChoice
from harness.plugin import guest_items
from harness.plugin.protocol import ItemDone, ProtocolError, decode, encode, run_request
from harness.plugin.runner_client import RunnerClient

SUITE = {
    "conftest.py": """
        import pytest
        from pathlib import Path

        @pytest.fixture(scope="module")
        def resource(tmp_path_factory):
            log = Path(__import__("os").environ["ORDER_LOG"])
            log.write_text(log.read_text() + "setup\\n" if log.exists() else "setup\\n")
            yield
            log.write_text(log.read_text() + "teardown\\n")
    """,
    "test_one.py": """
        import os, pytest
        def test_pass(resource):
            print("to stdout, not into the protocol")
        def test_fail(resource):
            assert 1 == 2
        def test_skip():
            pytest.skip("not today")
        def test_env():
            assert os.environ["HARNESS_MDEV_TYPE"] == "sample-type"
    """,
    "test_two.py": """
        import os
        from pathlib import Path
        def test_after():
            assert Path(os.environ["ORDER_LOG"]).read_text() == "setup\\nteardown\\n"
    """,
}


def write_suite(root: Path) -> Path:
    suite = root / "suite"
    suite.mkdir()
    for name, text in SUITE.items():
        (suite / name).write_text(textwrap.dedent(text))
    return suite


class LocalPipe:
    """The runner as a local subprocess, with StreamingCommand's interface."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr_tail: tuple[str, ...] = ()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip(b"\n"))
        self.lines.put(None)

    def send_line(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data + b"\n")
        self.process.stdin.flush()

    def read_line(self, timeout: float) -> bytes | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no line") from None

    def exit_status(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def runner(tmp_path: Path) -> tuple[RunnerClient, Path]:
    suite = write_suite(tmp_path)
    env = {
        **os.environ,
        "ORDER_LOG": str(tmp_path / "order.log"),
        "HARNESS_MDEV_TYPE": "sample-type",
    }
    command = [sys.executable, "-m", "harness.plugin.guest_runner", "--rootdir", str(tmp_path)]
    pipe = LocalPipe([*command, str(suite)], env)
    return RunnerClient.start(pipe, timeout=60), tmp_path


def test_the_runner_serves_items_and_pytest_deserializes_its_reports(
    runner: tuple[RunnerClient, Path], request: pytest.FixtureRequest
) -> None:
    client, root = runner
    config = request.config
    try:
        assert client.info.items == 5
        order = [
            "suite/test_one.py::test_pass",
            "suite/test_one.py::test_fail",
            "suite/test_one.py::test_skip",
            "suite/test_one.py::test_env",
            "suite/test_two.py::test_after",
        ]
        outcomes = {}
        for nodeid, following in zip(order, [*order[1:], None], strict=True):
            outcome = client.run(nodeid, following, timeout=60)
            assert outcome.done is not None, outcome.problem
            assert outcome.done.nodeid == nodeid
            reports = [
                config.hook.pytest_report_from_serializable(config=config, data=data)
                for data in outcome.reports
            ]
            assert reports[0].when == "setup"
            assert reports[-1].when == "teardown"
            assert all(isinstance(r, pytest.TestReport) and r.nodeid == nodeid for r in reports)
            worst = next((r for r in reports if not r.passed), reports[-1])
            outcomes[nodeid.split("::")[1]] = worst.outcome
            if nodeid.endswith("test_pass"):
                call = reports[1]
                sections = [tuple(section) for section in call.sections]  # JSON made lists
                assert ("Captured stdout call", "to stdout, not into the protocol\n") in sections
            if nodeid.endswith("test_fail"):
                assert "assert 1 == 2" in str(reports[1].longrepr)
        assert outcomes == {
            "test_pass": "passed",
            "test_fail": "failed",
            "test_skip": "skipped",
            "test_env": "passed",
            "test_after": "passed",  # the module fixture was torn down when test_one ended
        }
        missing = client.run("suite/test_one.py::test_nonexistent", None, timeout=60)
        assert missing.done is not None
        assert "not collected in the guest" in missing.reports[0]["longrepr"]
        assert client.quit(timeout=60) == 1  # pytest's exit status: a test failed
    finally:
        client.close()
    assert (root / "order.log").read_text() == "setup\nteardown\n"


def test_a_dead_runner_gives_an_outcome_without_done(runner: tuple[RunnerClient, Path]) -> None:
    client, _ = runner
    assert isinstance(client.pipe, LocalPipe)
    client.pipe.process.kill()
    outcome = client.run("suite/test_one.py::test_pass", None, timeout=30)
    assert outcome.done is None
    assert outcome.problem is not None
    assert "ended" in outcome.problem or "broke" in outcome.problem
    assert not client.alive
    client.close()


def test_protocol_messages_round_trip() -> None:
    done = ItemDone("a.py::t", ["[    1.000000] x"], [], 0, 512, None)
    assert ItemDone.from_message(decode(encode(done.message()))["done"]) == done
    assert decode(encode(run_request("a", None))) == {"run": "a", "next": None}
    with pytest.raises(ProtocolError):
        decode(b"print output")
    with pytest.raises(ProtocolError):
        decode(b"[1, 2]")


def test_kmsg_records_become_console_lines() -> None:
    record = b"4,1234,12345678,-;WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x0\n SUBSYSTEM=pci\n"
    assert format_record(record) == ["[   12.345678] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x0"]
    assert format_record(b"garbage") == []
    # lockdep's embedded newlines arrive escaped; the console shows separate lines
    escaped = b"4,9,2000000,-;\\x0a *** DEADLOCK ***\\x0a"
    assert format_record(escaped) == ["[    2.000000]  *** DEADLOCK ***"]
    two = b"4,9,2000000,-;Chain exists of:\\x0a  &a --> &b"
    assert format_record(two) == ["[    2.000000] Chain exists of:", "[    2.000000]   &a --> &b"]
    assert taint_letters(0) == ""
    assert taint_letters((1 << 9) | (1 << 12) | (1 << 13)) == "WOE"


def test_guest_nodeids_drop_the_kernel_part() -> None:
    class Spec:
        def __init__(self, params: dict[str, object]) -> None:
            self.params = params

    class Item:
        def __init__(self, nodeid: str, params: dict[str, object] | None) -> None:
            self.nodeid = nodeid
            if params is not None:
                self.callspec = Spec(params)

    trixie = KernelChoice("trixie", "trixie")
    cases = {
        "t.py::test_a[trixie]": "t.py::test_a",
        "t.py::test_a[type1-trixie]": "t.py::test_a[type1]",
        "t.py::C::test_a[x-y-trixie]": "t.py::C::test_a[x-y]",
    }
    for host, guest in cases.items():
        assert guest_items.guest_nodeid(Item(host, {"vm_kernel": trixie})) == guest  # type: ignore[arg-type]
    assert guest_items.guest_nodeid(Item("t.py::test_b", None)) == "t.py::test_b"  # type: ignore[arg-type]


def test_the_suite_tarball_keeps_paths_under_the_rootdir(tmp_path: Path) -> None:
    import io
    import tarfile

    (tmp_path / "tests" / "uapi" / "__pycache__").mkdir(parents=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "uapi" / "test_x.py").write_text("def test_x(): pass\n")
    (tmp_path / "tests" / "uapi" / "__pycache__" / "test_x.cpython-311.pyc").write_bytes(b"")
    data = guest_items.suite_tarball(tmp_path / "tests" / "uapi", tmp_path, ["vm: a marker"])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
        ini = archive.extractfile("pytest.ini")
        assert ini is not None and b"    vm: a marker" in ini.read()
    assert names == ["pytest.ini", "tests/__init__.py", "tests/uapi/test_x.py"]
    assert data == guest_items.suite_tarball(
        tmp_path / "tests" / "uapi", tmp_path, ["vm: a marker"]
    )
    with pytest.raises(ValueError, match="outside pytest's rootdir"):
        guest_items.suite_tarball(tmp_path, tmp_path / "tests", [])


def test_target_local_runs_the_suite_in_process(tmp_path: Path) -> None:
    write_suite(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\nguest_suites = suite\n")
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "ORDER_LOG": str(tmp_path / "order.log")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", "local"]
    command += ["--mdev-type", "sample-type", "--junitxml", str(junit), "-k", "not skip"]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    outcomes = {
        case.get("name"): next((c.tag for c in case if c.tag in ("failure", "skipped")), "passed")
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    assert outcomes == {
        "test_pass": "passed",  # no [kernel] part: nothing is parametrized locally
        "test_fail": "failure",
        "test_env": "passed",
        "test_after": "passed",
    }, run.stdout + run.stderr
