"""`tendril jobs submit job.toml [--gateway ADDR] [--out DIR]` and `tendril jobs serve --listen
ADDR --gateway ADDR [--out DIR]`.

``submit`` prints what happens (offer taken, dispatch, the executor's output, progress, retries,
the results' folder) and exits 0 only when the job SUCCEEDED and its results arrived; 1 when the
job ended otherwise or the submission failed (one line on stderr with its reason), 2 for a bad
job.toml or flags, 130 on SIGINT and 143 on SIGTERM (the job is cancelled and the lease
released first). ``serve`` runs SubmitService until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from tendril.core import tls
from tendril.core.config import ConfigError
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.logs import configure, get_logger
from tendril.submit import core
from tendril.submit.errors import SubmitError, SubmitLocalReason
from tendril.submit.jobfile import load_job_text
from tendril.submit.service import Submitter

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def add_commands(commands: Any) -> None:
    """The ``submit`` and ``serve`` subcommands of ``tendril jobs``."""
    submit = commands.add_parser(
        "submit",
        help="run one job on the network and fetch its results",
        description="Advertise job.toml's request on the gateway bus, take the best offer, dispatch the job, "
        "follow it, fetch its results into --out (sha256-checked) and release the lease; retried on another "
        "worker when its worker disappears. Ctrl-C cancels the job. Exit 0 only when the job SUCCEEDED and its "
        "results arrived.",
    )
    submit.add_argument("job_file", metavar="JOB_TOML", type=Path, help="the job description (docs/JOBS.md)")
    submit.add_argument("--gateway", default="", metavar="ADDR", help="the network's gateway (default: job.toml)")
    submit.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="new folder for the results (default ./<name>-results)"
    )
    _common(submit)
    submit.set_defaults(func=run_submit)

    serve = commands.add_parser(
        "serve",
        help="serve SubmitService: programs submit jobs over gRPC",
        description="Serve tendril.submit.v1.SubmitService (and the AllocationService workers offer to) until "
        "SIGINT/SIGTERM; each Submit runs one job and writes its results under --out.",
    )
    serve.add_argument("--listen", default="127.0.0.1:50080", metavar="ADDR", help="address to serve on")
    serve.add_argument("--advertise", default="", metavar="ADDR", help="address workers dial (default: --listen)")
    serve.add_argument("--gateway", default="127.0.0.1:50050", metavar="ADDR", help="the network's gateway")
    serve.add_argument("--id", default="submitter", help="this peer's id: the owner of its leases and jobs")
    serve.add_argument(
        "--out", type=Path, default=Path("submit-results"), metavar="DIR", help="folder the results go under"
    )
    _common(serve)
    serve.set_defaults(func=run_serve)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="warning", help="debug, info, warning or error (stderr)")
    parser.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    tls.add_tls_args(parser)


def _say(text: str) -> None:
    print(text, flush=True)


def print_event(event: core.Event) -> None:
    """One event for a person."""
    match event:
        case core.OfferTaken():
            _say(f"offer taken: worker {event.worker_id}, lease {event.lease_id} ({event.offers} offer(s))")
        case core.Dispatched():
            _say(f"dispatched: job {event.job_id} on {event.worker_id} (attempt {event.attempt})")
        case core.Progress():
            values = ", ".join(f"{k}={v:g}" for k, v in sorted(event.values.items()))
            _say(f"progress: {values}")
        case core.LogText():
            sys.stdout.write(event.text if event.text.endswith("\n") else event.text + "\n")
            sys.stdout.flush()
        case core.Retry():
            _say(f"retry {event.attempt}: worker {event.worker_id} lost job {event.job_id} ({event.reason})")
        case core.ResultsFetched():
            _say(
                f"results: {len(event.manifest.files)} file(s), {event.manifest.total_bytes} bytes, sha256 checked, "
                f"in {event.path}"
            )
        case core.Done():
            _say(f"job {event.job_id} on {event.worker_id} ended {event.state} (exit code {event.exit_code})")


async def _until_signal(work: Any) -> tuple[Any, int]:
    """Run ``work``; SIGINT/SIGTERM cancel it. Returns (result, 0) or (None, exit status of the signal)."""
    task = asyncio.ensure_future(work)
    got: list[int] = []
    loop = asyncio.get_running_loop()

    def stop(code: int) -> None:
        got.append(code)
        task.cancel()

    for sig, code in ((signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)):
        loop.add_signal_handler(sig, stop, code)
    try:
        return await task, 0
    except asyncio.CancelledError:
        if not got:
            raise
        return None, got[0]


def run_submit(args: argparse.Namespace) -> int:
    try:
        text = args.job_file.expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.job_file}: {exc.strerror or exc}") from exc
    job = load_job_text(text, source=str(args.job_file))
    out = (args.out or Path(f"{job.name}-results")).expanduser().absolute()
    if out.exists():
        raise SubmitError(
            ErrorKind.FAILED_PRECONDITION,
            f"{out} exists; results never overwrite anything: name a new folder with --out",
            reason=SubmitLocalReason.OUT_EXISTS,
        )
    # Under mTLS workers know this peer by its certificate: it must name job.toml's id.
    tls.configure_from_args(args, expected_name=job.id, name_key="id (job.toml)")
    configure("submit", level=args.log_level, fmt=args.log_format)
    log = get_logger("tendril.submit")
    network = job.network

    async def main() -> int:
        # NOTE: made inside the event loop: its grpc.aio server belongs to that loop.
        submitter = Submitter(
            peer_id=job.id,
            listen=network.listen,
            gateway=args.gateway or network.gateway,
            advertise_address=network.advertise_address,
            config_key="network.listen",
        )
        await submitter.start()
        try:
            done, status = await _until_signal(submitter.submit(job, out, print_event))
        finally:
            await submitter.stop()
        if status:
            print("tendril jobs submit: interrupted; the job was cancelled and its lease released", file=sys.stderr)
            return status
        if done.results_path is None:
            _say(f"job {done.job_id} left no results")
        else:
            _say(f"results in {done.results_path}")
        if not done.succeeded:
            print(f"tendril jobs submit: job {done.job_id} ended {done.state}: {done.reason}", file=sys.stderr)
            return EXIT_FAILED
        return 0

    try:
        return asyncio.run(main())
    except TendrilError as exc:
        if exc.kind is ErrorKind.INVALID_ARGUMENT:
            raise
        log.error("submit.failed", error=exc.message, reason=exc.reason)
        print(f"tendril jobs submit: {exc.reason}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


def run_serve(args: argparse.Namespace) -> int:
    tls.configure_from_args(args, expected_name=args.id, name_key="--id")
    configure("submit", level=args.log_level, fmt=args.log_format)
    out_root = args.out.expanduser().absolute()
    out_root.mkdir(parents=True, exist_ok=True)

    async def main() -> int:
        submitter = Submitter(
            peer_id=args.id,
            listen=args.listen,
            gateway=args.gateway,
            advertise_address=args.advertise,
            out_root=out_root,
        )
        await submitter.start()
        _say(f"SubmitService on {submitter.server.address}, results under {out_root}")
        try:
            _, status = await _until_signal(asyncio.Event().wait())
        finally:
            await submitter.stop()
        return status

    return asyncio.run(main())
