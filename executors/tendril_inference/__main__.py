"""``python -m tendril_inference --socket {SOCKET_PATH} [--job-json FILE]``.

Exit codes: 0 when every prompt was generated (or the scheduler said DONE); 1 when the job
failed (``error.txt`` in the work dir says why, and JobService makes it the job's FAILED
reason); 2 for a bad command line or environment; 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from pathlib import Path

from tendril_inference.errors import InferenceError
from tendril_models.entry import run
from tendril_models.logs import EventLog, configure
from tendril_sdk import BridgeClient, JobDescriptor, tracing


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tendril_inference", description="Tendril inference executor")
    parser.add_argument("--socket", default=os.environ.get("SOCKET_PATH", ""), help="the job bridge's Unix socket")
    parser.add_argument("--job-json", default=os.environ.get("JOB_JSON", ""), help="job.json (default: env JOB_JSON)")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace, token: str, log: EventLog) -> None:
    from tendril_inference.config import parse_config
    from tendril_inference.runner import run_job

    job = await asyncio.to_thread(JobDescriptor.load, args.job_json) if args.job_json else None
    work = job.work_dir if job is not None else Path(os.environ.get("WORK_DIR") or Path(args.socket).parent)
    async with BridgeClient(args.socket, token, work_dir=work, job=job) as bridge:
        raw = (await bridge.get_job()).config if job is None else dict(job.config)
        config = parse_config(raw)
        log.info("job.start", model=config.model.source or config.model.task, prompts=config.prompts)
        # NOTE: SIGTERM cancels this task; the event stops a batch in generate at its next token.
        await run_job(config, bridge, log, stop=threading.Event())


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    log = configure("inference")
    tracing.setup("inference")
    return run("inference", args, log, _main, failures=(InferenceError,))


if __name__ == "__main__":
    sys.exit(main())
