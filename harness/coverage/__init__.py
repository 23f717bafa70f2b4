# SPDX-License-Identifier: MIT
"""Line coverage of the driver under test and of the VFIO core, from the kernel's own gcov.

A kernel built with CONFIG_GCOV_KERNEL (the debug kernel) counts, for every object compiled for
it (its recipe's `coverage` directories, and the modules built against it), how often each
basic block ran; debugfs shows the counters as .gcda files beside the object's path. `guest`
copies them out of a VM before it goes; `gcov` turns counters and the build's notes (.gcno)
into executed lines with the compiler's own gcov tool, sums VMs, and writes lcov's format;
`report` makes the per-file table, the lcov file and genhtml's pages of a run.
"""
