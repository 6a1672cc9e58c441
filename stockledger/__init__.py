"""stockledger: stock, credit and books kept consistent across POS, web and ERP events on Kafka.

This package is the bottom layer (ARCHITECTURE.md): the contract and the parts every process shares.
`topics` + the Avro files in stockledger/schemas/ (the contract), `config` (the one `Settings`),
`codec` + `registry` (Confluent wire format, the registry client), `jsonconv` (JSON <-> Avro),
`deadletter` (the one dead-letter builder), `security` + `tenants` (secrets, tenants and their
credentials), `db/` (tables and migrations), `produce` / `consume` / `mapping` (Kafka client settings,
                                                                                publishing and reading records).
It imports nothing of streams/, connectors/, api/ or cli/.
"""

__version__ = "0.1.0"
