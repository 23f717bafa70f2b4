# SPDX-License-Identifier: MIT
"""Checking framework of the nested steps: results by check name, failures that name
their step, and prerequisites (the assertions are harness.core.checks).

Every check has a name "<step>.<what>"; `Results` maps it to "ok" or to a message that says
which step broke and how. A check whose prerequisite failed is reported as not run, naming
it, so one broken step gives one clear failure instead of a cascade.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.core.checks import CheckError

STEP_TITLES = {
    "1": "QEMU opens the mdev through the VFIO API and reads its regions and IRQs",
    "2": "the guest sees our PCI device: IDs, BARs, MSI capability",
    "3": "trapped BAR accesses reach the vendor driver, mmap-ed ones do not",
    "4": "DMA: QEMU maps guest memory, the device pins it and copies both ways, unmap unpins",
    "5": "the completion interrupt reaches the guest (MSI and INTx)",
}


@dataclass
class Results:
    results: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # What each step is, by its number: harness.mgmt's checks bring their own steps.
    titles: Mapping[str, str] = field(default_factory=lambda: STEP_TITLES)

    def run(self, name: str, check: Callable[[], None], needs: Sequence[str] = ()) -> bool:
        step = name.split(".", 1)[0]
        missing = [n for n in needs if self.results.get(n) != "ok"]
        if missing:
            self.results[name] = f"not run: needs {', '.join(missing)}, which failed"
            return False
        started = time.monotonic()
        try:
            check()
        except Exception as exc:  # every failure is a result; none stops the others
            kind = "" if isinstance(exc, CheckError) else f"{type(exc).__name__}: "
            self.results[name] = f"step {step} ({self.titles[step]}) broke: {kind}{exc}"
            return False
        finally:
            self.seconds[name] = round(time.monotonic() - started, 3)
        self.results[name] = "ok"
        return True

    def failed(self) -> dict[str, str]:
        return {name: why for name, why in self.results.items() if why != "ok"}
