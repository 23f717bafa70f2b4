# SPDX-License-Identifier: MIT
"""`vfio-harness lava job ...`: a LAVA job that runs one shard of the suite on a device and
reports every test to LAVA; `vfio-harness lava cases REPORTS`: inside the LAVA test shell,
record a run's results (one `lava-test-case` per test, a test set per kernel).

    vfio-harness lava job --wheel URL --image URL --shard 2/4 -- --target local \\
        --mdev-parent mtty --mdev-type mtty-2 > job.yaml
    lavacli jobs submit job.yaml
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from harness.cli_errors import UsageError, UserError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lava = commands.add_parser("lava", help="LAVA: a job for a shard of the suite; its results")
    actions = lava.add_subparsers(dest="lava_action", required=True, metavar="ACTION")
    job = actions.add_parser("job", help="print a LAVA job (YAML) for a QEMU device")
    job.add_argument("--wheel", required=True, help="URL of the vfio_harness wheel to install")
    job.add_argument("--image", required=True, help="URL of the root filesystem to boot")
    job.add_argument("--shard", default="1/1", metavar="K/N")
    job.add_argument("--name", default="vfio-harness")
    job.add_argument("--kernel", metavar="URL", help="boot this kernel directly (-kernel)")
    job.add_argument("--initrd", metavar="URL", help="with this initrd (-initrd)")
    job.add_argument("--append", default="", metavar="CMDLINE", help="the kernel command line")
    job.add_argument(
        "--rootfs-format",
        choices=("ext4",),
        help="the image is this filesystem: LAVA writes its test overlay (and --file) into it, "
        "rather than on a disk the guest must mount by UUID (which needs udev)",
    )
    job.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH=URL",
        help="put URL at PATH in the image (a .tar is unpacked into PATH); needs --rootfs-format",
    )
    job.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="COMMAND",
        help="a command before the run, such as loading the driver (repeatable)",
    )
    job.add_argument(
        "--no-login",
        dest="login",
        action="store_false",
        help="the console shows a shell prompt at once: no login prompt to answer",
    )
    job.add_argument("--prompt", default="root@", help="the shell prompt LAVA waits for")
    job.add_argument(
        "--pip-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="for pip install of the wheel (--pip-option=--no-index ...): a lab without PyPI",
    )
    job.add_argument(
        "run_options",
        nargs=argparse.REMAINDER,
        help="after --: the options of `vfio-harness run` (default: --target local)",
    )
    job.set_defaults(handler=_job)
    cases = actions.add_parser("cases", help="record a run's results in the LAVA test shell")
    cases.add_argument("reports", type=Path, metavar="REPORTS")
    cases.add_argument("--print", action="store_true", help="print the calls, do not make them")
    cases.set_defaults(handler=_cases)


def _job(args: argparse.Namespace) -> int:
    from harness.plugin.shard import parse_shard
    from harness.report.lava import JobSpec, job_text

    try:
        parse_shard(args.shard)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = args.run_options[1:] if args.run_options[:1] == ["--"] else args.run_options
    files = {}
    for item in args.file:
        path, equals, url = item.partition("=")
        if not equals or not path.startswith("/") or not url:
            raise UsageError(f"--file {item}: give PATH=URL, PATH absolute on the device")
        files[path] = url
    spec = JobSpec(
        args.wheel,
        args.image,
        args.shard,
        tuple(options) or ("--target", "local"),
        args.name,
        prompt=args.prompt,
        kernel=args.kernel,
        initrd=args.initrd,
        append=args.append,
        rootfs_format=args.rootfs_format,
        files=files,
        setup=tuple(args.setup),
        login=args.login,
        pip_options=tuple(args.pip_option),
    )
    try:
        text = job_text(spec)
    except ValueError as exc:  # what the options ask for together that LAVA cannot do
        raise UsageError(str(exc)) from None
    sys.stdout.write(text)
    return 0


def _cases(args: argparse.Namespace) -> int:
    import shlex

    from harness.commands.compare import results_path
    from harness.report.lava import case_commands
    from harness.report.results import ResultsError, load

    try:
        results = load(results_path(args.reports))
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    commands = case_commands(results)
    if args.print:
        print("\n".join(shlex.join(command) for command in commands))
        return 0
    if shutil.which("lava-test-case") is None:
        raise UserError("lava-test-case not found: run this in a LAVA test shell, or use --print")
    for command in commands:
        subprocess.run(command, check=True)
    return 0
