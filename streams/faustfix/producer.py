"""Faust's own producer buffer, made larger, for the whole process (a class attribute of faust-streaming).

faust-streaming's `ProducerBuffer` makes the stream wait for a flush every 100 buffered sends
(`max_messages`) and logs a warning each time. The worker's outputs go through its own librdkafka producer
(`streams/outbox.py`); what is left on Faust's producer (its table changelogs, the anchor table's) must not
stall the event loop, so the buffer holds 5000 and its warnings are silenced. Flushes before commits are
unaffected, so at-least-once holds. It is process-wide: every Faust app of the process gets it.
"""

from __future__ import annotations

import logging

from faust.transport.producer import ProducerBuffer

MAX_MESSAGES = 5000


def install() -> None:
    """Raise `ProducerBuffer.max_messages` for the process and quiet `faust.transport.producer`."""
    ProducerBuffer.max_messages = MAX_MESSAGES
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)


__all__ = ["MAX_MESSAGES", "install"]
