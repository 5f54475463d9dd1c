"""The executor's client of its job bridge (``tendril.bridge.v1.JobBridgeService``).

JobService starts every executor with env ``SOCKET_PATH`` (the bridge's Unix socket),
``TENDRIL_BRIDGE_TOKEN`` and ``JOB_JSON``; :meth:`BridgeClient.from_env` reads them. The
client sends ``authorization: Bearer <token>`` on every call, gives every call a deadline,
retries failures its :class:`~tendril_sdk.retry.RetryPolicy` calls transient (by default
UNAVAILABLE — the worker or a service behind the bridge is briefly away — for up to 60 s),
and raises everything else as :class:`~tendril_sdk.errors.BridgeError` with the ErrorInfo
reason (a :class:`~tendril_sdk.errors.BridgeReason`).

Paths: requests take paths relative to the work dir (an absolute path inside the work dir is
made relative); answers carry both the relative path and the absolute one.

An "aggregate" job runs its DiLoCo run on its worker's own parameter server with
:meth:`BridgeClient.open_run`, :meth:`BridgeClient.watch_run` and :meth:`BridgeClient.close_run`
(only the run its config names).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.paramserver.v1 import paramserver_pb2
from tendril_proto.scheduler.v1 import scheduler_pb2
from tendril_proto.tensor.v1 import tensor_pb2
from tendril_sdk import tracing
from tendril_sdk.errors import BridgeError, ExecutorEnvError
from tendril_sdk.job import JOB_JSON_ENV, RESULTS_DIR, ExecutorRef, JobDescriptor
from tendril_sdk.retry import RetryPolicy, retry

__all__ = [
    "CODECS",
    "DEFAULT_RETRY",
    "SOCKET_ENV",
    "TOKEN_ENV",
    "BridgeClient",
    "Directive",
    "DirectiveKind",
    "FetchedParameters",
    "FetchedResource",
    "Job",
    "OpenedRun",
    "ProgressKind",
    "PublishedParameters",
    "ReceivedUpdate",
    "RunState",
    "RunStatus",
    "SentUpdate",
    "Slice",
]

T = TypeVar("T")

SOCKET_ENV = "SOCKET_PATH"
TOKEN_ENV = "TENDRIL_BRIDGE_TOKEN"
WORK_DIR_ENV = "WORK_DIR"
AUTHORIZATION_KEY = "authorization"

# NOTE: the bridge is on the same host; UNAVAILABLE means JobService (or a service behind the
# bridge: DataFetcher, parameter server, scheduler) is briefly away. Other codes are answers.
DEFAULT_RETRY = RetryPolicy(
    codes=frozenset({grpc.StatusCode.UNAVAILABLE}),
    attempts=None,
    deadline=60.0,
    initial_backoff=0.2,
    max_backoff=5.0,
)

# Seconds per attempt. Transfers and waits for the parameter server take long; the others
# answer from the worker's own memory or disk.
TIMEOUTS: Mapping[str, float] = {
    "GetJob": 10.0,
    "FetchResource": 300.0,
    "NextSlice": 600.0,
    "SendUpdate": 600.0,
    "PublishParameters": 600.0,
    "FetchParameters": 600.0,
    "ReportProgress": 30.0,
    "OpenRun": 30.0,
    "CloseRun": 30.0,
}
# ReceiveUpdate waits up to its timeout_seconds (0: the job's round_timeout_seconds, else the
# bridge's default) at the parameter server; the call gets this much more.
RECEIVE_MARGIN_SECONDS = 60.0
DEFAULT_ROUND_TIMEOUT_SECONDS = 600.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # NOTE: a restarted JobService is back within seconds; gRPC's default reconnect backoff
    # would grow to 120 s and keep every retry failing fast long after it came back.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


class ProgressKind(enum.StrEnum):
    """What a progress report says (``tendril.scheduler.v1.ProgressKind``)."""

    BATCH = "batch"
    METRICS = "metrics"
    UPDATE_SENT = "update_sent"
    UPDATE_RECEIVED = "update_received"
    FINISHED = "finished"

    def to_proto(self) -> scheduler_pb2.ProgressKind:
        """The proto enum value (``PROGRESS_KIND_<NAME>``)."""
        return _PROGRESS_KINDS[self]


_PROGRESS_KINDS: Mapping[ProgressKind, scheduler_pb2.ProgressKind] = {
    ProgressKind.BATCH: scheduler_pb2.PROGRESS_KIND_BATCH,
    ProgressKind.METRICS: scheduler_pb2.PROGRESS_KIND_METRICS,
    ProgressKind.UPDATE_SENT: scheduler_pb2.PROGRESS_KIND_UPDATE_SENT,
    ProgressKind.UPDATE_RECEIVED: scheduler_pb2.PROGRESS_KIND_UPDATE_RECEIVED,
    ProgressKind.FINISHED: scheduler_pb2.PROGRESS_KIND_FINISHED,
}


class DirectiveKind(enum.StrEnum):
    """What the scheduler wants next (``tendril.scheduler.v1.Directive``)."""

    CONTINUE = "continue"
    SCHEDULE_UPDATE = "schedule_update"
    DONE = "done"


_DIRECTIVES = {
    scheduler_pb2.DIRECTIVE_UNSPECIFIED: DirectiveKind.CONTINUE,
    scheduler_pb2.DIRECTIVE_CONTINUE: DirectiveKind.CONTINUE,
    scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE: DirectiveKind.SCHEDULE_UPDATE,
    scheduler_pb2.DIRECTIVE_DONE: DirectiveKind.DONE,
}


@dataclasses.dataclass(frozen=True)
class Directive:
    """The scheduler's answer to a progress report: continue, send the update after
    ``batches_until_update`` more batches, or stop (done)."""

    kind: DirectiveKind
    batches_until_update: int = 0
    round: int = 0


# Wire codecs of tensor streams by the names job configs use ("fp32" for CODEC_FP32, ...),
# read off the proto enum ``tendril.tensor.v1.Codec`` so that a codec exists in one place.
CODECS: Mapping[str, tensor_pb2.Codec] = {
    name.removeprefix("CODEC_").lower(): value
    for name, value in tensor_pb2.Codec.items()
    if value != tensor_pb2.CODEC_UNSPECIFIED
}
# Digest algorithms by the names a digest string starts with ("xxh3-128:<hex>"), from the enum
# ``tendril.tensor.v1.DigestAlgorithm`` ("DIGEST_ALGORITHM_XXH3_128" -> "xxh3-128").
DIGEST_ALGORITHMS: Mapping[str, tensor_pb2.DigestAlgorithm] = {
    name.removeprefix("DIGEST_ALGORITHM_").lower().replace("_", "-"): value
    for name, value in tensor_pb2.DigestAlgorithm.items()
    if value != tensor_pb2.DIGEST_ALGORITHM_UNSPECIFIED
}


class RunState(enum.StrEnum):
    """Where a DiLoCo run is as a whole (``tendril.paramserver.v1.RunState``)."""

    OPEN = "open"
    FINISHED = "finished"  # its last round closed; that round's update is served
    CLOSED = "closed"  # closed (CloseRun); θ and the last updates stay served


_RUN_STATES: Mapping[paramserver_pb2.RunState, RunState] = {
    paramserver_pb2.RUN_STATE_OPEN: RunState.OPEN,
    paramserver_pb2.RUN_STATE_FINISHED: RunState.FINISHED,
    paramserver_pb2.RUN_STATE_CLOSED: RunState.CLOSED,
}


@dataclasses.dataclass(frozen=True)
class OpenedRun:
    """OpenRun's answer: the run, its current round, and whether it resumed from saved state."""

    run_id: str
    round: int
    resumed: bool


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """One WatchRun message: the state of the run's current round."""

    run_id: str
    round: int
    round_closed: bool  # the round takes no more pushes (its update is computed, or the run is over)
    committed_workers: tuple[str, ...]
    expected_workers: int
    rounds: int  # 0: unbounded
    state: RunState

    @property
    def ended(self) -> bool:
        """The run finished or was closed: the watch ends with this message."""
        return self.state is not RunState.OPEN


