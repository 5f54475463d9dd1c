"""LeaseService: the worker's ledger of reservations (temporary and renewable leases) in SQLite.

``python -m tendril.services.leases --config-json FILE`` serves it on ``leases.listen``; the
ledger lives at ``<state_dir>/leases.db`` and survives a crash (see :mod:`.ledger`).
"""
