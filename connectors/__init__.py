"""PostgreSQL connector workers: the ledger topics written into the books exactly once, and replay.

`sink` (the worker), `tables` + `migrations` (the schema), `rows` (records -> rows), `store` (the
database side of a batch), `dlq` (dead letters), `replay` (sink, stream and DLQ replays),
`commands` (the CLI). See connectors/README.md.
"""