def _run_status(status: paramserver_pb2.RoundStatus) -> RunStatus:
    return RunStatus(
        run_id=status.run_id,
        round=status.round,
        round_closed=status.state == paramserver_pb2.ROUND_STATE_CLOSED,
        committed_workers=tuple(status.committed_workers),
        expected_workers=status.expected_workers,
        rounds=status.rounds,
        # NOTE: a state this client does not know (a newer worker) is read as OPEN: the watch goes on.
        state=_RUN_STATES.get(status.run_state, RunState.OPEN),
    )


@dataclasses.dataclass(frozen=True)
class Job:
    """GetJob's answer; ``config`` is the dispatch config as plain Python values."""

    job_id: str
    worker_id: str
    executor: ExecutorRef
    config: dict[str, Any]
    work_dir: Path
    results_dir: Path = Path(RESULTS_DIR)  # absolute once from GetJob: where the job's results go


@dataclasses.dataclass(frozen=True)
class FetchedResource:
    """A downloaded resource under ``artifacts/``."""

    path: Path  # absolute
    relative: str  # relative to the work dir
    size_bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Slice:
    """A read-only data slice under ``data/`` and the scheduler's assignment of it."""

    path: Path
    relative: str
    assignment: scheduler_pb2.SliceAssignment
    wait_seconds: float


