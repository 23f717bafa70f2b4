# SPDX-License-Identifier: MIT
"""Debian's lava-dispatcher on this machine, without a LAVA server: `lava-run` with a device
configuration of our own for a local QEMU device, and what it recorded.

A LAVA server renders a device's configuration from its device-type template; lava-run takes
the rendered result. This is the least a `qemu` device needs: the constants the dispatcher's
actions read, the image deploy (with the size of the guest disk LAVA makes for its test
overlay), and the QEMU command the boot action extends with the job's images.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LAVA_RUN = "/usr/bin/lava-run"
SHELL_PROMPT = "lava-test: # "


def device_config(qemu_options: Sequence[str]) -> dict[str, object]:
    return {
        "device_type": "qemu",
        "available_architectures": ["amd64"],
        "constants": {
            "shutdown-message": "The system is going down for reboot NOW",
            "kernel-start-message": "Linux version [0-9]",
            "default-shell-prompt": SHELL_PROMPT,
            "spawn_maxread": "4092",
            "posix": {
                "lava_test_sh_cmd": "/bin/sh",
                "lava_test_results_dir": "/lava-%s",
                "lava_test_shell_file": "~/.bashrc",
            },
            "failure_retry": 1,
            "boot_retry": 0,
        },
        "commands": {},
        "actions": {
            "deploy": {
                "methods": {"image": {"parameters": {"guest": {"size": 512}}}},
            },
            "boot": {
                "connections": {"serial": None},
                "methods": {
                    "qemu": {
                        "parameters": {
                            "command": "qemu-system-x86_64",
                            "options": list(qemu_options),
                        }
                    }
                },
            },
        },
        "timeouts": {"actions": {}, "connections": {}},
    }


@dataclass(frozen=True)
class LavaRun:
    status: int
    output_dir: Path
    log: list[dict[str, object]]  # every entry the dispatcher logged

    def results(self) -> list[dict[str, object]]:
        """What LAVA recorded: one dict per test case (and per action)."""
        recorded = []
        for entry in self.log:
            message = entry.get("msg")
            if entry.get("lvl") == "results" and isinstance(message, dict):
                recorded.append(message)
        return recorded

    def target_lines(self) -> list[str]:
        """What the device printed (its console)."""
        return [str(e["msg"]) for e in self.log if e.get("lvl") == "target"]


def lava_run(
    job: dict[str, object],
    device: dict[str, object],
    work: Path,
    env: dict[str, str],
    timeout_s: float,
) -> LavaRun:
    """Run `job` on `device` with lava-run; JSON is YAML, so both are written as JSON."""
    job_file, device_file, out = work / "job.yaml", work / "device.yaml", work / "output"
    job_file.write_text(json.dumps(job, indent=1))
    device_file.write_text(json.dumps(device, indent=1))
    out.mkdir()
    command = [LAVA_RUN, "--job-id", "1", "--output-dir", str(out), "--device", str(device_file)]
    log_file = work / "lava-run.log"
    with open(log_file, "wb") as log:
        status = subprocess.run(
            [*command, str(job_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            timeout=timeout_s,
            check=False,
        ).returncode
    return LavaRun(status, out, log_entries(log_file.read_text(errors="replace")))


def log_entries(text: str) -> list[dict[str, object]]:
    """The dispatcher's log: a YAML flow mapping a line ({"dt": ..., "lvl": ..., "msg": ...},
    mostly JSON but with YAML tags), among lines of other programs (libguestfs)."""
    lines = "\n".join(line for line in text.splitlines() if line.startswith("{"))
    converted = subprocess.run(
        [SYSTEM_PYTHON, "-c", _YAML_TO_JSON], input=lines, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return [entry for entry in json.loads(converted.stdout) if isinstance(entry, dict)]


# PyYAML is lava-dispatcher's (Debian's python3-yaml), not in our venv: Debian's Python reads it.
SYSTEM_PYTHON = "/usr/bin/python3"
_YAML_TO_JSON = """
import json, sys, yaml
entries = []
for line in sys.stdin:
    try:
        entries.append(yaml.safe_load(line))
    except yaml.YAMLError:
        pass
json.dump(entries, sys.stdout, default=str)
"""
