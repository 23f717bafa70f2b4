# SPDX-License-Identifier: MIT
"""The errors the CLI prints without a traceback, and its exit codes.

`vfio-harness run` passes pytest's exit status on (0 passed, 1 failed, 2 interrupted, 3
internal error, 4 pytest usage error, 5 nothing collected), so the harness's own outcomes take
codes pytest never uses, from sysexits.h: a CI job can tell "the driver failed" (1) from "the
command was wrong" (64) and "this machine cannot run it" (69).
"""

EXIT_USAGE = 64  # EX_USAGE: the command line is wrong (options, paths, devices it names)
EXIT_UNTESTED = 65  # EX_DATAERR: the run tested nothing (no test reached the driver)
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a prerequisite is missing or a build failed
EXIT_INTERRUPTED = 130  # Ctrl-C before pytest started


class UserError(Exception):
    """A missing prerequisite or a failed build the user can fix; printed as one line."""

    exit_code = EXIT_UNAVAILABLE


class UsageError(UserError):
    """A mistake on the command line: an option, a path or a device that is not right."""

    exit_code = EXIT_USAGE