@dataclasses.dataclass(frozen=True)
class SentUpdate:
    bytes_sent: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class ReceivedUpdate:
    """A round's outer update (fp32 SafeTensors; θ_new = θ + u)."""

    path: Path
    relative: str
    bytes_received: int
    seconds: float
    contributors: int


@dataclasses.dataclass(frozen=True)
class PublishedParameters:
    accepted: bool  # these parameters became the run's θ0
    round: int


@dataclasses.dataclass(frozen=True)
class FetchedParameters:
    """The run's current θ (fp32 SafeTensors) and the round it starts."""

    path: Path
    relative: str
    round: int


class BridgeClient:
    """Async calls to one job bridge. Use ``async with`` or call :meth:`close`."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        token: str,
        *,
        work_dir: str | os.PathLike[str] | None = None,
        job: JobDescriptor | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY,
        interceptors: Sequence[Any] | None = None,
    ) -> None:
        """``work_dir`` defaults to the job's, else the socket's directory (the bridge socket
        lives in the work dir). ``interceptors`` (grpc.aio client interceptors) default to the
        tracing ones when :func:`tendril_sdk.tracing.setup` turned tracing on. Nothing connects
        until the first call."""
        if not token:
            raise ExecutorEnvError(f"a bridge client needs the job's token (env {TOKEN_ENV})")
        self.socket_path = Path(socket_path)
        self.job = job
        if work_dir is not None:
            self.work_dir = Path(work_dir)
        elif job is not None:
            self.work_dir = job.work_dir
        else:
            self.work_dir = self.socket_path.parent
        self.retry_policy = retry_policy
        self._metadata = ((AUTHORIZATION_KEY, f"Bearer {token}"),)
        self._interceptors = None if interceptors is None else list(interceptors)
        self._channel: grpc.aio.Channel | None = None
        self._stub_instance: bridge_pb2_grpc.JobBridgeServiceStub | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        socket_path: str | os.PathLike[str] | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY,
    ) -> BridgeClient:
        """The client JobService's environment describes: ``SOCKET_PATH`` (or ``socket_path``),
        ``TENDRIL_BRIDGE_TOKEN``, and ``JOB_JSON`` when set (then :attr:`job` is its content).

        Raises :class:`ExecutorEnvError` naming what is missing.
        """
        env = os.environ if env is None else env
        token = env.get(TOKEN_ENV, "")
        job = JobDescriptor.from_env(env) if env.get(JOB_JSON_ENV) else None
        socket = socket_path or env.get(SOCKET_ENV, "") or (str(job.socket_path) if job is not None else "")
        missing = [name for name, value in ((SOCKET_ENV, socket), (TOKEN_ENV, token)) if not value]
        if missing:
            raise ExecutorEnvError(
                f"env {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; JobService starts "
                f"executors with {SOCKET_ENV} (the job bridge's socket) and {TOKEN_ENV} (its token)"
            )
        work_dir = env.get(WORK_DIR_ENV) or None
        return cls(socket, token, work_dir=work_dir, job=job, retry_policy=retry_policy)

    @property
    def _stub(self) -> bridge_pb2_grpc.JobBridgeServiceStub:
        # NOTE: the channel is opened at the first call, inside the running event loop (grpc.aio
        # binds a channel to the loop it was made in), so a client can be made before asyncio.run.
        if self._stub_instance is None:
            interceptors = tracing.client_interceptors() if self._interceptors is None else self._interceptors
            self._channel = grpc.aio.insecure_channel(
                f"unix:{self.socket_path}", options=list(CHANNEL_OPTIONS), interceptors=interceptors or None
            )
            self._stub_instance = bridge_pb2_grpc.JobBridgeServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub_instance

    async def close(self) -> None:
        """Close the channel (a later call opens a new one)."""
        channel, self._channel, self._stub_instance = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> BridgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` as the bridge wants it: relative to the work dir ("" stays "")."""
        text = os.fspath(path)
        if not text or not os.path.isabs(text):
            return text
        root = self.work_dir.resolve()
        try:
            return Path(text).resolve().relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"{text} is not inside the job's work dir {root}; the bridge takes paths in it") from None

    def _absolute(self, relative: str) -> Path:
        return self.work_dir / relative

    def _round_timeout(self) -> float:
        """How long the bridge waits in ReceiveUpdate when asked for 0: the job's round timeout."""
        configured = (self.job.config if self.job is not None else {}).get("round_timeout_seconds")
        if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
            return float(configured)
        return DEFAULT_ROUND_TIMEOUT_SECONDS

    async def _call(
        self,
        method: str,
        fn: Callable[..., Awaitable[T]],
        request: Any,
        *,
        timeout: float | None,
        policy: RetryPolicy | None = None,
    ) -> T:
        deadline = TIMEOUTS.get(method) if timeout is None else timeout

        async def attempt() -> T:
            try:
                return await fn(request, metadata=self._metadata, timeout=deadline)
            except grpc.aio.AioRpcError as exc:
                raise BridgeError.from_rpc_error(exc, method=method) from None

        return await retry(attempt, policy or self.retry_policy)

    # -- RPCs ----------------------------------------------------------------------------------

    async def get_job(self, *, timeout: float | None = None, retry_policy: RetryPolicy | None = None) -> Job:
        """GetJob: the job's ids, executor and dispatch config."""
        request = bridge_pb2.GetJobRequest()
        reply = await self._call("GetJob", self._stub.GetJob, request, timeout=timeout, policy=retry_policy)
        return Job(
            job_id=reply.job_id,
            worker_id=reply.worker_id,
            executor=ExecutorRef(reply.executor.executor_class, reply.executor.name),
            config=json_format.MessageToDict(reply.config),
            work_dir=Path(reply.work_dir) if reply.work_dir else self.work_dir,
            results_dir=(Path(reply.work_dir) if reply.work_dir else self.work_dir)
            / (reply.results_dir or RESULTS_DIR),
        )

    async def fetch_resource(
        self,
        uri: str,
        *,
        dest: str = "",
        sha256: str = "",
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> FetchedResource:
        """FetchResource: download ``uri`` (file://, http(s)://, or ``tendril-data://<dataset_id>/<asset>``
        from the data node of the job's data set) into ``artifacts/[dest]``; ``sha256`` (hex) is checked
        when given (a data node's asset always against its manifest's)."""
        request = bridge_pb2.FetchResourceRequest(uri=uri, dest=dest, sha256=sha256)
        reply = await self._call(
            "FetchResource", self._stub.FetchResource, request, timeout=timeout, policy=retry_policy
        )
        return FetchedResource(self._absolute(reply.path), reply.path, reply.size_bytes, reply.sha256)

    async def next_slice(self, *, timeout: float | None = None, retry_policy: RetryPolicy | None = None) -> Slice:
        """NextSlice: the next data slice (prefetched by the worker), read-only under ``data/``."""
        request = bridge_pb2.NextSliceRequest()
        reply = await self._call("NextSlice", self._stub.NextSlice, request, timeout=timeout, policy=retry_policy)
        return Slice(self._absolute(reply.path), reply.path, reply.assignment, reply.wait_seconds)

    async def send_update(
        self,
        path: str | os.PathLike[str],
        round: int,
        weight: float,
        *,
        fragment: int | None = None,
        digest: str = "",
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> SentUpdate:
        """SendUpdate: stream the pseudo-gradient file ``path`` of ``round`` to the parameter server
        (``fragment``: to the run of that fragment of θ, in streaming sync). ``digest``: the whole
        file's, ``"xxh3-128:<32 hex digits>"`` or ``"sha256:<64 hex digits>"``, computed while it was
        written (the bridge then does not read it through first; a wrong one fails the push)."""
        request = bridge_pb2.SendUpdateRequest(path=self.relative(path), round=round, weight=weight, fragment=fragment)
        if digest:
            algorithm, _, hex_digits = digest.partition(":")
            if algorithm not in DIGEST_ALGORITHMS or not hex_digits:
                raise ValueError(
                    f"digest {digest[:80]!r} is not <algorithm>:<hex>, the algorithm one of {sorted(DIGEST_ALGORITHMS)}"
                )
            request.digest.algorithm = DIGEST_ALGORITHMS[algorithm]
            request.digest.hex = hex_digits
        reply = await self._call("SendUpdate", self._stub.SendUpdate, request, timeout=timeout, policy=retry_policy)
        return SentUpdate(reply.bytes_sent, reply.seconds)

    async def receive_update(
        self,
        round: int,
        *,
        path: str | os.PathLike[str] = "",
        timeout_seconds: float | None = None,
        fragment: int | None = None,
        reuse_files: bool = False,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> ReceivedUpdate:
        """ReceiveUpdate: wait up to ``timeout_seconds`` (None: the job's round timeout; 0: do not
        wait) for the outer update of ``round`` and store it (default ``updates/round-<n>.safetensors``);
        ``fragment``: the update of that fragment of θ's run, in streaming sync; ``reuse_files``:
        this executor keeps nothing of an update once its path is gone and it asked for a later
        one, so the bridge may receive into a file kept from an earlier call, in place."""
        request = bridge_pb2.ReceiveUpdateRequest(
            round=round,
            path=self.relative(path),
            timeout_seconds=timeout_seconds,
            fragment=fragment,
            reuse_files=reuse_files,
        )
        if timeout is None:
            wait = self._round_timeout() if timeout_seconds is None else timeout_seconds
            timeout = wait + RECEIVE_MARGIN_SECONDS
        reply = await self._call(
            "ReceiveUpdate", self._stub.ReceiveUpdate, request, timeout=timeout, policy=retry_policy
        )
        return ReceivedUpdate(
            self._absolute(reply.path), reply.path, reply.bytes_received, reply.seconds, reply.contributors
        )

    async def report_progress(
        self,
        kind: ProgressKind | str,
        round: int,
        *,
        batch_size: int = 0,
        batch_seconds: float = 0.0,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        batches: int = 1,
    ) -> Directive:
        """ReportProgress: tell the scheduler (``kind`` is a :class:`ProgressKind` or its value)
        and get its directive.

        A BATCH report may cover ``batches`` consecutive batches, the last one just finished:
        ``batch_size`` and ``batch_seconds`` are then their sums and ``metrics`` (e.g. loss)
        their sample-weighted means; the directive's ``batches_until_update`` counts from that
        last batch.
        """
        if batches < 1:
            raise ValueError(f"batches must be >= 1 (the batches the report covers), not {batches}")
        progress = scheduler_pb2.ReportProgressRequest(
            kind=ProgressKind(kind).to_proto(),
            round=round,
            batch_size=batch_size,
            batch_seconds=batch_seconds,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            # NOTE: left unset for one batch, so that the message is the same as before the field
            batches=batches if batches > 1 else 0,
        )
        request = bridge_pb2.ReportProgressRequest(progress=progress)
        reply = await self._call(
            "ReportProgress", self._stub.ReportProgress, request, timeout=timeout, policy=retry_policy
        )
        d = reply.directive
        return Directive(_DIRECTIVES.get(d.directive, DirectiveKind.CONTINUE), d.batches_until_update, d.round)

    async def publish_parameters(
        self,
        path: str | os.PathLike[str],
        *,
        fragment: int | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> PublishedParameters:
        """PublishParameters: offer θ0 (SafeTensors at ``path``); the first offer of a run wins
        (``fragment``: θ0 of that fragment's run, in streaming sync)."""
        request = bridge_pb2.PublishParametersRequest(path=self.relative(path), fragment=fragment)
        reply = await self._call(
            "PublishParameters", self._stub.PublishParameters, request, timeout=timeout, policy=retry_policy
        )
        return PublishedParameters(reply.accepted, reply.round)

    async def fetch_parameters(
        self,
        path: str | os.PathLike[str] = "",
        *,
        fragment: int | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> FetchedParameters:
        """FetchParameters: store the run's current θ (default ``params/current.safetensors``;
        ``fragment``: that fragment's run's θ, in streaming sync)."""
        request = bridge_pb2.FetchParametersRequest(path=self.relative(path), fragment=fragment)
        reply = await self._call(
            "FetchParameters", self._stub.FetchParameters, request, timeout=timeout, policy=retry_policy
        )
        return FetchedParameters(self._absolute(reply.path), reply.path, reply.round)

    async def open_run(
        self,
        *,
        expected_workers: int,
        quorum: int = 0,
        round_timeout_seconds: float = 0.0,
        outer_lr: float | None = None,
        outer_momentum: float | None = None,
        codec: str = "fp32",
        rounds: int = 0,
        run_id: str = "",
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> OpenedRun:
        """OpenRun: open the job's run (``run_id`` empty: its ``config.run_id``) on the worker's
        parameter server; a saved run resumes, an open one takes these settings. None (left out)
        means the default for outer_lr (0.7) and outer_momentum (0.9), and 0 means 0
        (outer_momentum 0: plain SGD outer steps); 0 means the default for quorum (1),
        round_timeout_seconds (none) and rounds (unbounded); ``codec`` is one of :data:`CODECS`."""
        if codec not in CODECS:
            raise ValueError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
        request = bridge_pb2.OpenRunRequest(
            run_id=run_id,
            expected_workers=expected_workers,
            quorum=quorum,
            round_timeout_seconds=round_timeout_seconds,
            outer_lr=outer_lr,
            outer_momentum=outer_momentum,
            codec=CODECS[codec],
            rounds=rounds,
        )
        reply = await self._call("OpenRun", self._stub.OpenRun, request, timeout=timeout, policy=retry_policy)
        return OpenedRun(reply.run_id, reply.round, reply.resumed)

    async def watch_run(self, run_id: str = "", *, retry_policy: RetryPolicy | None = None) -> AsyncIterator[RunStatus]:
        """WatchRun: the run's round state now, then every change, until the run finished or was
        closed (the last :class:`RunStatus` yielded has ``ended``).

        A watch broken by a failure the retry policy calls transient (UNAVAILABLE by default) is
        opened again; its first message is the state then, so a change may be seen twice but
        never missed. The policy's limits count from the last message received. Other failures
        (RUN_NOT_OPEN: OpenRun again; WATCH_OVERFLOW: watch again) are raised as
        :class:`BridgeError`.
        """
        policy = retry_policy or self.retry_policy
        request = bridge_pb2.WatchRunRequest(run_id=run_id)
        backoff = policy.backoff()
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            call = self._stub.WatchRun(request, metadata=self._metadata)
            try:
                async for reply in call:
                    attempt, started = 1, time.monotonic()
                    backoff.reset()
                    yield _run_status(reply.status)
                return
            except grpc.aio.AioRpcError as exc:
                error = BridgeError.from_rpc_error(exc, method="WatchRun")
            finally:
                call.cancel()
            delay = backoff.next()
            if (
                not policy.retryable(error)
                or (policy.attempts is not None and attempt >= policy.attempts)
                or (policy.deadline is not None and time.monotonic() + delay - started > policy.deadline)
            ):
                raise error
            await asyncio.sleep(delay)

    async def close_run(
        self, run_id: str = "", *, timeout: float | None = None, retry_policy: RetryPolicy | None = None
    ) -> None:
        """CloseRun: close the job's run on the worker's parameter server (pushes are refused from
        then on; θ and the last updates stay served; its saved state is kept)."""
        request = bridge_pb2.CloseRunRequest(run_id=run_id)
        await self._call("CloseRun", self._stub.CloseRun, request, timeout=timeout, policy=retry_policy)
