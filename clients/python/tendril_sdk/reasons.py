"""The wire catalogues: every ErrorInfo reason (domain ``tendril.dev``) Tendril's services answer.

One :class:`enum.StrEnum` per service, and :class:`BridgeReason` for the job bridge an
executor talks to. A member's value is the reason string on the wire and equals its name, so
members compare equal to the strings a failed call carries::

    from tendril_sdk import LeaseReason, error_reason

    if error_reason(rpc_error) == LeaseReason.LEASE_EXPIRED:
        ...

The protos document, for every RPC, the status code and the reasons it can return ("Errors:"
paragraphs); ``tests/unit/test_error_reasons.py`` checks that every member here is documented
there, that the code raises it with a status code the protos list, and that no code spells a
reason as a string literal.

# NOTE: the catalogues live in the SDK, not in each service package, because their clients
# match them by name from everywhere: the worker's own clients (the tensor-stream client in
# ``tendril.core`` retries ParamserverReason.RUN_NOT_OPEN, the reference scheduler waits out
# LeaseReason.LEASE_NOT_CONFIRMED), executors (which install only ``tendril-sdk``), and
# schedulers or clients written by others, none of which may or wants to import a service
# package. Each service's ``errors.py`` re-exports its catalogue; reasons that never leave a
# process (start-up checks, command-line tools, retries a service hides) are declared next to
# the error type in that package instead.
"""

from __future__ import annotations

import enum

import grpc

__all__ = [
    "ArbiterReason",
    "BridgeReason",
    "DataNodeReason",
    "FetcherReason",
    "GatewayReason",
    "JobReason",
    "LeaseReason",
    "ParamserverReason",
    "SchedulerReason",
    "StreamReason",
    "SubmitReason",
]


class ArbiterReason(enum.StrEnum):
    """ArbiterService (protos/tendril/arbiter/v1/arbiter.proto)."""

    REQUEST_MISSING = "REQUEST_MISSING"  # Solicit without a ResourceRequest
    REQUEST_INVALID = "REQUEST_INVALID"  # the ResourceRequest breaks a rule (ids, deadline, resources, ...)
    NOT_THE_SCHEDULER = "NOT_THE_SCHEDULER"  # the caller solicits for another scheduler id
    ARBITER_STOPPING = "ARBITER_STOPPING"  # the arbiter is shutting down and takes no requests


class GatewayReason(enum.StrEnum):
    """BusService and RegistryService (protos/tendril/gateway/v1/gateway.proto)."""

    TOPIC_MISSING = "TOPIC_MISSING"  # a bus topic is empty
    TOPIC_TOO_LONG = "TOPIC_TOO_LONG"  # a bus topic is over 256 characters
    PAYLOAD_MISSING = "PAYLOAD_MISSING"  # Publish without a payload
    KIND_MISSING = "KIND_MISSING"  # a registry record kind is empty
    KIND_TOO_LONG = "KIND_TOO_LONG"  # a registry record kind is too long
    ID_MISSING = "ID_MISSING"  # a registry record id is empty
    ID_TOO_LONG = "ID_TOO_LONG"  # a registry record id is too long
    TTL_INVALID = "TTL_INVALID"  # a record's ttl_seconds is not in (0, max]
    RECORD_NOT_FOUND = "RECORD_NOT_FOUND"  # no live record of that kind and id
    WATCH_OVERFLOW = "WATCH_OVERFLOW"  # a registry watcher fell 1024 events behind and was cut off
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"  # the gateway's Redis (gateway.backend = redis) cannot be reached
    RECORD_TOO_LARGE = "RECORD_TOO_LARGE"  # a Put record is over the gateway's max_record_bytes
    RECORD_NOT_OWNED = "RECORD_NOT_OWNED"  # Put/Delete of a live record the caller does not own
    PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"  # a List page_token the gateway did not give for that kind
    RATE_LIMITED = "RATE_LIMITED"  # Put/Publish faster than the caller's rate (RetryInfo says when to retry)


