"""faust-streaming #440: an app without tables (and `table_standby_replicas=0`) cannot join its group.

Its assignor then offers the group no protocol metadata and the broker refuses the join with
InconsistentGroupProtocolError, so the worker never gets partitions. The fold keeps its state in its
own stores (`streams.state`), so the app declares one empty table that is never written.
"""

from __future__ import annotations

from typing import Any

import faust


def anchor_table(app: Any, partitions: int) -> Any:
    return app.Table("anchor", partitions=partitions, default=None,
                     schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"))
