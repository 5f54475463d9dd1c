"""The scheduler peer: its gRPC server (AllocationService + CoordinationService) and its driver.

``run_scheduler(config)`` runs one job to its end and returns the run's outcome; the
``tendril scheduler run`` command and the demo call it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril.scheduler.driver import Driver
from tendril.scheduler.evaluation import MetricsUpdater
from tendril.scheduler.export import ADAPTER_DIR, MODEL_DIR
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.metrics import MetricsFile
from tendril.scheduler.resume import Recorder, ResumePoint, Start, open_state, pull_final, resume
from tendril.scheduler.run import Member, Run
from tendril.scheduler.servicer import AllocationServicer, CoordinationServicer
from tendril_proto.scheduler.v1 import scheduler_pb2_grpc

log = get_logger("tendril.scheduler")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a finished run left behind."""

    run_id: str
    rounds: list[dict[str, Any]]
    metrics_path: Path
    model_path: Path
    seconds: float
    resumed_from: int | None = None  # the round a resumed run went on from
    # <out_dir>/model/ (from_pretrained-loadable), <out_dir>/adapter/ for a LoRA run; None when not exported
    export_path: Path | None = None
    evaluation_note: str = ""  # why the run has no held-out evaluation ("" when it has)


def make_run_id(config: JobConfig) -> str:
    return config.training.run_id or f"{config.scheduler.id}-{int(time.time())}"


def _outputs(config: JobConfig) -> tuple[Path, MetricsFile]:
    out_dir = Path(config.scheduler.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, MetricsFile(out_dir / "metrics.jsonl")


async def run_scheduler(
    config: JobConfig, start: Start | None = None, *, on_resumed: Callable[[ResumePoint], None] | None = None
) -> Outcome:
    """Serve, advertise, train and clean up; raises SchedulerError when the run cannot finish.

    ``start``: the run state (:func:`open_state`; opened here when None): a saved run is resumed
    (``on_resumed`` is told from which round) and every change is recorded in it.
    """
    began = time.monotonic()
    start = start or open_state(config, make_run_id(config))
    out_dir, metrics = _outputs(config)
    for saved in start.store.rounds():  # a resumed run's rounds so far, at once
        metrics.append(saved)
    run_id = start.run_id
    recorder = Recorder(start.store)

    def on_round(line: dict[str, Any]) -> None:
        # NOTE: the timing figures of a round depend on what else ran on the machine: the
        # scheduler host's 1-minute load average goes beside them.
        line["load_average"] = round(os.getloadavg()[0], 2)
        line = updater.decorate(line)
        recorder.on_round(line)  # NOTE: first: a resumed run writes metrics.jsonl again from the state file
        metrics.append(line)
        log.info(
            "round.finished",
            round=line["round"],
            loss=line["loss_mean"],
            workers=line["workers"],
            wall_seconds=line["wall_seconds"],
            sync_wait_seconds=line["sync_wait_seconds"],
        )
        driver.on_round(line)

    run = Run(config, run_id, on_round=on_round, on_assign=recorder.on_assign)
    updater = MetricsUpdater(metrics.path, run.evaluation, run.completed_rounds)

    def on_eval_result(round_index: int, fields: Mapping[str, float]) -> None:
        updater.result(round_index, fields)
        for line in run.completed_rounds:  # NOTE: saved too, or a resume would write the line without them
            if line.get("round") == round_index:
                recorder.on_round(line)

    run.evaluation.on_result = on_eval_result
    driver = Driver(config, run, advertised="", out_dir=out_dir)
    point: ResumePoint | None = None

    def on_accept(member: Member) -> None:
        recorder.on_accept(member)
        driver.on_accept(member)

    server = ServiceServer(
        config.scheduler.listen,
        [
            Binding(
                "tendril.scheduler.v1.AllocationService",
                scheduler_pb2_grpc.add_AllocationServiceServicer_to_server,
                AllocationServicer(run, on_accept),
            ),
            Binding(
                "tendril.scheduler.v1.CoordinationService",
                scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server,
                CoordinationServicer(run),
            ),
        ],
        config_key="scheduler.listen",
    )
    await server.start()
    driver.advertised = config.scheduler.advertise_address or server.address
    log.info("scheduler.started", run_id=run_id, address=driver.advertised, workers=config.allocation.workers)
    try:
        if start.resumed:
            point = await resume(driver.channel, run, start.store)
            if point.recovered or point.forgotten:  # the parameter server's rounds differ: write them again
                metrics = MetricsFile(metrics.path)
                for line in run.completed_rounds:
                    metrics.append(line)
            if on_resumed is not None:
                on_resumed(point)
        if run.finished:
            round_index, ps_address = await pull_final(driver.channel, run, start.store, out_dir / "model.safetensors")
            await driver.export_final(out_dir / "model.safetensors", round_index, ps_address)
        else:
            await driver.execute()
        start.store.finish(str(out_dir / "model.safetensors"))
    finally:
        await driver.close()
        await server.stop(1.0)
        start.store.close()
    return Outcome(
        run_id,
        list(run.completed_rounds),
        metrics.path,
        out_dir / "model.safetensors",
        time.monotonic() - began,
        None if point is None else point.round,
        export_path=out_dir / (ADAPTER_DIR if config.training.finetune is not None else MODEL_DIR)
        if driver.exported
        else None,
        evaluation_note=run.evaluation.off_reason,
    )
