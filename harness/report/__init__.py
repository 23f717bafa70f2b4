# SPDX-License-Identifier: MIT
"""What a run leaves for people and tools: results.json (`results.py`), comparisons of two
runs or two kernels (`compare.py`). Plain data and functions: no pytest, no VM."""
