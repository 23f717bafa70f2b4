# SPDX-License-Identifier: MIT
"""The package carries what runs beside the Python: the conformance suite, our driver's C source
and the image recipes, so that an installed wheel runs `vfio-harness run` with no checkout.

They stay where the project keeps them (tests/uapi, kmod/, vm_images/: MANIFEST.in puts them in
the sdist) and are copied into the wheel as harness/_bundle/, in the checkout's layout, beside
a pytest.ini that makes the bundle pytest's rootdir. harness/core/resources.py finds them there.
Editable installs get no bundle: they find the checkout itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLE = "harness/_bundle"
TREES = ("tests/uapi", "kmod", "vm_images")
FILES = ("tests/__init__.py",)  # the suite imports itself as tests.uapi
# Nothing that a build or a test run leaves in the source tree.
LEFT_OUT = ("__pycache__", "*.py[co]", "*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "*.order",
            "Module.symvers", ".tmp_versions")  # fmt: skip
PYTEST_INI = """\
# Written by setup.py: makes this directory pytest's rootdir for the installed suite, and
# stops pytest from taking a configuration file from the directories above site-packages.
[pytest]
"""


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        bundle = Path(self.build_lib) / BUNDLE
        shutil.rmtree(bundle, ignore_errors=True)  # nothing stale from an earlier build
        for tree in TREES:
            shutil.copytree(HERE / tree, bundle / tree, ignore=shutil.ignore_patterns(*LEFT_OUT))
        for name in FILES:
            shutil.copy2(HERE / name, bundle / name)
        (bundle / "pytest.ini").write_text(PYTEST_INI)


setup(cmdclass={"build_py": BuildPyWithBundle})