class LeaseReason(enum.StrEnum):
    """LeaseService (protos/tendril/lease/v1/lease.proto)."""

    CALLER_UNKNOWN = "CALLER_UNKNOWN"  # the call names no peer id (metadata or certificate)
    NOT_THE_WORKER = "NOT_THE_WORKER"  # Reserve/Confirm from anyone but the worker itself
    NOT_THE_OWNER = "NOT_THE_OWNER"  # Renew/Release of a lease the caller does not own
    LEASE_ID_MISSING = "LEASE_ID_MISSING"  # lease_id is empty
    LEASE_ID_TOO_LONG = "LEASE_ID_TOO_LONG"  # lease_id is over 256 characters
    OWNER_ID_MISSING = "OWNER_ID_MISSING"  # Reserve without an owner_id
    OWNER_ID_TOO_LONG = "OWNER_ID_TOO_LONG"  # owner_id is over 256 characters
    REQUEST_ID_TOO_LONG = "REQUEST_ID_TOO_LONG"  # request_id is over 256 characters
    RESOURCES_INVALID = "RESOURCES_INVALID"  # resources are negative or not finite
    RESOURCES_EMPTY = "RESOURCES_EMPTY"  # every resource is zero
    PRICE_INVALID = "PRICE_INVALID"  # price is negative or not finite
    TTL_INVALID = "TTL_INVALID"  # ttl_seconds is outside [0, the renewable lease time]
    DOES_NOT_FIT = "DOES_NOT_FIT"  # the resources exceed what is free
    LEASE_NOT_FOUND = "LEASE_NOT_FOUND"  # no live lease has that id (never existed, released, expired)
    LEASE_EXPIRED = "LEASE_EXPIRED"  # Renew/Confirm of a lease that expired
    WATCH_OVERFLOW = "WATCH_OVERFLOW"  # a watcher fell 1024 events behind and was cut off


class JobReason(enum.StrEnum):
    """JobService (protos/tendril/job/v1/job.proto)."""

    SHUTTING_DOWN = "SHUTTING_DOWN"  # Dispatch while the JobService stops
    CANNOT_RUN_JOBS = "CANNOT_RUN_JOBS"  # Dispatch while the worker's disk or jobs.db fails its check
    CALLER_UNKNOWN = "CALLER_UNKNOWN"  # the call names no peer id (as LeaseReason.CALLER_UNKNOWN)
    BAD_JOB_ID = "BAD_JOB_ID"  # job_id is not 1-64 letters, digits, '.', '_' or '-' (tendril.core.ids)
    LEASE_ID_MISSING = "LEASE_ID_MISSING"  # Dispatch without a lease_id
    BAD_LEASE_ID = "BAD_LEASE_ID"  # lease_id is over 256 characters (tendril.core.ids.KEY)
    EXECUTOR_MISSING = "EXECUTOR_MISSING"  # Dispatch without executor class and name
    BAD_TIMEOUT = "BAD_TIMEOUT"  # the job timeout is not a valid Duration, negative or over a year
    BAD_CONFIG = "BAD_CONFIG"  # the dispatch config holds a number that is NaN or infinite
    BAD_STATE = "BAD_STATE"  # List names a state JobState does not declare (or JOB_STATE_UNSPECIFIED)
    REASON_TOO_LONG = "REASON_TOO_LONG"  # Cancel's reason is over 1024 characters
    BAD_COORDINATOR_ADDRESS = "BAD_COORDINATOR_ADDRESS"  # coordinator_address is not host:port
    EXECUTOR_NOT_CONFIGURED = "EXECUTOR_NOT_CONFIGURED"  # the worker has no such [[executors]] entry
    SOCKET_PATH_TOO_LONG = "SOCKET_PATH_TOO_LONG"  # the job's bridge socket path would not fit a Unix socket
    BAD_EXECUTOR_COMMAND = "BAD_EXECUTOR_COMMAND"  # the executor's command is empty or has an unknown placeholder
    EXECUTOR_START_FAILED = "EXECUTOR_START_FAILED"  # the executor's command could not be started
    LEASE_NOT_FOUND = "LEASE_NOT_FOUND"  # the lease is not live on this worker
    LEASE_NOT_OWNED = "LEASE_NOT_OWNED"  # the lease belongs to another scheduler
    LEASE_NOT_RENEWABLE = "LEASE_NOT_RENEWABLE"  # the lease is still temporary
    LEASE_EXPIRED = "LEASE_EXPIRED"  # the lease has expired
    LEASE_SERVICE_UNAVAILABLE = "LEASE_SERVICE_UNAVAILABLE"  # the LeaseService did not answer the lease check
    LEASE_CHECK_FAILED = "LEASE_CHECK_FAILED"  # the LeaseService refused the lease check
    JOB_EXISTS = "JOB_EXISTS"  # the job id was used before on this worker
    TOO_MANY_JOBS = "TOO_MANY_JOBS"  # job.max_concurrent_jobs jobs are running
    JOB_NOT_FOUND = "JOB_NOT_FOUND"  # no job with that id on this worker
    NOT_JOB_OWNER = "NOT_JOB_OWNER"  # Cancel of a job the caller does not own
    JOB_STARTING = "JOB_STARTING"  # Cancel of a job whose dispatch is still in progress
    WATCH_OVERFLOW = "WATCH_OVERFLOW"  # a watcher fell behind and was cut off
    JOB_NOT_ENDED = "JOB_NOT_ENDED"  # ListResults/FetchResult/DeleteResults of a job still pending or running
    RESULTS_NOT_READY = "RESULTS_NOT_READY"  # the job ended but the clean-up that keeps its results is retried
    RESULTS_GONE = "RESULTS_GONE"  # the job's results were deleted (DeleteResults, retention) or none were kept
    RESULT_NOT_FOUND = "RESULT_NOT_FOUND"  # FetchResult of a path the manifest does not list
    BAD_RESULT_PATH = "BAD_RESULT_PATH"  # FetchResult's path is empty, absolute, has '.', '..' or NUL, or is too long
    BAD_OFFSET = "BAD_OFFSET"  # FetchResult's offset is past the file's end


