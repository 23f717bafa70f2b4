# SPDX-License-Identifier: MIT
"""What a guest boots when it is not its image's own Debian kernel, and how --kernel chooses:
choice.py (image recipes, kernel recipes, paths), prepare.py (build and prepare a choice),
recipe.py and build.py (kernels built from source with config fragments, fragments.py),
custom.py (a kernel you built, with its modules disk: modules_disk.py), and what a kernel
file or build tree holds (image_format.py, layout.py, config.py).
"""
