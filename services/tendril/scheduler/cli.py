"""`tendril scheduler run --config job.toml`: drive one DiLoCo run (the reference scheduler).

The run's state is kept in the out dir (:mod:`tendril.scheduler.state`): the same command
again, or `tendril scheduler resume OUT_DIR`, resumes a run whose scheduler died, and reports
a finished one as finished.

Exit codes: 0 when every round finished and the model was saved; 1 when the run failed (the
message says why); 2 for a bad job.toml, a job.toml other than the one a saved run began with,
or an unusable state file; 143 after SIGTERM (leases are released first).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from tendril.core import tls, tracing
from tendril.core.config import parse_set_flags
from tendril.core.errors import ConfigError, TendrilError
from tendril.core.logs import configure, get_logger
from tendril.scheduler.jobconfig import JobConfig, load_job_config
from tendril.scheduler.report import summary_table
from tendril.scheduler.state import StateError

EXIT_FAILED = 1
EXIT_SIGTERM = 143


def add_parser(subparsers: Any) -> None:
    """Add the ``scheduler`` group with its ``run`` command."""
    group: argparse.ArgumentParser = subparsers.add_parser("scheduler", help="run the reference DiLoCo scheduler")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="scheduler commands", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="advertise, allocate workers and train one DiLoCo run described by job.toml",
        description="Run one DiLoCo training job across the workers of a network (see deploy/job.toml).",
    )
    run.add_argument("--config", required=True, metavar="JOB_TOML", help="the job description")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a job.toml key, e.g. training.rounds=2",
    )
    _common_args(run)
    run.set_defaults(func=run_command)
    resume = commands.add_parser(
        "resume",
        help="resume the run whose state is in OUT_DIR (its scheduler died), with the job config it began with",
        description="Resume a run from its out dir's state file: the run goes on from the parameter server's "
        "last closed round.",
    )
    resume.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="the run's scheduler.out_dir")
    _common_args(resume)
    resume.set_defaults(func=resume_command)


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    tls.add_tls_args(parser)


def run_command(args: argparse.Namespace) -> int:
    return _drive(args, load_job_config(args.config, overrides=parse_set_flags(args.set)))


def resume_command(args: argparse.Namespace) -> int:
    from tendril.scheduler.resume import saved_config

    try:
        config = saved_config(args.out_dir.expanduser())
    except StateError as exc:
        print(f"tendril scheduler: {exc}", file=sys.stderr)
        return 2
    return _drive(args, config)


def _drive(args: argparse.Namespace, config: JobConfig) -> int:
    from tendril.scheduler.resume import ResumePoint, open_state
    from tendril.scheduler.service import make_run_id

    # Under mTLS workers know this scheduler by its certificate: it must name scheduler.id.
    tls.configure_from_args(args, expected_name=config.scheduler.id, name_key="scheduler.id")
    try:
        start = open_state(config, make_run_id(config))
    except StateError as exc:
        print(f"tendril scheduler: {exc}", file=sys.stderr)
        return 2
    if start.finished_model is not None:
        rounds = len(start.store.rounds())
        start.store.close()
        print(f"run {start.run_id} already finished: {rounds} rounds; model {start.finished_model}")
        return 0
    configure("scheduler", level=args.log_level, fmt=args.log_format)
    tracing.setup("scheduler")  # OTel when OTEL_* is set: dispatches and rounds become traces
    log = get_logger("tendril.scheduler")
    from tendril.scheduler.service import run_scheduler

    def on_resumed(point: ResumePoint) -> None:
        print(point.describe(start.run_id), flush=True)

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        try:
            outcome = await run_scheduler(config, start, on_resumed=on_resumed)
        except asyncio.CancelledError:
            # NOTE: run_scheduler released every lease on its way out, so the workers are free at once.
            log.info("scheduler.terminated")
            return EXIT_SIGTERM
        print(summary_table(outcome.rounds))
        # NOTE: a LoRA run's export is its adapter (<out_dir>/adapter), any other run's the model.
        kind = "adapter" if config.training.finetune is not None else "model"
        exported = f", exported {kind} {outcome.export_path}" if outcome.export_path else ""
        print(
            f"run {outcome.run_id}: {len(outcome.rounds)} rounds in {outcome.seconds:.0f} s; "
            f"metrics {outcome.metrics_path}, model {outcome.model_path}{exported}"
        )
        if outcome.evaluation_note:
            print(f"run {outcome.run_id} has no held-out evaluation: {outcome.evaluation_note}")
        return 0

    try:
        return asyncio.run(guarded())
    except ConfigError:
        raise
    except TendrilError as exc:
        log.error("scheduler.failed", error=exc.message, reason=exc.reason)
        print(f"tendril scheduler: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """``python -m tendril.scheduler run --config job.toml`` (same as the console script)."""
    parser = argparse.ArgumentParser(prog="python -m tendril.scheduler")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["scheduler", *(argv if argv is not None else sys.argv[1:])])
    if not hasattr(args, "func"):
        args.group_parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"tendril scheduler: {exc.message}", file=sys.stderr)
        return 2
