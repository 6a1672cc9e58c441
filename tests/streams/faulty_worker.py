"""`python -m tests.streams.faulty_worker worker ...`: the real worker CLI with a consumer fault installed (test only).

The fault hooks live on the ordered consumer's transport (streams/faustfix/consumer.py, 0 = off); no
production setting or flag reaches them. STOCKLEDGER_TEST_FAULT_DROP_EVERY=N makes the consumer drop every
Nth dense record it fetched, STOCKLEDGER_TEST_FAULT_CLEAR_EVERY=N empty the agents' buffers while every Nth
is being delivered: the ways faust-streaming loses records around rebalances and recovery
(tests/streams/test_faults.py proves such records are read again, in order).
"""

from __future__ import annotations

import os
import sys

from streams.faustfix.consumer import OrderedTransport

OrderedTransport.drop_every = int(os.environ.get("STOCKLEDGER_TEST_FAULT_DROP_EVERY", "0"))
OrderedTransport.clear_every = int(os.environ.get("STOCKLEDGER_TEST_FAULT_CLEAR_EVERY", "0"))

if __name__ == "__main__":
    from cli.main import main

    sys.exit(main(sys.argv[1:]))
