"""Job configs of a DiLoCo run; the JobService calls that start, watch and cancel its jobs are
:mod:`tendril.scheduler.jobhandle` (shared with ``tendril.submit``), re-exported here."""

from __future__ import annotations

from typing import Any

from tendril.core.errors import ErrorKind
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.jobhandle import CALL_TIMEOUT_SECONDS, TERMINAL, WATCH_POLICY, JobEnd, JobHandle
from tendril.scheduler.run import Dataset
from tendril_sdk.uris import DATA_SCHEME, parse_data_uri

__all__ = [
    "AGGREGATE",
    "CALL_TIMEOUT_SECONDS",
    "TERMINAL",
    "TRAIN",
    "WATCH_POLICY",
    "JobEnd",
    "JobHandle",
    "aggregate_config",
    "fragments",
    "model_source",
    "streaming",
    "train_config",
]

TRAIN = ("train", "diloco")
AGGREGATE = ("aggregate", "diloco")


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
        **streaming(config),
    }


def streaming(config: JobConfig) -> dict[str, Any]:
    """``{"fragments": F}`` for a run in streaming sync (each fragment a run of its own at the
    parameter server, tendril.scheduler.fragments), else nothing."""
    t = config.training
    return {"fragments": t.fragments} if t.sync == "streaming" else {}


def fragments(config: JobConfig) -> int:
    """The run's fragments at the parameter server; 0: the run is one run there."""
    return config.training.fragments if config.training.sync == "streaming" else 0


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
    (where a ``tendril-data://`` model source is fetched from). ``finetune`` (only when
    ``[training.finetune]`` is given) is the LoRA adapter (FinetuneSpec) put on that checkpoint.
    """
    from tendril_models.spec import DataSpec

    t = config.training
    data = dataset.data or DataSpec.from_manifest({"vocab_size": dataset.vocab_size, "seq_len": dataset.seq_len})
    train: dict[str, Any] = {
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
        # NOTE: left out for "auto", so the executor applies the codec's default.
        **({} if t.error_feedback == "auto" else {"error_feedback": t.error_feedback}),
        "sparse_beta": t.sparse_beta,
        "codec_block_size": t.codec_block_size,
        "sync": t.sync,
        # NOTE: the outer step's settings, for the eager proxy of delayed sync (tendril_diloco.eager).
        "delayed_proxy": t.delayed_proxy,
        "outer_lr": t.outer_lr,
        "outer_momentum": t.outer_momentum,
        **streaming(config),
    }
    if t.finetune is not None:
        train["finetune"] = t.finetune.spec().to_dict()
    return train
