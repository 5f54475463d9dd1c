"""The scheduler peer: its gRPC server (AllocationService + CoordinationService) and its driver.

``run_scheduler(config)`` runs one job to its end and returns the run's outcome; the
``tendril scheduler run`` command and the demo call it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril.scheduler.driver import Driver
from tendril.scheduler.evaluation import MetricsUpdater
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.metrics import MetricsFile
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
    export_path: Path | None = None  # <out_dir>/model/ (from_pretrained-loadable); None when not exported
    evaluation_note: str = ""  # why the run has no held-out evaluation ("" when it has)


def make_run_id(config: JobConfig) -> str:
    return config.training.run_id or f"{config.scheduler.id}-{int(time.time())}"


def _outputs(config: JobConfig) -> tuple[Path, MetricsFile]:
    out_dir = Path(config.scheduler.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, MetricsFile(out_dir / "metrics.jsonl")


async def run_scheduler(config: JobConfig) -> Outcome:
    """Serve, advertise, train and clean up; raises SchedulerError when the run cannot finish."""
    began = time.monotonic()
    out_dir, metrics = _outputs(config)
    run_id = make_run_id(config)

    def on_round(line: dict[str, Any]) -> None:
        # NOTE: the timing figures of a round depend on what else ran on the machine: the
        # scheduler host's 1-minute load average goes beside them.
        line["load_average"] = round(os.getloadavg()[0], 2)
        metrics.append(updater.decorate(line))
        log.info(
            "round.finished",
            round=line["round"],
            loss=line["loss_mean"],
            workers=line["workers"],
            wall_seconds=line["wall_seconds"],
            sync_wait_seconds=line["sync_wait_seconds"],
        )
        driver.on_round(line)

    run = Run(config, run_id, on_round=on_round)
    updater = MetricsUpdater(metrics.path, run.evaluation, run.completed_rounds)
    run.evaluation.on_result = updater.result
    driver = Driver(config, run, advertised="", out_dir=out_dir)

    def on_accept(member: Member) -> None:
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
        await driver.execute()
    finally:
        await driver.close()
        await server.stop(1.0)
    return Outcome(
        run_id,
        list(run.completed_rounds),
        metrics.path,
        out_dir / "model.safetensors",
        time.monotonic() - began,
        export_path=out_dir / "model" if driver.exported else None,
        evaluation_note=run.evaluation.off_reason,
    )
