"""What every executor built on this package (the DiLoCo trainer, the held-out evaluation, the
inference executor) does around its work: check the command line and environment, turn SIGTERM
into exit 143, and turn a failure into exit 1 with one line on stderr and in ``error.txt`` (which
JobService makes the job's FAILED reason).

An executor's own error type (``tendril_diloco.errors.ExecutorError``, ...) is passed as
``failures``: like :class:`ModelError`, it carries ``message`` and ``reason``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tendril_models.errors import ModelError
from tendril_models.logs import EventLog
from tendril_sdk import TOKEN_ENV, BridgeError, JobDescriptorError, write_error

EXIT_SIGTERM = 143

Body = Callable[[argparse.Namespace, str, EventLog], Awaitable[None]]


def run(
    name: str,
    args: argparse.Namespace,
    log: EventLog,
    body: Body,
    *,
    failures: tuple[type[Exception], ...] = (),
) -> int:
    """Run ``body(args, token, log)`` as the job's executor ``name``; the process's exit code.

    ``failures``: the executor's own error types (each with ``message`` and ``reason``), reported
    like :class:`ModelError`.
    """
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

    expected: tuple[type[Exception], ...] = (ModelError, *failures)
    try:
        return asyncio.run(guarded())
    except expected as exc:
        message, reason = getattr(exc, "message", str(exc)), str(getattr(exc, "reason", ""))
        log.error("job.failed", error=message, reason=reason)
        return failed(f"{message} ({reason})")
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
