"""The "aggregate" executor: runs a DiLoCo run on its worker's parameter server, through its job bridge.

``python -m tendril_aggregate --socket {SOCKET_PATH}`` (class ``aggregate``, name ``diloco`` in
the worker's executors). It reads its job's aggregate config (``run_id``, ``expected_workers``,
``quorum``, ``round_timeout_seconds``, ``outer_lr``, ``outer_momentum``, ``codec``, ``rounds``),
opens the run (``OpenRun``), follows its rounds as they change (``WatchRun``) until the last
round closed, then closes it (``CloseRun``; θ and the last updates stay pullable). Like every
executor it talks only to its bridge (``tendril_sdk.BridgeClient``); the bridge knows where the
worker's parameter server is.

Exit codes: 0 when every round is done; 143 after SIGTERM/SIGINT (the run is closed first, its
state kept on disk so a new aggregate job resumes it); 1 when aggregation failed; 2 for a bad
job config or environment.
"""
