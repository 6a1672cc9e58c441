"""What the consumer last committed for a partition: faust-streaming keeps it in a private field.

The fold drops a store's undo history below the committed offset of its tenant-log partition
(`streams/fold.py`, `streams/state.py`); Faust has no public accessor for what it committed, only
`Consumer._committed_offset` (a dict TP -> offset, updated after each commit). Reading it here keeps
every touch of Faust's private fields inside `faustfix/`.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP


def committed_offset(app: Any, topic: str, partition: int) -> int | None:
    """The offset the app's consumer last committed for `topic`[`partition`], None if none yet."""
    return app.consumer._committed_offset.get(TP(topic, partition))  # noqa: SLF001


__all__ = ["committed_offset"]
