# SPDX-License-Identifier: MIT
"""`vfio-harness run` lets pytest finish after a Ctrl-C, however long its teardown takes, and
passes SIGTERM on to it: nothing is left running, and the reports get written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.processes import SAFETY_TIMEOUT_S, as_foreground_job

# The child: says "ready", and on SIGINT takes its time to tear down (as pytest closing VMs
# on a loaded machine does), leaves a mark, and exits 2 like an interrupted pytest.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    def stop(signo, frame):
        time.sleep(1.5)
        Path(sys.argv[1]).write_text("torn down")
        sys.exit(2)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    time.sleep(300)
    """
)
PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from harness.commands.child import run_to_end
    child = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
    sys.exit(run_to_end(child, cwd=Path.cwd(), env={"PATH": "/usr/bin:/bin"}))
    """
)


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    parent = subprocess.Popen(
        as_foreground_job([sys.executable, "-c", PARENT, CHILD, str(tmp_path / "mark")]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert parent.stdout is not None
    assert parent.stdout.readline() == "ready\n"
    return parent


def test_ctrl_c_waits_for_the_child_to_tear_down(tmp_path: Path) -> None:
    parent = _start(tmp_path)
    os.killpg(parent.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, stderr = parent.communicate(timeout=SAFETY_TIMEOUT_S)
    assert (tmp_path / "mark").read_text() == "torn down"
    assert parent.returncode == 2
    assert "waiting for pytest to stop its VMs" in stderr


def test_sigterm_is_passed_on_to_the_child(tmp_path: Path) -> None:
    parent = _start(tmp_path)
    parent.send_signal(signal.SIGTERM)  # to the parent alone, as a CI job's timeout may
    parent.communicate(timeout=SAFETY_TIMEOUT_S)
    assert parent.returncode == 128 + signal.SIGTERM  # the child died of it; said as a shell
    assert not (tmp_path / "mark").exists()
