"""What both executors of this package (the trainer and the held-out evaluation) do around their
work: check the command line and environment, turn SIGTERM into exit 143, and turn a failure into
exit 1 with one line on stderr and in ``error.txt`` (which JobService makes the job's FAILED
reason)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tendril_diloco.errors import ExecutorError
from tendril_diloco.logs import EventLog
from tendril_models import ModelError
from tendril_sdk import TOKEN_ENV, BridgeError, JobDescriptorError, write_error

EXIT_SIGTERM = 143

Body = Callable[[argparse.Namespace, str, EventLog], Awaitable[None]]


def run(name: str, args: argparse.Namespace, log: EventLog, body: Body) -> int:
    """Run ``body(args, token, log)`` as the job's executor ``name``; the process's exit code."""
    if not args.socket:
        print(f"{name}: --socket (or env SOCKET_PATH) is required: the job bridge's socket path", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"{name}: env {TOKEN_ENV} is not set; JobService passes the bridge token this way", file=sys.stderr)
        return 2

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        terminated = False

        def on_term() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
        try:
            await body(args, token, log)
        except asyncio.CancelledError:
            if terminated:
                log.info("job.terminated")
                return EXIT_SIGTERM
            raise
        return 0

    work_dir = Path(os.environ.get("WORK_DIR") or Path(args.socket).parent)

    def failed(message: str) -> int:
        print(f"{name}: {message}", file=sys.stderr)
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
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            log.info("job.interrupted")
        return EXIT_SIGTERM
    except Exception as exc:
        # NOTE: unforeseen (a CUDA out-of-memory, a bug): the traceback goes to the log, and its
        # last line to the job's reason.
        write_error(work_dir, f"{type(exc).__name__}: {exc}")
        raise
