"""The Faust ceiling: an empty faust-streaming agent over a topic's raw records, run as its own process.

    python benchmarks/_faust_empty.py --bootstrap HOST:PORT --topic T --app-id ID -n N [--timeout S]

One agent, `async for event in stream.events(): count += 1`, over `--topic` with raw bytes keys and
values (no decoding), in an app with the broker settings of `streams/app.py` `create_app`
(at_least_once, 1 s commits, 10 s session, 10 ms producer linger, memory store). Its group is the app
id: the caller commits that group's offsets where the count should start (`_common.faust_ceiling`).

When the N-th event arrives it prints one JSON line on stdout and exits at once:
`{"n": N, "first_to_last_s": ..., "start_to_first_s": ...}`: seconds from the first
event to the N-th (start-up and the first fetch excluded) and from process start to the first event.
It exits by itself (code 3, `{"timeout": ...}` on stdout) after `--timeout` seconds in any case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

T_START = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--datadir", default=None, help="Faust's data folder (nothing is stored: memory store)")
    ap.add_argument("-n", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    def give_up() -> None:
        print(json.dumps({"timeout": args.timeout, "seen": state["count"]}), flush=True)
        os._exit(3)

    state = {"count": 0, "first": 0.0}
    watchdog = threading.Timer(args.timeout, give_up)
    watchdog.daemon = True
    watchdog.start()

    import faust
    from faust.worker import Worker

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=args.datadir or f"/tmp/faust-empty-{args.app_id}",
        topic_partitions=args.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        producer_linger_ms=10,
        producer_max_batch_size=1_000_000,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset="earliest",
        producer_partitioner=None,
        stream_wait_empty=False,
        # create_app sets table_standby_replicas=0; with no table at all that fails at start-up
        # (faust-streaming #440), and standbys are moot without tables, so the default stays.
    )
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                      partitions=args.partitions)
    n = args.n

    @app.agent(topic)
    async def empty(stream):  # noqa: ANN001
        count = 0
        async for _event in stream.events():
            count += 1
            if count == 1:
                state["first"] = time.perf_counter()
            if count == n:
                done = time.perf_counter()
                print(json.dumps({"n": n, "first_to_last_s": done - state["first"],
                                  "start_to_first_s": state["first"] - T_START}), flush=True)
                os._exit(0)
            state["count"] = count

    sys.argv = [sys.argv[0], "worker"]
    Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
