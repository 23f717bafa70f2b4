# SPDX-License-Identifier: MIT
"""KCOV PCs normalised: the same code gives the same number whatever KASLR and module load
addresses a boot chose."""

from __future__ import annotations

from harness.fuzz.pcs import TAG_SHIFT, PcMap, module_tag

LINKED = 0xFFFFFFFF81000000


def boot(text: int, mdev: int, ours: int) -> PcMap:
    kallsyms = [f"{text:016x} T _text", f"{text + 0x1000:016x} T _stext", "0 T other"]
    modules = [
        f"vfio_harness_mdev 81920 0 - Live {ours:#x} (O)",
        f"mdev 20480 1 vfio_harness_mdev, Live {mdev:#x}",
    ]
    return PcMap.parse(kallsyms, modules, LINKED)


def test_the_same_code_normalises_alike_on_two_boots() -> None:
    first = boot(LINKED, 0xFFFFFFFFA0000000, 0xFFFFFFFFA0010000)  # nokaslr
    second = boot(0xFFFFFFFF8B000000, 0xFFFFFFFFC0200000, 0xFFFFFFFFC0100000)
    assert second.kaslr_offset == 0x0A000000
    # KCOV takes KASLR's offset off what it records: kernel and module PCs alike.
    for a, b in (
        (0xFFFFFFFF81001234, 0xFFFFFFFF81001234),  # kernel text
        (0xFFFFFFFFA0010040, 0xFFFFFFFFC0100040 - 0x0A000000),  # our module
        (0xFFFFFFFFA0000010, 0xFFFFFFFFC0200010 - 0x0A000000),  # mdev.ko
    ):
        assert first.normalise(a) == second.normalise(b)


def test_modules_and_kernel_are_told_apart() -> None:
    pcs = boot(LINKED, 0xFFFFFFFFA0000000, 0xFFFFFFFFA0010000)
    ours = pcs.normalise(0xFFFFFFFFA0010040)
    assert ours >> TAG_SHIFT == module_tag("vfio_harness_mdev")
    assert pcs.normalise(0xFFFFFFFF81001040) >> TAG_SHIFT == 0
    assert pcs.describe(ours) == "vfio_harness_mdev+0x40"
    assert pcs.describe(pcs.normalise(0xFFFFFFFF81001040)) == "kernel+0x40"  # from _stext
    # past a module's end is not the module
    assert pcs.normalise(0xFFFFFFFFA0010000 + 81920) >> TAG_SHIFT == 0
    assert PcMap.parse(["ffffffff8b000000 T _text"], [], None).kaslr_offset == 0
