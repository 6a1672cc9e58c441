"""The `stockledger` command, the top layer (ARCHITECTURE.md): it owns every flag and calls each service's
entry point (streams.worker.run, api.server.serve, connectors' Sink/Notifier/replay).

`main` (the parser and the small commands), `flags` (connection flags and settings shared by the
commands), `api`, `connectors`, `notify` (those services' commands), `stack` (the local stack),
`demo` + `api_demo` (`stockledger demo`), `testing` (process helpers for the tests, benchmarks and demo).
"""
