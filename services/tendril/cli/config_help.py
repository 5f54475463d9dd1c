"""One sentence per config key: what it does. `tendril worker init` writes these as comments.

Keys are ``section.key`` exactly as in :mod:`tendril.core.config`; a unit test fails
when a key there has no sentence here (or a sentence here names no key), so the generated
worker.toml can never drift from the code.
"""

from __future__ import annotations

HELP: dict[str, str] = {
    # [worker]
    "worker.id": "Id of this worker in the network; empty means worker-<hostname>.",
    "worker.state_dir": (
        "Directory for the worker's databases, logs and run files; empty means "
        "$XDG_STATE_HOME/tendril/<id> (or ~/.local/state/tendril/<id>)."
    ),
    "worker.work_dir": "Directory under which each job gets its job-<id>/ folder; empty means <state_dir>/work.",
    "worker.advertise_host": (
        "Host name or IP other peers use to reach this worker's services; empty means the listen host."
    ),
    "worker.port_offset": (
        "Added to every service listen port (and the metrics port), so several workers can share one host."
    ),
    # [gateway]
    "gateway.address": (
        "host:port of the network's gateway to join; empty starts an embedded gateway on embedded_listen."
    ),
    "gateway.embedded_listen": "Where the embedded gateway listens when gateway.address is empty.",
    "gateway.registry_ttl_seconds": (
        "Lifetime of this worker's registry record; the supervisor refreshes it every third of this time."
    ),
    # [resources]
    "resources.cpu": "CPU cores offered to schedulers; negative means detect (cores usable by this process).",
    "resources.memory_gib": "Memory in GiB offered to schedulers; negative means detect (total RAM).",
    "resources.storage_gib": "Disk in GiB offered to schedulers; negative means detect (free space under work_dir).",
    "resources.gpu": "Whole GPUs offered to schedulers; negative means detect through NVML (0 without a driver).",
    # [arbiter]
    "arbiter.listen": "Address the Arbiter (offers, Solicit, ListOffers) listens on.",
    "arbiter.topic": "Gateway bus topic on which schedulers publish resource requests.",
    "arbiter.strategy": (
        "'whole' offers the whole worker at max(price, bid); 'flexible' offers just what was asked at the bid."
    ),
    "arbiter.price": "Price this worker asks; also the price published in its registry record.",
    "arbiter.floor": "Requests bidding below this are dropped without an offer.",
    "arbiter.window_size": "Most requests read before one scoring round.",
    "arbiter.window_seconds": "Longest wait for more requests before one scoring round.",
    "arbiter.offer_timeout_seconds": "How long a scheduler may take to answer an offer before it is withdrawn.",
    "arbiter.allowed_schedulers": "Scheduler ids this worker makes offers to; empty allows every scheduler.",
    # [leases]
    "lease.listen": "Address the LeaseService listens on.",
    "lease.temporary_seconds": "Lifetime of the temporary lease that holds resources while an offer is open.",
    "lease.renewable_seconds": "Lifetime of an accepted lease; each renewal extends it to now + this.",
    "lease.prune_interval_seconds": "How often expired leases are pruned (and their jobs cancelled).",
    # [jobs]
    "job.listen": "Address the JobService listens on.",
    "job.max_concurrent_jobs": "Most jobs running at once; further dispatches are refused (RESOURCE_EXHAUSTED).",
    "job.default_timeout_seconds": "Run-time limit of a job that sets none; 0 means no limit.",
    "job.kill_grace_seconds": "Time between SIGTERM and SIGKILL when a job is cancelled or its lease ends.",
    "job.keep_work_dirs": "Keep each job-<id>/ folder after the job ends instead of removing it.",
    # [data_fetcher]
    "data_fetcher.listen": "Address the DataFetcher listens on.",
    "data_fetcher.cache_bytes": "Byte bound of the data slice cache shared by all jobs (least recently used goes).",
    "data_fetcher.prefetch": "Slices fetched ahead of the one a job is reading.",
    # [paramserver]
    "paramserver.listen": "Address the ParameterServer listens on.",
    # [supervisor]
    "supervisor.start_timeout_seconds": "Longest wait for a service process to report SERVING before giving up.",
    "supervisor.stop_timeout_seconds": (
        "Budget for a clean stop; processes still alive after it are killed (SIGKILL)."
    ),
    "supervisor.restart_backoff_seconds": "Delay before the first restart of a crashed service; doubles each time.",
    "supervisor.restart_backoff_max_seconds": "Upper bound of the restart delay.",
    # [telemetry]
    "telemetry.log_level": "Lowest log level written: debug, info, warning or error.",
    "telemetry.log_format": "'json', 'console', or 'auto' (console on a terminal, JSON lines otherwise).",
    "telemetry.metrics_listen": (
        "Where the supervisor serves GET /metrics (Prometheus) for all of the worker's processes; see "
        "docs/OBSERVABILITY.md."
    ),
    # [tls]
    "tls.ca_file": (
        "PEM of the CA that signed every peer's certificate; with cert_file and key_file set, all TCP traffic is "
        "mTLS (all three empty: plaintext)."
    ),
    "tls.cert_file": "This worker's certificate (CN = its worker id), e.g. from `tendril certs issue`.",
    "tls.key_file": "The private key of cert_file (keep it mode 0600).",
    "tls.require_client_cert": "Servers refuse callers without a certificate from the CA; false: server-only TLS.",
}

EXECUTORS_HELP = (
    "Executors this worker can run, one [[executors]] table each; a list here replaces the default list. "
    "class and name are what schedulers ask for; command is the argv (no shell) with the placeholders "
    "{SOCKET_PATH}, {WORK_DIR}, {JOB_JSON} and {PYTHON} (this worker's interpreter); env adds variables."
)
