"""Arbiter: reads resource requests (gateway bus topic or direct Solicit), filters and scores them
in windows, reserves a temporary lease and offers it to the winning schedulers.

The decision logic (:mod:`.policy`, :mod:`.window`, :mod:`.engine`) has no gRPC in it; the
gRPC edges are :mod:`.clients` (LeaseService, schedulers), :mod:`.bus` (the gateway
subscription) and :mod:`.servicer`.
"""
