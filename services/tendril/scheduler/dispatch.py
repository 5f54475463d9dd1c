"""Job configs of a DiLoCo run and the JobService calls that start, watch and cancel its jobs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import struct_pb2

from tendril.core.calls import CURABLE_CODES, follow
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.run import Dataset
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_sdk.retry import RetryPolicy
from tendril_sdk.uris import DATA_SCHEME, parse_data_uri

log = get_logger("tendril.scheduler.dispatch")

TRAIN = ("train", "diloco")
AGGREGATE = ("aggregate", "diloco")
TERMINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
CALL_TIMEOUT_SECONDS = 15.0
# A job's watch is opened again while its JobService does not answer or the stream broke
# (a restart); any other failure ends the member.
WATCH_POLICY = RetryPolicy(codes=CURABLE_CODES, attempts=None, initial_backoff=0.5, max_backoff=5.0)


def aggregate_config(config: JobConfig, run_id: str) -> dict[str, Any]:
    """Config of the parameter server's job (docs/ARCHITECTURE.md "Aggregate job config")."""
    t = config.training
    return {
        "run_id": run_id,
        "expected_workers": config.allocation.workers,
        "quorum": t.quorum,
        "round_timeout_seconds": t.round_timeout_seconds,
        "outer_lr": t.outer_lr,
        "outer_momentum": t.outer_momentum,
        "codec": t.codec,
        "rounds": t.rounds,
    }


def _bad_source(message: str) -> SchedulerError:
    return SchedulerError(
        ErrorKind.FAILED_PRECONDITION, f"training.model.source: {message}", reason=SchedulerRunReason.BAD_MODEL_SOURCE
    )


def model_source(model: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """The model spec, its ``tendril-data://`` source checked against the run's data set and its
    ``sha256`` filled in from the manifest (any other spec as it is).

    NOTE: the scheduler resolves the URI because it alone knows the data node it read the
    manifest from; the jobs get that node's address as ``data_node`` (train_config) and fetch
    the asset from it through their bridge.
    """
    source = str(model.get("source", ""))
    if not source.startswith(f"{DATA_SCHEME}:"):
        return model
    try:
        ref = parse_data_uri(source)
    except ValueError as exc:
        raise _bad_source(str(exc)) from exc
    if ref.dataset_id != dataset.dataset_id:
        raise _bad_source(
            f"{source} names data set {ref.dataset_id!r}, but the run trains on {dataset.dataset_id!r} (served by "
            f"{dataset.data_node_address}); a {DATA_SCHEME} source must be an asset of the run's data set: "
            f"{DATA_SCHEME}://{dataset.dataset_id}/<asset name>"
        )
    asset = next((a for a in dataset.assets if a.name == ref.name), None)
    if asset is None:
        names = ", ".join(f"{a.name} ({a.kind})" for a in dataset.assets) or "none"
        raise _bad_source(
            f"data set {dataset.dataset_id!r} at {dataset.data_node_address} has no asset {ref.name!r} (its assets: "
            f"{names}); add the checkpoint with `tendril data add-model DATASET_DIR MODEL_DIR` and restart the data "
            "node"
        )
    given = str(model.get("sha256", "")).lower()
    if given and given != asset.sha256.lower():
        raise _bad_source(
            f"sha256 {given} differs from {asset.sha256} that the manifest lists for {ref.name}; fix training.model."
            "sha256 or leave it out (the manifest's is used)"
        )
    return {**model, "sha256": asset.sha256.lower()}


def train_config(config: JobConfig, run_id: str, parameter_server: str, dataset: Dataset) -> dict[str, Any]:
    """Config of a training job (docs/ARCHITECTURE.md "Training job config").

    ``model`` is job.toml's [training.model] as a ModelSpec, ``data`` the data set's summary
    (DataSpec); the executor fills the model's vocabulary and context from ``data`` where the
    config leaves them out. ``data_node`` is the address of the data node serving the data set
    (where a ``tendril-data://`` model source is fetched from).
    """
    from tendril_models.spec import DataSpec

    t = config.training
    data = dataset.data or DataSpec.from_manifest({"vocab_size": dataset.vocab_size, "seq_len": dataset.seq_len})
    return {
        "run_id": run_id,
        "parameter_server": parameter_server,
        "codec": t.codec,
        "round_timeout_seconds": t.round_timeout_seconds,
        "rounds": t.rounds,
        "seed": t.seed,
        "model": model_source(t.model.spec().to_dict(), dataset),
        "data": dict(data) if not isinstance(data, DataSpec) else data.to_dict(),
        "data_node": dataset.data_node_address,
        "inner": t.inner.model_dump(),
        "mixed_precision": t.mixed_precision,
        "torch_threads": t.torch_threads,
        "keep_updates": t.keep_updates,
        "sync": t.sync,
    }


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


@dataclasses.dataclass(frozen=True)
class JobEnd:
    """How a job ended."""

    state: str  # "SUCCEEDED", "FAILED" or "CANCELLED"
    exit_code: int
    reason: str


class JobHandle:
    """One job at one worker's JobService, seen by its owner."""

    def __init__(self, channel: grpc.aio.Channel, job_id: str, worker_id: str) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        self._stub = job_pb2_grpc.JobServiceStub(channel)

    async def dispatch(
        self, lease_id: str, executor: tuple[str, str], config: dict[str, Any], coordinator_address: str = ""
    ) -> None:
        request = job_pb2.DispatchRequest(
            job_id=self.job_id,
            lease_id=lease_id,
            executor=common_pb2.ExecutorRef(executor_class=executor[0], name=executor[1]),
            config=_struct(config),
            coordinator_address=coordinator_address,
        )
        await self._stub.Dispatch(request, timeout=CALL_TIMEOUT_SECONDS)
        log.info("job.dispatched", job_id=self.job_id, worker=self.worker_id, executor="/".join(executor))

    async def wait_end(self) -> JobEnd:
        """Follow the job until it ends (reconnecting while its JobService restarts)."""

        async def watch_once(live: Callable[[], None]) -> JobEnd | None:
            try:
                current = await self._stub.Get(job_pb2.GetRequest(job_id=self.job_id), timeout=CALL_TIMEOUT_SECONDS)
                live()
                if current.job.state in TERMINAL:
                    return _end(current.job)
                async for change in self._stub.Watch(job_pb2.WatchRequest(job_id=self.job_id)):
                    if change.job.job_id == self.job_id and change.job.state in TERMINAL:
                        return _end(change.job)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return JobEnd("FAILED", -1, f"the worker no longer knows job {self.job_id}: {exc.details()}")
                raise
            return None

        return await follow(
            watch_once, name="job", peer=f"job {self.job_id} on {self.worker_id}", policy=WATCH_POLICY, log=log
        )

    async def tail(self, lines: int = 3) -> str:
        """The last lines of the executor's output ("" when they cannot be read)."""
        text = []
        try:
            async for piece in self._stub.Logs(
                job_pb2.LogsRequest(job_id=self.job_id, tail_lines=lines), timeout=CALL_TIMEOUT_SECONDS
            ):
                text.append(piece.text)
        except grpc.aio.AioRpcError:
            return ""
        return "".join(text).strip()

    async def cancel(self, reason: str) -> None:
        """Stop the job (best effort: releasing its lease stops it too)."""
        try:
            await self._stub.Cancel(
                job_pb2.CancelRequest(job_id=self.job_id, reason=reason), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            log.info("job.cancel_failed", job_id=self.job_id, code=exc.code().name, error=exc.details())


def _end(job: job_pb2.Job) -> JobEnd:
    return JobEnd(job_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"), job.exit_code, job.reason)
