"""PostgreSQL connector workers: the ledger topics written into the books exactly once, and replay.

`sink` (the worker), `rows` (records -> rows), `store` (the
database side of a batch), `dlq` (dead letters), `replay` (sink, stream and DLQ replays),
The schema (tables, migrations) is `stockledger.db`; the commands are cli/connectors.py.
See connectors/README.md.
"""
