"""The example executor: a tiny real program that talks to its job bridge.

Run by JobService as ``python -m tendril_example --socket {SOCKET_PATH}``.

What it does, driven by the job's config (all optional):

* ``GetJob`` and prints the job;
* ``"fetch": "file:///..." | "http(s)://..."`` → ``FetchResource`` into ``artifacts/``
  (``"fetch_sha256"`` is passed as the expected hash);
* writes ``result.json`` (what it did) into its work dir;
* ``"results": {"answer.txt": "42"}`` → writes each file (relative path = text) into the job's
  results folder (``results/``, kept and fetched by the job's owner after the job);
* ``"sleep_seconds": N`` → sleeps N seconds (so tests can cancel it mid-run);
* exits with ``"exit_code"`` (default 0). On SIGTERM it exits at once with code 143.

Writing an executor in any language
-----------------------------------
An executor is any program listed in the worker's ``[[executors]]`` config as an argv
(``command = ["/path/to/prog", "--socket", "{SOCKET_PATH}"]``; no shell). JobService starts it
in its own process group with its work dir as the current directory and these env vars:

* ``SOCKET_PATH`` — the job bridge's Unix socket (``<work_dir>/bridge.sock``);
* ``WORK_DIR`` — the job's private directory (0700);
* ``TENDRIL_RESULTS_DIR`` — ``results``, the folder (relative to ``WORK_DIR``) whose files are
  the job's results: the worker keeps it when the job ends, and the job's owner fetches it;
* ``JOB_JSON`` — ``job.json`` with job id, worker id, lease, owner, executor and config;
* ``TENDRIL_BRIDGE_TOKEN`` — send it on every call as metadata
  ``authorization: Bearer <token>``; a missing or wrong token gets UNAUTHENTICATED.

In Python, the SDK does all of this: ``pip install ./clients/python`` (the ``tendril-sdk``
distribution, without the worker), then ``tendril_sdk.BridgeClient.from_env()`` and one
awaitable method per RPC, as this executor does (see docs/EXECUTORS.md).

The bridge is plain gRPC (``protos/tendril/bridge/v1/bridge.proto``, service
``tendril.bridge.v1.JobBridgeService``) on that socket: generate stubs for your language
with protoc (or call it with ``grpcurl -unix -plaintext -H "authorization: Bearer $TOKEN"
$SOCKET_PATH tendril.bridge.v1.JobBridgeService/GetJob``). Files travel by path relative to
the work dir, never as bytes over the socket. Stdout and stderr go to ``executor.log``,
which ``JobService.Logs`` serves. Exit 0 ends the job SUCCEEDED, anything else FAILED. On
cancel, lease expiry or timeout the group gets SIGTERM, then SIGKILL after the grace period
(5 s by default): stop promptly on SIGTERM.
"""
