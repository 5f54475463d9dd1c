"""``python -m tendril_diloco --socket {SOCKET_PATH} [--mixed-precision no|fp16|bf16]``.

Exit codes: 0 when the scheduler said DONE; 1 when training failed (the last line of the log
says why, and so does ``error.txt`` in the work dir, which JobService makes the job's FAILED
reason); 2 for a bad command line or environment; 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from pathlib import Path

from tendril_diloco.config import MIXED_PRECISION, TrainConfig, parse_config
from tendril_diloco.errors import ExecutorError
from tendril_diloco.logs import EventLog, configure
from tendril_models import ModelError
from tendril_sdk import TOKEN_ENV, BridgeClient, BridgeError, JobDescriptor, JobDescriptorError, tracing, write_error

EXIT_SIGTERM = 143


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
    if not args.socket:
        print("diloco: --socket (or env SOCKET_PATH) is required: the job bridge's socket path", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"diloco: env {TOKEN_ENV} is not set; JobService passes the bridge token this way", file=sys.stderr)
        return 2

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        terminated = False

        def on_term() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, on_term)
        try:
            await _main(args, token, log)
        except asyncio.CancelledError:
            if terminated:
                log.info("job.terminated")
                return EXIT_SIGTERM
            raise
        return 0

    work_dir = Path(os.environ.get("WORK_DIR") or Path(args.socket).parent)

    def failed(message: str) -> int:
        print(f"diloco: {message}", file=sys.stderr)
        write_error(work_dir, message)
        return 1

    try:
        return asyncio.run(guarded())
    except (ExecutorError, ModelError) as exc:
        log.error("job.failed", error=exc.message, reason=str(exc.reason))
        return failed(f"{exc.message} ({exc.reason})")
    except BridgeError as exc:
        log.error("job.failed", code=exc.code.name, reason=str(exc.reason), method=exc.method, error=exc.message)
        return failed(f"a bridge call ({exc.method}) failed with {exc.code.name}: {exc.message}")
    except (OSError, JobDescriptorError) as exc:
        return failed(str(exc))
    except Exception as exc:
        # NOTE: unforeseen (a CUDA out-of-memory, a bug): the traceback goes to the log, and its
        # last line to the job's reason.
        write_error(work_dir, f"{type(exc).__name__}: {exc}")
        raise
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            log.info("job.interrupted")
        return EXIT_SIGTERM


if __name__ == "__main__":
    sys.exit(main())