class SubmitReason(enum.StrEnum):
    """SubmitService (protos/tendril/submit/v1/submit.proto) and `tendril jobs submit`."""

    BAD_JOB_FILE = "BAD_JOB_FILE"  # job.toml is not TOML or breaks its schema
    NO_OFFER = "NO_OFFER"  # no worker offered within the job's allocation timeout
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"  # the job's worker disappeared more often than retries allows
    DISPATCH_REFUSED = "DISPATCH_REFUSED"  # a worker refused the dispatch for a reason any worker would give
    RESULTS_FETCH_FAILED = "RESULTS_FETCH_FAILED"  # the job ended but its results could not be fetched
    RESULTS_CORRUPT = "RESULTS_CORRUPT"  # a fetched file's sha256 differed from the manifest's twice


class FetcherReason(enum.StrEnum):
    """DataFetcherService (protos/tendril/data/v1/data.proto)."""

    JOB_ID_MISSING = "JOB_ID_MISSING"  # job_id is empty
    BAD_JOB_ID = "BAD_JOB_ID"  # job_id is not 1-64 letters, digits, '.', '_' or '-' (as JobService's)
    WORKER_ID_MISSING = "WORKER_ID_MISSING"  # OpenJob without a worker_id
    BAD_WORKER_ID = "BAD_WORKER_ID"  # OpenJob's worker_id is not a peer id (tendril.core.ids.PEER_ID)
    COORDINATOR_MISSING = "COORDINATOR_MISSING"  # OpenJob without a coordinator_address
    BAD_COORDINATOR_ADDRESS = "BAD_COORDINATOR_ADDRESS"  # coordinator_address is not host:port or unix:PATH
    BAD_PREFETCH = "BAD_PREFETCH"  # prefetch is outside 0..32
    JOB_ALREADY_OPEN = "JOB_ALREADY_OPEN"  # OpenJob of an open job with another scheduler or worker
    JOB_NOT_OPEN = "JOB_NOT_OPEN"  # the job is not open here (never opened, closed, or the DataFetcher restarted)
    JOB_CLOSED = "JOB_CLOSED"  # the job was closed while NextSlice waited
    FETCHER_STOPPING = "FETCHER_STOPPING"  # the DataFetcher stopped while NextSlice waited
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"  # the scheduler did not answer AssignSlice (after retries)
    UPSTREAM_REFUSED = "UPSTREAM_REFUSED"  # the scheduler or data node refused (its code and reason in metadata)
    BAD_ASSIGNMENT = "BAD_ASSIGNMENT"  # the scheduler's slice assignment is unusable
    SLICE_LARGER_THAN_CACHE = "SLICE_LARGER_THAN_CACHE"  # the slice is bigger than the whole cache
    DATA_NODE_UNAVAILABLE = "DATA_NODE_UNAVAILABLE"  # the data node failed several attempts in a row
    CACHE_WRITE_FAILED = "CACHE_WRITE_FAILED"  # the slice could not be written into the cache (disk full, ...)
    # NOTE: not StreamReason.SHA256_MISMATCH: that one is a damaged transfer (send it again);
    # this one is a slice whose source disagrees with its assignment (skip to the next slice).
    SLICE_SHA256_MISMATCH = "SLICE_SHA256_MISMATCH"  # the slice failed verification twice
    PREFETCH_FAILED = "PREFETCH_FAILED"  # the prefetch loop failed unexpectedly (a bug; see the log)


