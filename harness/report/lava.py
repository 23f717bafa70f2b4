# SPDX-License-Identifier: MIT
"""LAVA, the scheduler KernelCI and LKFT run their bare-metal and VM jobs on.

`job()` writes a LAVA job for a QEMU device (or any device whose deploy and boot actions you
put in its place): it boots a Debian root filesystem, installs our wheel into a venv, runs one
shard of the suite (`--target local` on a device that has the mdev, or in our VMs), and
hands the results to LAVA. `case_commands()` turns a run's results.json into the LAVA test
shell's own calls: one test set per kernel, one `lava-test-case` per test, so LAVA records
every test with pass, fail or skip, and the KTAP file is attached as it is.

A job is JSON, which is YAML too: LAVA's server reads it as YAML.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.report.results import Results

VENV = "/opt/vfio-harness"
REPORTS = "/tmp/vfio-harness-reports"
_LAVA_NAME = re.compile(r"[^-_a-zA-Z0-9.]+")  # what LAVA allows in a test case or set name
LAVA_RESULT = {
    "passed": "pass",
    "xpassed": "pass",
    "xfailed": "pass",  # an expected failure is the run going as expected (KTAP: ok # XFAIL)
    "failed": "fail",
    "error": "fail",
    "skipped": "skip",
}


@dataclass(frozen=True)
class JobSpec:
    wheel: str  # URL (or path on the device) of the vfio_harness wheel
    image: str  # URL of the root filesystem image the QEMU device boots
    shard: str = "1/1"
    run_options: Sequence[str] = ("--target", "local")  # what `vfio-harness run` gets
    name: str = "vfio-harness"
    timeout_minutes: int = 90
    prompt: str = "root@"
    # A kernel (and initrd) booted directly, with its command line, for images without a
    # boot loader (ours); None: the image boots itself.
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    # The root filesystem's format ("ext4"): LAVA then writes its test overlay into the image
    # itself (and `files` beside it) instead of attaching a second disk the guest mounts by
    # UUID, which needs udev in the guest.
    rootfs_format: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # path on the device: URL
    setup: Sequence[str] = ()  # commands before the run (load the driver under test)
    login: bool = True  # a login prompt on the console (auto_login); False: a shell already
    pip_options: Sequence[str] = ()  # ("--no-index", "--find-links", DIR): a lab without PyPI


def lava_name(text: str) -> str:
    return _LAVA_NAME.sub("_", text).strip("_") or "unnamed"


def test_definition(spec: JobSpec) -> dict[str, object]:
    """The inline Lava-Test Test Definition that installs, runs and reports."""
    harness = f"{VENV}/bin/vfio-harness"
    # Ours before the user's options: theirs may end in `-- PYTEST-OPTIONS`.
    run = " ".join([harness, "run", "--shard", "$SHARD", "--reports", REPORTS,
                    *(shlex.quote(option) for option in spec.run_options)])  # fmt: skip
    return {
        "metadata": {
            "format": "Lava-Test Test Definition 1.0",
            "name": spec.name,
            "description": "the VFIO mdev conformance suite of vfio-harness, one shard",
        },
        "run": {
            "steps": [
                *spec.setup,
                # python3-venv only where it is missing (Debian images often lack package
                # lists too).
                "python3 -c 'import ensurepip' 2>/dev/null"
                " || { apt-get update -q && apt-get install -y -q python3-venv; }",
                f"python3 -m venv {VENV}",
                " ".join([f"{VENV}/bin/pip", "install", "--quiet", *spec.pip_options, "$WHEEL"]),
                # The run's own exit status is in results.json; the cases carry the verdict.
                f"{run} || true",
                f"{harness} lava cases {REPORTS}",
                f"cat {REPORTS}/results.ktap || true",  # the KTAP, whole, in the job's log
            ]
        },
        "params": {"SHARD": spec.shard, "WHEEL": spec.wheel},
    }


def _images(spec: JobSpec) -> dict[str, object]:
    rootfs: dict[str, object] = {
        "url": spec.image,
        "image_arg": "-drive format=raw,if=virtio,file={rootfs}",
    }
    if spec.rootfs_format:
        overlays: dict[str, object] = {"lava": True}
        for number, (path, url) in enumerate(sorted(spec.files.items())):
            kind = "tar" if url.endswith(".tar") else "file"  # LAVA unpacks a tar into path
            overlays[f"file{number}"] = {"url": url, "format": kind, "path": path}
        rootfs |= {"format": spec.rootfs_format, "overlays": overlays}
    elif spec.files:
        raise ValueError(
            "files need the image's format (--rootfs-format): LAVA writes them into the image"
        )
    images: dict[str, object] = {"rootfs": rootfs}
    if spec.kernel:
        append = f" -append {shlex.quote(spec.append)}" if spec.append else ""
        images["kernel"] = {"url": spec.kernel, "image_arg": "-kernel {kernel}" + append}
    if spec.initrd:
        images["initrd"] = {"url": spec.initrd, "image_arg": "-initrd {initrd}"}
    return images


def _boot(spec: JobSpec) -> dict[str, object]:
    boot: dict[str, object] = {
        "method": "qemu",
        "media": "tmpfs",
        "timeout": {"minutes": 10},
        "prompts": [spec.prompt],
    }
    if spec.login:
        boot["auto_login"] = {"login_prompt": "login:", "username": "root"}
    return boot


def job(spec: JobSpec) -> dict[str, object]:
    """A LAVA job for a QEMU (x86_64) device."""
    return {
        "job_name": f"{spec.name} shard {spec.shard}",
        "device_type": "qemu",
        "visibility": "public",
        "priority": "medium",
        "timeouts": {
            "job": {"minutes": spec.timeout_minutes + 30},
            "action": {"minutes": spec.timeout_minutes},
            # The longest a test may print nothing: one test can take minutes in a slow VM.
            "connection": {"minutes": 10},
        },
        "context": {"arch": "amd64", "cpu": "max", "memory": 4096, "extra_options": ["-smp 2"]},
        "actions": [
            {"deploy": {"to": "tmpfs", "timeout": {"minutes": 15}, "images": _images(spec)}},
            {"boot": _boot(spec)},
            {
                "test": {
                    "timeout": {"minutes": spec.timeout_minutes},
                    "definitions": [
                        {
                            "repository": test_definition(spec),
                            "from": "inline",
                            "name": lava_name(spec.name),
                            "path": f"inline/{lava_name(spec.name)}.yaml",
                        }
                    ],
                }
            },
        ],
    }


def job_text(spec: JobSpec) -> str:
    return json.dumps(job(spec), indent=2) + "\n"


def case_commands(results: Results) -> list[list[str]]:
    """The LAVA test shell calls that record `results`: a set per kernel, a case per test."""
    commands: list[list[str]] = []
    for kernel in results.kernels():
        commands.append(["lava-test-set", "start", lava_name(kernel)])
        for test in sorted((t for t in results.tests if t.kernel == kernel), key=lambda t: t.id):
            result = LAVA_RESULT.get(test.outcome, "unknown")
            commands.append(["lava-test-case", lava_name(test.id), "--result", result])
        commands.append(["lava-test-set", "stop"])
    return commands


__all__ = ["LAVA_RESULT", "JobSpec", "case_commands", "job", "job_text", "lava_name"]
