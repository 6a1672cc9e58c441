"""Outbound stock webhooks (issue 12, SPEC section 7): `stockledger notify` and `stockledger webhook ...`.

- `payload`: the seed 003 `inventory.change` body of a stock.levels record, its event_id, the signature.
- `subscriptions`: who gets what (secrets sealed at rest), and the secret resolver.
- `state`: the delivery state per (subscription, SKU) in PostgreSQL: pending newest level, claims,
  results, failures.
- `breaker`: seed 001's circuit breaker per endpoint.
- `worker`: the connector worker (consumes stock.levels, delivers over HTTP).
- `metrics`: Prometheus metrics. The commands are cli/notify.py.
"""
