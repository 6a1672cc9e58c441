"""`stockledger api`: the seeds' HTTP doors in front of the topics (SPEC section 6).

Modules by concern: `app` (routes and the request pipeline), `problems` (RFC 9457 answers),
`auth` (credentials; tenants are in `stockledger.tenants`), `idempotency` (Idempotency-Key and webhook nonces),
`ratelimit`, `publisher` (the idempotent producer), `outcomes` (the pipeline's answers),
`workers` (the workers' reads), `events` (request bodies -> contract events), `webhooks`
(signatures), `db` (PostgreSQL off the event loop).
Its command (`stockledger api`, `stockledger tenant`) is in cli/api.py.
"""
