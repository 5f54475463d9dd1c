"""``python -m tendril_diloco --socket {SOCKET_PATH} [--mixed-precision no|fp16|bf16]``.

Exit codes: 0 when the scheduler said DONE; 1 when training failed (the last line of the log
says why, and so does ``error.txt`` in the work dir, which JobService makes the job's FAILED
reason); 2 for a bad command line or environment; 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from tendril_diloco.config import MIXED_PRECISION, TrainConfig, parse_config
from tendril_diloco.entry import run
from tendril_diloco.logs import EventLog, configure
from tendril_sdk import BridgeClient, JobDescriptor, tracing


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tendril_diloco", description="Tendril DiLoCo trainer (executor)")
    parser.add_argument("--socket", default=os.environ.get("SOCKET_PATH", ""), help="the job bridge's Unix socket")
    parser.add_argument("--job-json", default=os.environ.get("JOB_JSON", ""), help="job.json (default: env JOB_JSON)")
    parser.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION,
        default=None,
        help="accelerate mixed precision (default: the job's)",
    )
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace, token: str, log: EventLog) -> None:
    from tendril_diloco.trainer import Trainer

    job = await asyncio.to_thread(JobDescriptor.load, args.job_json) if args.job_json else None
    work = job.work_dir if job is not None else Path(os.environ.get("WORK_DIR") or Path(args.socket).parent)
    async with BridgeClient(args.socket, token, work_dir=work, job=job) as bridge:
        raw = (await bridge.get_job()).config if job is None else dict(job.config)
        config: TrainConfig = parse_config(raw)
        if args.mixed_precision:
            config = dataclasses.replace(config, mixed_precision=args.mixed_precision)
        log.info("job.start", run_id=config.run_id, rounds=config.rounds, mixed_precision=config.mixed_precision)
        await Trainer(config, bridge, log=log.info).run()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    log = configure("diloco")
    tracing.setup("diloco")  # when OTEL_*/TENDRIL_TRACE_FILE is set: joins the Dispatch trace
    return run("diloco", args, log, _main)


if __name__ == "__main__":
    sys.exit(main())
