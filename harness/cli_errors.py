# SPDX-License-Identifier: MIT
"""The one error type the CLI prints without a traceback."""


class UserError(Exception):
    """A mistake or missing prerequisite the user can fix; printed as one line."""
