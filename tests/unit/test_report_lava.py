# SPDX-License-Identifier: MIT
"""The LAVA job passes LAVA's own schema validation (Debian's lava-common, on Debian's Python),
and a run's results become one lava-test-case per test, in a test set per kernel."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import cli
from harness.report.lava import JobSpec, case_commands, job_text
from harness.report.results import Results, RunInfo, TestResult

SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's lava-common is importable
VALIDATE = """
import sys, yaml
from lava_common.schemas import validate
validate(yaml.safe_load(sys.stdin), strict=True)
"""


def lava_validate(text: str) -> subprocess.CompletedProcess[str]:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import lava_common.schemas"],
                           capture_output=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        message = "no lava-common to validate against: vfio-harness setup --profile report"
        if os.environ.get("HARNESS_REQUIRE_VM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run([SYSTEM_PYTHON, "-c", VALIDATE], input=text, capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_the_job_passes_lavas_schema() -> None:
    spec = JobSpec("https://ci.invalid/vfio_harness-0.1.0-py3-none-any.whl",
                   "https://ci.invalid/rootfs.img", shard="2/4")  # fmt: skip
    text = job_text(spec)
    checked = lava_validate(text)
    assert checked.returncode == 0, checked.stderr
    assert "--shard $SHARD" in text and '"SHARD": "2/4"' in text
    broken = lava_validate(text.replace('"device_type": "qemu",', ""))
    assert broken.returncode != 0 and "device_type" in broken.stderr  # the check can fail


def test_the_job_command_prints_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["lava", "job", "--wheel", "w.whl", "--image", "r.img", "--shard", "1/2", "--",
            "--kernel", "all"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "run --shard $SHARD --reports /tmp/vfio-harness-reports --kernel all" in out
    assert cli.main(["lava", "job", "--wheel", "w", "--image", "r", "--shard", "3/2"]) == 64
    no_format = ["lava", "job", "--wheel", "w", "--image", "r", "--file", "/root/x=file:///x"]
    assert cli.main(no_format) == 64
    assert cli.main([*no_format[:-1], "root/x=file:///x", "--rootfs-format", "ext4"]) == 64


def test_a_job_booting_a_kernel_with_files_in_the_image_passes_lavas_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["lava", "job", "--wheel", "/root/w/vfio_harness.whl", "--image", "file:///r.img",
            "--kernel", "file:///vmlinux", "--initrd", "file:///initrd.img",
            "--append", "console=ttyS0 harness.shell=ttyS0", "--rootfs-format", "ext4",
            "--file", "/root/w=file:///w.tar", "--file", "/root/m.ko=file:///m.ko",
            "--setup", "insmod /root/m.ko", "--no-login", "--prompt", "root@harness-guest",
            "--pip-option=--no-index", "--pip-option=--find-links=/root/w",
            "--", "--target", "local", "--", "-k", "test_info or test_regions"]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    checked = lava_validate(text)
    assert checked.returncode == 0, checked.stderr
    job = json.loads(text)
    deploy, boot, test = (action for action in job["actions"])
    images = deploy["deploy"]["images"]
    assert images["kernel"]["image_arg"] == (
        "-kernel {kernel} -append 'console=ttyS0 harness.shell=ttyS0'"
    )
    assert images["initrd"]["image_arg"] == "-initrd {initrd}"
    assert images["rootfs"]["format"] == "ext4"
    assert images["rootfs"]["overlays"] == {
        "lava": True,
        "file0": {"url": "file:///m.ko", "format": "file", "path": "/root/m.ko"},
        "file1": {"url": "file:///w.tar", "format": "tar", "path": "/root/w"},
    }
    assert "auto_login" not in boot["boot"] and boot["boot"]["prompts"] == ["root@harness-guest"]
    steps = test["test"]["definitions"][0]["repository"]["run"]["steps"]
    assert steps[0] == "insmod /root/m.ko"
    assert "install --quiet --no-index --find-links=/root/w $WHEEL" in " ".join(steps)
    assert "--target local -- -k 'test_info or test_regions'" in " ".join(steps)


def test_results_become_test_cases_per_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = Results(RunInfo(harness="0.1.0"), [
        TestResult("t.py::test_a[type1]", "n1", "bookworm", outcome="passed"),
        TestResult("t.py::test_b", "n2", "bookworm", outcome="xfailed"),
        TestResult("t.py::test_a[type1]", "n3", "debug", outcome="error"),
        TestResult("t.py::test_c", "n4", "debug", outcome="skipped"),
    ])  # fmt: skip
    assert case_commands(results) == [
        ["lava-test-set", "start", "bookworm"],
        ["lava-test-case", "t.py_test_a_type1", "--result", "pass"],
        ["lava-test-case", "t.py_test_b", "--result", "pass"],
        ["lava-test-set", "stop"],
        ["lava-test-set", "start", "debug"],
        ["lava-test-case", "t.py_test_a_type1", "--result", "fail"],
        ["lava-test-case", "t.py_test_c", "--result", "skip"],
        ["lava-test-set", "stop"],
    ]
    results.write(tmp_path / "results.json")
    assert cli.main(["lava", "cases", str(tmp_path), "--print"]) == 0
    assert "lava-test-case t.py_test_c --result skip" in capsys.readouterr().out
