# SPDX-License-Identifier: MIT
"""Load/unload cycles of our module: insmod, every type's devices up to available_instances,
each opened with a pinned copy and an INTx, closed, removed, rmmod; N times in one guest.

    tox -e bench -- bench/kmod_cycles.py [--cycles 100] [--kernel bookworm|trixie|sid|debug]

Reports the cycles' time, the devices each used, the kernel's unreclaimable slab and vmalloc
before and after (caches dropped first), kmemleak's unreferenced objects (the debug kernel has
kmemleak; a scan every 10 cycles), and any warning, BUG or splat in the kernel log. A
benchmark: it reports, it does not pass or fail on its numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import uuid
from pathlib import Path
from typing import Any

from harness.images.build import build_image
from harness.kernel.custom import prepare_custom_kernel
from harness.kernel.recipe import build_recipe_kernel, find_kernel_recipe
from harness.kmod.module_cache import build_vendor_module
from harness.kmod.tree_module import build_tree_module
from harness.refdev import contract
from harness.vm.accel import choose_accelerator
from harness.vm.guest_python import run_guest_python
from harness.vm.saved_state import start_vm

GUEST = Path(__file__).parent / "guest" / "load_unload.py"
GUEST_KO = f"/tmp/{contract.MODULE_NAME}.ko"
TROUBLE = re.compile(r"WARNING:|BUG:|Oops|Call Trace|KASAN:|UBSAN:|kmemleak: \d+ new suspected")
SECONDS_PER_CYCLE = 30.0  # the guest script's time limit per cycle, before TCG's stretch


def report(lines: list[dict[str, Any]], trouble: list[str], accelerator: str) -> None:
    final = lines.pop() if "final_kmemleak" in lines[-1] else {}
    first, cycles = lines[0], lines[1:]
    seconds = [line["seconds"] for line in cycles]
    last = cycles[-1]
    scans = [(line["cycle"], line["kmemleak"]) for line in lines if line["kmemleak"] is not None]
    print(f"accelerator: {accelerator}")
    print(f"cycles: {len(cycles)}, devices per cycle: {sorted({c['devices'] for c in cycles})}")
    print(
        f"cycle time: median {statistics.median(seconds):.2f} s, "
        f"min {min(seconds):.2f}, max {max(seconds):.2f}"
    )
    for key, label in (("sunreclaim_kb", "SUnreclaim"), ("vmalloc_kb", "VmallocUsed")):
        after_first = cycles[0][key]
        print(
            f"{label}: {first[key]} kB before, {after_first} kB after cycle 1, "
            f"{last[key]} kB after cycle {last['cycle']} "
            f"({last[key] - after_first:+d} kB over the last {len(cycles) - 1} cycles)"
        )
    if final.get("final_kmemleak") is None:
        print("kmemleak: not in this kernel")
    else:
        counts = ", ".join(f"{n} after cycle {c}" for c, n in scans)
        print(f"kmemleak: {counts}; {final['final_kmemleak']} at the end")
        for leak in final["first_leak"]:
            print("\n".join(f"  | {line}" for line in leak[:16]))
    print(f"kernel log: {len(trouble)} warning/BUG/splat lines")
    for line in trouble[:20]:
        print(f"  | {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--kernel", default="bookworm", help="an image, or debug")
    args = parser.parse_args()
    accelerator = choose_accelerator()
    if args.kernel == "debug":
        build = build_recipe_kernel(find_kernel_recipe("debug"))
        image, bundle = build_image("bookworm"), prepare_custom_kernel(build.build_dir)
        module = build_tree_module(build.build_dir)
    else:
        image, bundle = build_image(args.kernel), None
        module = build_vendor_module(image)
    with start_vm(image, kernel=bundle, accelerator=accelerator) as vm:
        marker = f"vfio-harness kmod_cycles {uuid.uuid4()}"
        vm.run(f"echo '{marker}' >/dev/kmsg")
        vm.ssh.put(module, GUEST_KO)
        run = run_guest_python(
            vm,
            GUEST.read_text(encoding="utf-8"),
            args=(GUEST_KO, str(args.cycles)),
            timeout=SECONDS_PER_CYCLE * args.cycles,
        )
        log = vm.run("dmesg").split(marker, 1)[-1]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    trouble = [line for line in log.splitlines() if TROUBLE.search(line)]
    report(lines, trouble, accelerator.name)


if __name__ == "__main__":
    main()
