"""``python -m tendril_diloco --socket {SOCKET_PATH} [--mixed-precision no|fp16|bf16]``.

Exit codes: 0 when the scheduler said DONE; 1 when training failed (the last line of the log
says why); 2 for a bad command line or environment; 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from tendril.core import tracing
from tendril.core.logs import configure, get_logger
from tendril_diloco.bridge import Bridge
from tendril_diloco.config import MIXED_PRECISION, TrainConfig, parse_config
from tendril_diloco.errors import ExecutorError

TOKEN_ENV = "TENDRIL_BRIDGE_TOKEN"
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


async def _main(args: argparse.Namespace, log: Any) -> None:
    from tendril_diloco.trainer import Trainer

    job = json.loads(await asyncio.to_thread(Path(args.job_json).read_text)) if args.job_json else None
    work = Path((job or {}).get("work_dir") or os.environ.get("WORK_DIR") or Path(args.socket).parent)
    bridge = Bridge(args.socket, os.environ[TOKEN_ENV], work)
    try:
        raw = MessageToDict((await bridge.get_job()).config) if job is None else dict(job.get("config", {}))
        config: TrainConfig = parse_config(raw)
        if args.mixed_precision:
            config = dataclasses.replace(config, mixed_precision=args.mixed_precision)
        log.info("job.start", run_id=config.run_id, rounds=config.rounds, mixed_precision=config.mixed_precision)
        await Trainer(config, bridge, log=log.info).run()
    finally:
        await bridge.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure("diloco")
    tracing.setup_executor("diloco")  # when OTEL_*/TENDRIL_TRACE_FILE is set: joins the Dispatch trace
    log = get_logger("tendril_diloco")
    if not args.socket:
        print("diloco: --socket (or env SOCKET_PATH) is required: the job bridge's socket path", file=sys.stderr)
        return 2
    if not os.environ.get(TOKEN_ENV):
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
            await _main(args, log)
        except asyncio.CancelledError:
            if terminated:
                log.info("job.terminated")
                return EXIT_SIGTERM
            raise
        return 0

    try:
        return asyncio.run(guarded())
    except ExecutorError as exc:
        log.error("job.failed", error=exc.message, reason=exc.reason)
        print(f"diloco: {exc.message}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        log.error("job.failed", code=exc.code().name, error=exc.details())
        print(f"diloco: a bridge call failed with {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as exc:
        print(f"diloco: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            log.info("job.interrupted")
        return EXIT_SIGTERM


if __name__ == "__main__":
    sys.exit(main())