class DataNodeReason(enum.StrEnum):
    """DataNodeService (protos/tendril/data/v1/data.proto)."""

    DATASET_NOT_FOUND = "DATASET_NOT_FOUND"  # the node serves another data set
    NO_SLICE = "NO_SLICE"  # FetchSlice without a slice_name
    BAD_SLICE_NAME = "BAD_SLICE_NAME"  # slice_name is not a plain file name
    SLICE_NOT_FOUND = "SLICE_NOT_FOUND"  # the manifest has no such slice
    OFFSET_OUT_OF_RANGE = "OFFSET_OUT_OF_RANGE"  # offset is past the end of the slice


class StreamReason(enum.StrEnum):
    """A tensor stream broke its contract (protos/tendril/tensor/v1/tensor.proto).

    Raised by the receivers in :mod:`tendril.core.streaming`; the ParameterServer answers
    them on its push RPCs (protos/tendril/paramserver/v1/paramserver.proto).
    """

    BAD_CODEC = "BAD_CODEC"  # an unknown codec (enum value or name)
    BAD_HEADER = "BAD_HEADER"  # the header is malformed or the stream did not start with one
    BAD_CHUNK = "BAD_CHUNK"  # a pulled stream sent something else than a chunk after its header
    BAD_FRAME = "BAD_FRAME"  # a stream message is not valid protobuf
    OUT_OF_ORDER = "OUT_OF_ORDER"  # a chunk does not start where the received bytes end
    EMPTY_CHUNK = "EMPTY_CHUNK"  # a chunk carries no bytes
    TOO_LONG = "TOO_LONG"  # a chunk runs past the payload's total_bytes
    INCOMPLETE = "INCOMPLETE"  # the stream ended before total_bytes arrived
    SHA256_MISMATCH = "SHA256_MISMATCH"  # the payload's sha256 differs from the header's
    DIGEST_MISMATCH = "DIGEST_MISMATCH"  # the payload's digest (xxh3-128, ...) differs from the header's
    DATA_CONNECTION_LOST = "DATA_CONNECTION_LOST"  # the data connection broke before the payload was through
    BAD_PAYLOAD = "BAD_PAYLOAD"  # the payload is not SafeTensors or disagrees with the header


class ParamserverReason(enum.StrEnum):
    """ParameterServerService (protos/tendril/paramserver/v1/paramserver.proto).

    Its push RPCs also answer :class:`StreamReason`.
    """

    BAD_RUN_ID = "BAD_RUN_ID"  # run_id is not a valid run id (tendril.core.ids.RUN_ID)
    BAD_WORKER_ID = "BAD_WORKER_ID"  # a worker id (push header, PullUpdate, SetExpectedWorkers) is not a peer id
    NOT_RUN_OWNER = "NOT_RUN_OWNER"  # SetExpectedWorkers from another peer than the run's owner (OpenJob's owner_id)
    BAD_RUN_CONFIG = "BAD_RUN_CONFIG"  # OpenJob's aggregation settings are inconsistent
    RUN_NOT_OPEN = "RUN_NOT_OPEN"  # no OpenJob for the run on this server (yet)
    RUN_CLOSED = "RUN_CLOSED"  # the run was closed (CloseJob): no pushes, no more rounds
    RUN_FINISHED = "RUN_FINISHED"  # every round of the run closed
    NO_PARAMETERS = "NO_PARAMETERS"  # no θ0 yet: PushParameters comes first
    HEADER_MISSING = "HEADER_MISSING"  # a push did not start with a header
    UNEXPECTED_HEADER = "UNEXPECTED_HEADER"  # a second header in a push
    WORKER_ID_MISSING = "WORKER_ID_MISSING"  # a push header without worker_id
    BAD_WEIGHT = "BAD_WEIGHT"  # an update's weight is not a finite number > 0
    STREAM_ID_REUSED = "STREAM_ID_REUSED"  # a stream_id already carries another payload
    LAYOUT_MISMATCH = "LAYOUT_MISMATCH"  # an update's tensors differ from θ's
    NON_FINITE_UPDATE = "NON_FINITE_UPDATE"  # an update holds NaN or Inf
    NON_FINITE_PARAMETERS = "NON_FINITE_PARAMETERS"  # θ0 holds NaN or Inf
    ROUND_CLOSED = "ROUND_CLOSED"  # a push for a round that closed (or closed while it was in flight)
    ROUND_NOT_OPEN = "ROUND_NOT_OPEN"  # a push or pull for a round after the open one
    ALREADY_COMMITTED = "ALREADY_COMMITTED"  # the worker already committed for the round
    BAD_OFFSET = "BAD_OFFSET"  # a pull offset past the payload, or a θ0 resume at the wrong byte
    BAD_TIMEOUT = "BAD_TIMEOUT"  # PullUpdate's timeout_seconds is negative or not finite
    UPDATE_GONE = "UPDATE_GONE"  # the round's update is no longer kept (in memory, the last 4 rounds at most)
    PUSH_LOST = "PUSH_LOST"  # the puller's committed update of the open round was lost in a restart: push it again
    ROUND_STILL_OPEN = "ROUND_STILL_OPEN"  # PullUpdate's wait ran out before the round closed
    PAYLOAD_REPLACED = "PAYLOAD_REPLACED"  # a pulled payload was replaced just as it was opened
    AGGREGATION_FAILED = "AGGREGATION_FAILED"  # computing a round's update failed (disk, bug)
    WATCH_OVERFLOW = "WATCH_OVERFLOW"  # a WatchRound watcher fell 1024 changes behind and was cut off


