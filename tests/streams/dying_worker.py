"""`python -m tests.streams.dying_worker worker ...`: the real worker CLI with one agent made to die (test only).

STOCKLEDGER_TEST_DIE names the agent: `fold` raises out of the fold agent's first step, `admit` out of
the inventory.changes admit agent's first step. The worker must then answer /health 503 naming it and
exit non-zero (streams/faustfix/vitals.py); the stop delay is lengthened so a loaded machine's test sees
the 503 before the exit.
"""

from __future__ import annotations

import os
import sys

from streams import admit, fold
from streams.faustfix import vitals

DIE = os.environ.get("STOCKLEDGER_TEST_DIE", "")
vitals.STOP_DELAY = float(os.environ.get("STOCKLEDGER_TEST_STOP_DELAY", "20"))

if DIE == "fold":
    async def step(self, events):  # noqa: ANN001
        raise RuntimeError("injected: the fold step failed")

    fold.Folder.step = step
elif DIE == "admit":
    real_admit = admit.admit

    async def dying_admit(p, records, acks):  # noqa: ANN001
        if any(r.topic == "inventory.changes" for r in records):
            raise RuntimeError("injected: the admit step failed")
        await real_admit(p, records, acks)

    admit.admit = dying_admit

if __name__ == "__main__":
    from cli.main import main

    sys.exit(main(sys.argv[1:]))
