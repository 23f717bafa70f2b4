# SPDX-License-Identifier: MIT
"""tests/vm: data/ holds suites that other tests run through the plugin, not tests of ours."""

collect_ignore = ["data"]
