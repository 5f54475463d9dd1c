"""LeaseService: the worker's ledger of reservations (temporary and renewable leases) in SQLite.

``python -m tendril.lease --config-json FILE`` serves it on ``lease.listen``; the
ledger lives at ``<state_dir>/leases.db`` and survives a crash (see :mod:`.ledger`).
"""
