# SPDX-License-Identifier: MIT
"""The package is the product: the wheel built from the sdist holds the whole harness, the
conformance suite, kmod/ and vm_images/ (setup.py's bundle), with clean metadata.

The build is real (`python -m build`, with setuptools from the package index); installing and
running the wheel is in tests/vm/test_installed.py and tests/vm/test_bare_metal.py.
"""

from __future__ import annotations

import email
import email.message
import re
import subprocess
import tarfile
import zipfile

import pytest

from tests.packaging import CHECKOUT, Built, build_package

BUNDLE = "harness/_bundle"
BUNDLED_TREES = ("tests/uapi", "kmod", "vm_images")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_package(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def wheel_names(built: Built) -> set[str]:
    with zipfile.ZipFile(built.wheel) as wheel:
        return set(wheel.namelist())


@pytest.fixture(scope="module")
def metadata(built: Built) -> email.message.Message:
    with zipfile.ZipFile(built.wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(wheel.read(name))


def tracked(*paths: str) -> set[str]:
    """The checkout's files under `paths`, as git knows them (nothing a run left behind)."""
    result = subprocess.run(
        ["git", "-C", str(CHECKOUT), "ls-files", "--", *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"not a git checkout ({result.stderr.strip()}): nothing to compare with")
    return set(result.stdout.split())


def test_the_wheel_bundles_the_suite_kmod_and_recipes_as_in_the_checkout(
    wheel_names: set[str],
) -> None:
    expected = {f"{BUNDLE}/{name}" for name in tracked(*BUNDLED_TREES)}
    expected |= {f"{BUNDLE}/tests/__init__.py", f"{BUNDLE}/pytest.ini"}
    bundled = {name for name in wheel_names if name.startswith(f"{BUNDLE}/")}
    assert bundled == expected
    assert f"{BUNDLE}/tests/uapi/conftest.py" in bundled
    assert f"{BUNDLE}/kmod/Kbuild" in bundled


def test_the_wheel_holds_every_module_of_the_harness_and_its_data(
    wheel_names: set[str],
) -> None:
    package = {n for n in tracked("harness") if not n.startswith(f"{BUNDLE}/")}
    assert package <= wheel_names, f"missing from the wheel: {sorted(package - wheel_names)}"
    assert "harness/py.typed" in wheel_names


def test_the_sdist_carries_what_the_wheel_is_built_from(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {n.removeprefix(f"{top}/") for n in sdist.getnames()}
    needed = tracked("harness", *BUNDLED_TREES, "tests", "bench")
    needed |= {"setup.py", "pyproject.toml", "LICENSE", "README.md", "tox.ini"}
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"


def test_the_licence_is_an_spdx_expression_with_both_texts(
    metadata: email.message.Message, wheel_names: set[str]
) -> None:
    assert metadata["License-Expression"] == "MIT AND GPL-2.0-only"
    assert sorted(metadata.get_all("License-File") or []) == ["LICENSE", "kmod/LICENSE"]
    assert any(n.endswith(".dist-info/licenses/kmod/LICENSE") for n in wheel_names)


def test_no_dependency_is_listed_twice(metadata: email.message.Message) -> None:
    requirements = metadata.get_all("Requires-Dist") or []
    names = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements]
    assert len(names) == len(set(names)), requirements
    assert {"pytest", "paramiko", "cryptography", "pytest-xdist"} <= set(names)
