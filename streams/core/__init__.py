"""The pure functional core of stockledger: business rules over frozen dataclasses.

No Kafka, Faust, SQL or IO here. `fold.fold` applies one admitted event to its tenant's
state (read and written through a two-method `State`) and returns the outputs in order;
the shell admits events, keeps the state in its tables and sends what the fold returns.
"""
