"""The pure functional core of stockledger: business rules over frozen dataclasses.

No Kafka, Faust, SQL or IO here; the shell decodes, looks up state, calls these
functions, stores the returned state and emits what they return.
"""
