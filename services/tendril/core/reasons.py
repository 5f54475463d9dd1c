"""The wire catalogues: every ErrorInfo reason (domain ``tendril.dev``) a service answers with.

One :class:`enum.StrEnum` per service; a member's value is the reason string on the wire and
equals its name. The protos document, for every RPC, the status code and the reasons it can
return ("Errors:" paragraphs); ``tests/unit/test_error_reasons.py`` checks that every member
here is documented there and that code never spells a reason as a string literal.

# NOTE: the catalogues live in the common core, not in each service package, because their
# clients match them by name across the import map: the tensor-stream client (core) retries
# ParamserverReason.RUN_NOT_OPEN, the reference scheduler waits out
# LeaseReason.LEASE_NOT_CONFIRMED, and neither may import a service package. Each service's
# ``errors.py`` re-exports its catalogue; reasons that never leave a process (start-up
# checks, command-line tools) are declared next to the error type in that package instead.
# This module imports nothing from Tendril, so it can move to the SDK as it is.
"""

from __future__ import annotations

import enum


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
    NO_PEER_ID = "NO_PEER_ID"  # Dispatch that names no caller
    BAD_JOB_ID = "BAD_JOB_ID"  # job_id is not 1-64 of [A-Za-z0-9._-]
    LEASE_ID_MISSING = "LEASE_ID_MISSING"  # Dispatch without a lease_id
    EXECUTOR_MISSING = "EXECUTOR_MISSING"  # Dispatch without executor class and name
    BAD_TIMEOUT = "BAD_TIMEOUT"  # the job timeout is negative or not finite
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


class FetcherReason(enum.StrEnum):
    """DataFetcherService (protos/tendril/data/v1/data.proto)."""

    JOB_ID_MISSING = "JOB_ID_MISSING"  # job_id is empty
    BAD_JOB_ID = "BAD_JOB_ID"  # job_id is not 1-128 letters, digits, '.', '_' or '-'
    WORKER_ID_MISSING = "WORKER_ID_MISSING"  # OpenJob without a worker_id
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
    CACHE_WRITE_FAILED = "CACHE_WRITE_FAILED"  # the slice could not be written into the cache
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
    BAD_PAYLOAD = "BAD_PAYLOAD"  # the payload is not SafeTensors or disagrees with the header


class ParamserverReason(enum.StrEnum):
    """ParameterServerService (protos/tendril/paramserver/v1/paramserver.proto).

    Its push RPCs also answer :class:`StreamReason`.
    """

    BAD_RUN_ID = "BAD_RUN_ID"  # job_id is not a valid run id
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
    BAD_TIMEOUT = "BAD_TIMEOUT"  # PullUpdate's timeout_seconds is negative
    UPDATE_GONE = "UPDATE_GONE"  # the round's update is no longer kept (the last 4 are)
    ROUND_STILL_OPEN = "ROUND_STILL_OPEN"  # PullUpdate's wait ran out before the round closed
    PAYLOAD_REPLACED = "PAYLOAD_REPLACED"  # a pulled payload was replaced just as it was opened
    AGGREGATION_FAILED = "AGGREGATION_FAILED"  # computing a round's update failed (disk, bug)
    WATCH_OVERFLOW = "WATCH_OVERFLOW"  # a WatchRound watcher fell 1024 changes behind and was cut off


class SchedulerReason(enum.StrEnum):
    """AllocationService and CoordinationService as the reference scheduler serves them.

    (protos/tendril/scheduler/v1/scheduler.proto)
    """

    MISSING_FIELD = "MISSING_FIELD"  # a required field is empty (metadata "field" names it)
    BAD_PROGRESS_KIND = "BAD_PROGRESS_KIND"  # ReportProgress with an unknown kind
    BAD_BATCH = "BAD_BATCH"  # a BATCH report with batch_size 0
    UNKNOWN_JOB = "UNKNOWN_JOB"  # the job is not a live training job of the run
    WRONG_WORKER = "WRONG_WORKER"  # the job runs on another worker
    STALE_ROUND = "STALE_ROUND"  # a report for a round before the job's current one
    NO_DATASET = "NO_DATASET"  # AssignSlice before the scheduler read the data set manifest