class SchedulerReason(enum.StrEnum):
    """AllocationService and CoordinationService as the reference scheduler serves them.

    (protos/tendril/scheduler/v1/scheduler.proto)
    """

    MISSING_FIELD = "MISSING_FIELD"  # a required field is empty (metadata "field" names it)
    BAD_EXPIRES_AT = "BAD_EXPIRES_AT"  # an offer's expires_at is not a valid Timestamp
    BAD_PROGRESS_KIND = "BAD_PROGRESS_KIND"  # ReportProgress with an unknown kind
    BAD_BATCH = "BAD_BATCH"  # a BATCH report with batch_size 0, or a batch_seconds that is negative or not finite
    UNKNOWN_JOB = "UNKNOWN_JOB"  # the job is not a live training job of the run
    WRONG_WORKER = "WRONG_WORKER"  # the job runs on another worker
    STALE_ROUND = "STALE_ROUND"  # a report for a round before the job's current one
    NO_DATASET = "NO_DATASET"  # AssignSlice before the scheduler read the data set manifest


class BridgeReason(enum.StrEnum):
    """JobBridgeService (protos/tendril/bridge/v1/bridge.proto): every ErrorInfo reason a job
    bridge answers — its own, and those of the services behind it that it passes on.

    Members compare equal to their wire string (``BridgeReason.ROUND_CLOSED ==
    "ROUND_CLOSED"``). A reason not listed here (a newer worker, another scheduler) stays a
    plain ``str`` in :attr:`~tendril_sdk.errors.BridgeError.reason`. Codes are given as the
    bridge answers them.
    """

    # -- the bridge itself -------------------------------------------------------------------
    BAD_BRIDGE_TOKEN = "BAD_BRIDGE_TOKEN"
    """UNAUTHENTICATED, every RPC: no ``authorization: Bearer <token>`` metadata, or a wrong token."""
    PATH_NOT_CONFINED = "PATH_NOT_CONFINED"
    """INVALID_ARGUMENT: a path is empty, absolute, has ``..`` or a NUL byte, or leaves the work dir."""
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    """NOT_FOUND, SendUpdate/PublishParameters: ``path`` is not a file in the work dir (write it first)."""
    BAD_FILE = "BAD_FILE"
    """INVALID_ARGUMENT, SendUpdate/PublishParameters: the file is not a SafeTensors file that can be sent."""
    BAD_WEIGHT = "BAD_WEIGHT"
    """INVALID_ARGUMENT, SendUpdate: ``weight`` must be a finite number > 0."""
    BAD_TIMEOUT = "BAD_TIMEOUT"
    """INVALID_ARGUMENT, ReceiveUpdate: ``timeout_seconds`` is negative, NaN or infinite."""
    BAD_FRAGMENT = "BAD_FRAGMENT"
    """INVALID_ARGUMENT, SendUpdate/ReceiveUpdate/PublishParameters/FetchParameters: ``fragment`` is
    set but is not below the job's ``config.fragments`` (streaming sync)."""
    JOB_CONFIG_MISSING = "JOB_CONFIG_MISSING"
    """FAILED_PRECONDITION: the job's config lacks a key the RPC needs (``metadata["key"]``)."""
    JOB_CONFIG_BAD = "JOB_CONFIG_BAD"
    """FAILED_PRECONDITION: a key of the job's config has a value the bridge cannot use (``metadata["key"]``)."""
    NO_SCHEDULER = "NO_SCHEDULER"
    """FAILED_PRECONDITION, NextSlice/ReportProgress: the job was dispatched without a scheduler."""
    BAD_URI = "BAD_URI"
    """INVALID_ARGUMENT, FetchResource: not a file:///absolute, http://, https:// URI of a file or a
    ``tendril-data://<dataset_id>/<asset name>`` URI."""
    BAD_SHA256 = "BAD_SHA256"
    """INVALID_ARGUMENT, FetchResource: ``sha256`` is not 64 hex digits."""
    BAD_DIGEST = "BAD_DIGEST"
    """INVALID_ARGUMENT, SendUpdate: ``digest`` names an unknown algorithm or hex digits that are not its."""
    BAD_DEST = "BAD_DEST"
    """INVALID_ARGUMENT, FetchResource: the URI has no file name and no ``dest`` was given."""
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    """NOT_FOUND, FetchResource: the file:// source does not exist."""
    RESOURCE_OUTSIDE_ROOTS = "RESOURCE_OUTSIDE_ROOTS"
    """PERMISSION_DENIED, FetchResource: the file:// source is neither in the job's work dir nor in a directory of
    the worker's ``job.fetch_roots``."""
    RESOURCE_FORBIDDEN = "RESOURCE_FORBIDDEN"
    """PERMISSION_DENIED, FetchResource: the worker may not read the file:// source."""
    RESOURCE_HTTP_ERROR = "RESOURCE_HTTP_ERROR"
    """FetchResource: the HTTP server answered an error (404/410 NOT_FOUND, 401/403
    PERMISSION_DENIED, 5xx UNAVAILABLE, else FAILED_PRECONDITION)."""
    RESOURCE_UNREACHABLE = "RESOURCE_UNREACHABLE"
    """UNAVAILABLE, FetchResource: cannot connect to the URI's host."""
    ASSET_NOT_FOUND = "ASSET_NOT_FOUND"
    """NOT_FOUND, FetchResource: the data node of a ``tendril-data://`` URI serves another data set, or its
    manifest lists no asset of that name."""
    DATA_NODE_UNREACHABLE = "DATA_NODE_UNREACHABLE"
    """UNAVAILABLE, FetchResource: the data node of a ``tendril-data://`` URI (the job's ``config.data_node``)
    does not answer; retry."""
    RESOURCE_TRANSFER = "RESOURCE_TRANSFER"
    """UNAVAILABLE (RESOURCE_EXHAUSTED when the disk is full), FetchResource: the download broke off."""
    SHA256_MISMATCH = "SHA256_MISMATCH"
    """DATA_LOSS: downloaded or streamed bytes do not have the expected sha256; nothing was kept."""
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    """DATA_LOSS: streamed bytes do not have the digest (xxh3-128) their header promised; nothing was kept."""
    DATA_CONNECTION_LOST = "DATA_CONNECTION_LOST"
    """UNAVAILABLE, SendUpdate/ReceiveUpdate/PublishParameters/FetchParameters: the parameter server's data
    connection kept breaking; retry."""
    SLICE_MISSING = "SLICE_MISSING"
    """UNAVAILABLE, NextSlice: the cached slice vanished before it was linked; call again."""
    BRIDGE_SOCKET_FAILED = "BRIDGE_SOCKET_FAILED"
    """INTERNAL: the bridge could not listen on its socket (JobService answers Dispatch with it)."""
    NOT_AGGREGATE_JOB = "NOT_AGGREGATE_JOB"
    """PERMISSION_DENIED, OpenRun/WatchRun/CloseRun: only jobs of executor class "aggregate" run a run
    on the worker's parameter server."""
    RUN_NOT_OWNED = "RUN_NOT_OWNED"
    """PERMISSION_DENIED, OpenRun/WatchRun/CloseRun: ``run_id`` is not the job's ``config.run_id``
    (``metadata["run_id"]`` is); leave it empty."""

    # -- a peer behind the bridge failed without a reason of its own --------------------------
    # The bridge keeps the peer's status code (CANCELLED and UNKNOWN, which a service cannot
    # answer with, become UNAVAILABLE; UNIMPLEMENTED becomes FAILED_PRECONDITION) and names the
    # peer in the message.
    REMOTE_CANCELLED = "REMOTE_CANCELLED"
    """UNAVAILABLE: the peer's call was cancelled (it is stopping); retry."""
    REMOTE_UNKNOWN = "REMOTE_UNKNOWN"
    """UNAVAILABLE: the peer failed without saying how (the call broke off); retry."""
    REMOTE_INVALID_ARGUMENT = "REMOTE_INVALID_ARGUMENT"
    """INVALID_ARGUMENT from the peer."""
    REMOTE_DEADLINE_EXCEEDED = "REMOTE_DEADLINE_EXCEEDED"
    """DEADLINE_EXCEEDED: the peer did not answer in time."""
    REMOTE_NOT_FOUND = "REMOTE_NOT_FOUND"
    """NOT_FOUND from the peer."""
    REMOTE_ALREADY_EXISTS = "REMOTE_ALREADY_EXISTS"
    """ALREADY_EXISTS from the peer."""
    REMOTE_PERMISSION_DENIED = "REMOTE_PERMISSION_DENIED"
    """PERMISSION_DENIED: the peer does not accept this worker."""
    REMOTE_RESOURCE_EXHAUSTED = "REMOTE_RESOURCE_EXHAUSTED"
    """RESOURCE_EXHAUSTED: the peer is overloaded or a message was too large."""
    REMOTE_FAILED_PRECONDITION = "REMOTE_FAILED_PRECONDITION"
    """FAILED_PRECONDITION from the peer."""
    REMOTE_ABORTED = "REMOTE_ABORTED"
    """ABORTED: the peer gave the call up (a newer call took over); retry."""
    REMOTE_OUT_OF_RANGE = "REMOTE_OUT_OF_RANGE"
    """OUT_OF_RANGE from the peer."""
    REMOTE_UNIMPLEMENTED = "REMOTE_UNIMPLEMENTED"
    """FAILED_PRECONDITION: the address in the job's config is not the service it should be (UNIMPLEMENTED)."""
    REMOTE_INTERNAL = "REMOTE_INTERNAL"
    """INTERNAL: the peer failed (or the connection broke mid-call)."""
    REMOTE_UNAVAILABLE = "REMOTE_UNAVAILABLE"
    """UNAVAILABLE: the peer cannot be reached; retry."""
    REMOTE_DATA_LOSS = "REMOTE_DATA_LOSS"
    """DATA_LOSS from the peer."""
    REMOTE_UNAUTHENTICATED = "REMOTE_UNAUTHENTICATED"
    """UNAUTHENTICATED: the peer did not accept the worker's credentials."""

    # -- the parameter server (SendUpdate, ReceiveUpdate, PublishParameters, FetchParameters; ---
    # -- and the worker's own for OpenRun, WatchRun, CloseRun) -------------------------------
    RUN_NOT_OPEN = "RUN_NOT_OPEN"
    """NOT_FOUND: the run's aggregate job has not opened it yet (it starts a moment later); retry.
    From WatchRun/CloseRun: the worker's parameter server does not have the run open; OpenRun again."""
    NO_PARAMETERS = "NO_PARAMETERS"
    """FAILED_PRECONDITION: nobody published θ0 for the run yet (PublishParameters first)."""
    ROUND_CLOSED = "ROUND_CLOSED"
    """FAILED_PRECONDITION, SendUpdate: the round closed without this update; fetch θ and join the open round."""
    ROUND_NOT_OPEN = "ROUND_NOT_OPEN"
    """FAILED_PRECONDITION: the round is not open (not reached yet); fetch θ and join the open round."""
    RUN_FINISHED = "RUN_FINISHED"
    """FAILED_PRECONDITION, SendUpdate: the run's last round is over."""
    RUN_CLOSED = "RUN_CLOSED"
    """FAILED_PRECONDITION: the run was closed (its aggregate job ended)."""
    ALREADY_COMMITTED = "ALREADY_COMMITTED"
    """ALREADY_EXISTS, SendUpdate: this worker's update for the round already counts (a retried send)."""
    ROUND_STILL_OPEN = "ROUND_STILL_OPEN"
    """DEADLINE_EXCEEDED, ReceiveUpdate: the round did not close within the timeout."""
    UPDATE_GONE = "UPDATE_GONE"
    """FAILED_PRECONDITION, ReceiveUpdate: the round's update is no longer kept; fetch θ instead."""
    PUSH_LOST = "PUSH_LOST"
    """FAILED_PRECONDITION, ReceiveUpdate: the parameter server lost this worker's update of the round (it
    restarted) and the bridge holds no copy to send again (no SendUpdate of the round through it); fetch θ instead."""
    LAYOUT_MISMATCH = "LAYOUT_MISMATCH"
    """INVALID_ARGUMENT: the file's tensors (names, shapes) differ from the run's θ0."""
    NON_FINITE_UPDATE = "NON_FINITE_UPDATE"
    """INVALID_ARGUMENT, SendUpdate: the update holds NaN or Inf."""
    NON_FINITE_PARAMETERS = "NON_FINITE_PARAMETERS"
    """INVALID_ARGUMENT, PublishParameters: θ0 holds NaN or Inf."""
    AGGREGATION_FAILED = "AGGREGATION_FAILED"
    """INTERNAL, ReceiveUpdate/WatchRun: the parameter server could not close the round (OpenRun resumes it)."""
    # OpenRun, WatchRun, CloseRun (the job's run on the worker's own parameter server)
    BAD_RUN_ID = "BAD_RUN_ID"
    """INVALID_ARGUMENT, OpenRun: the job's ``config.run_id`` is not a valid run id (1-128 of A-Z a-z 0-9 . _ -)."""
    BAD_RUN_CONFIG = "BAD_RUN_CONFIG"
    """INVALID_ARGUMENT, OpenRun: expected_workers, quorum, timeout, outer_lr or outer_momentum is out of range."""
    BAD_CODEC = "BAD_CODEC"
    """INVALID_ARGUMENT, OpenRun: the codec is not a known value."""
    WATCH_OVERFLOW = "WATCH_OVERFLOW"
    """ABORTED, WatchRun: the watch fell behind the run's changes and was cut off; watch again."""
    # The bridge's own sends and fetches to the parameter server gave up:
    PUSH_STALLED = "PUSH_STALLED"
    """UNAVAILABLE, SendUpdate/PublishParameters: the parameter server took no byte of several resumed sends; retry."""
    NOT_COMMITTED = "NOT_COMMITTED"
    """INTERNAL, SendUpdate: the parameter server took the whole update without counting it."""
    PULL_CUT_SHORT = "PULL_CUT_SHORT"
    """UNAVAILABLE, ReceiveUpdate/FetchParameters: the parameter server's stream kept ending early; retry."""

    # -- the DataFetcher (NextSlice) ---------------------------------------------------------
    JOB_NOT_OPEN = "JOB_NOT_OPEN"
    """NOT_FOUND: the DataFetcher does not know the job (it restarted twice in a row); retry."""
    JOB_CLOSED = "JOB_CLOSED"
    """FAILED_PRECONDITION: the job was closed at the DataFetcher; no more slices for it."""
    FETCHER_STOPPING = "FETCHER_STOPPING"
    """UNAVAILABLE: the DataFetcher is stopping and hands out no more slices until it is back; retry."""
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    """UNAVAILABLE: the scheduler or the data node could not be reached; retry."""
    UPSTREAM_REFUSED = "UPSTREAM_REFUSED"
    """FAILED_PRECONDITION: the scheduler refused to assign a slice (``metadata["upstream_reason"]``)."""
    DATA_NODE_UNAVAILABLE = "DATA_NODE_UNAVAILABLE"
    """UNAVAILABLE: the data node failed repeatedly while the slice was downloaded; retry."""
    SLICE_SHA256_MISMATCH = "SLICE_SHA256_MISMATCH"
    """DATA_LOSS: the slice arrived damaged twice; call NextSlice again for the next one."""
    CACHE_WRITE_FAILED = "CACHE_WRITE_FAILED"
    """RESOURCE_EXHAUSTED: the worker's disk is full; FAILED_PRECONDITION: its slice cache cannot be
    written for another reason (permissions, a read-only or failing disk). The worker's operator
    must act; the job goes on with the next slice."""
    SLICE_LARGER_THAN_CACHE = "SLICE_LARGER_THAN_CACHE"
    """FAILED_PRECONDITION: a slice does not fit the worker's slice cache."""
    BAD_ASSIGNMENT = "BAD_ASSIGNMENT"
    """FAILED_PRECONDITION: the scheduler's assignment is unusable (bad name, size or hash)."""
    PREFETCH_FAILED = "PREFETCH_FAILED"
    """INTERNAL: the DataFetcher's prefetch failed unexpectedly (see the DataFetcher's log)."""

    # -- the scheduler (ReportProgress, as the reference scheduler answers) -------------------
    UNKNOWN_JOB = "UNKNOWN_JOB"
    """NOT_FOUND: the scheduler does not count this job in its run (it was dropped); stop."""
    STALE_ROUND = "STALE_ROUND"
    """FAILED_PRECONDITION: the report names a round older than one already reported."""
    BAD_PROGRESS_KIND = "BAD_PROGRESS_KIND"
    """INVALID_ARGUMENT: the report's kind is not set."""
    BAD_BATCH = "BAD_BATCH"
    """INVALID_ARGUMENT: a BATCH report needs batch_size > 0."""

    @classmethod
    def remote(cls, code: grpc.StatusCode) -> BridgeReason:
        """The reason the bridge answers when a peer failed with ``code`` and no reason of its own."""
        return cls(f"REMOTE_{code.name}")

    @classmethod
    def parse(cls, reason: str) -> BridgeReason | str:
        """The member for a wire string, or the string itself when it is not a known reason."""
        try:
            return cls(reason)
        except ValueError:
            return reason
