# SPDX-License-Identifier: MIT
"""tests/vm: data/ holds suites that other tests run through the plugin, not tests of ours.

`package` is this checkout built as a release is (sdist, then the wheel from it), once per
session, for the tests that install it (test_installed.py, test_bare_metal.py)."""

from __future__ import annotations

import pytest

from tests.packaging import Built, PackagingError, build_package

collect_ignore = ["data"]


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Built:
    try:
        return build_package(tmp_path_factory.mktemp("dist"))
    except PackagingError as err:
        pytest.fail(f"the package does not build: {err}", pytrace=False)
