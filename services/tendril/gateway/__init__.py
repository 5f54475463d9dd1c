"""Gateway: the entry point of a Tendril network — a topic bus and a registry of records with TTL.

Run it on its own with ``tendril gateway run --listen ADDR`` (:func:`service.run_gateway`), or
embedded by the supervisor as ``python -m tendril.gateway --config-json FILE``
(listens on ``gateway.embedded_listen``).
"""
