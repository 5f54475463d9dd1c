"""`tendril jobs list` and `tendril jobs logs ID [-f] [--tail N]`: a worker's jobs from a terminal.

Both talk to the worker's JobService (local, or ``--worker HOST``; see
:mod:`tendril.cli.worker_target`). Exit status 1 when the JobService refuses or
cannot be reached (the reason is printed on one line), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from typing import Any

import grpc

from tendril.cli.status_collect import OPERATOR_PEER_ID, job_row, rpc_error_text
from tendril.cli.status_view import job_lines
from tendril.cli.worker_target import add_target_args, target_from_args
from tendril.core import tls
from tendril.core.channel import open_channel
from tendril.core.errors import ConfigError
from tendril.submit.cli import add_commands as add_submit_commands
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc

EXIT_FAILED = 1
# NOTE: a log read without --follow still gets a deadline (a hung server must not hang the
# terminal), generous because a long log is streamed in pieces.
READ_DEADLINE_SECONDS = 120.0
STATES = ("pending", "running", "succeeded", "failed", "cancelled")


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "jobs", help="list a worker's jobs, follow their logs; submit a job to the network"
    )
    parser.set_defaults(group_parser=parser)
    commands = parser.add_subparsers(title="jobs commands", metavar="COMMAND")

    listing = commands.add_parser(
        "list", help="the worker's jobs, newest first", description="List the jobs of a worker, newest first."
    )
    listing.add_argument("--state", action="append", choices=STATES, default=[], help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="at most N jobs (default 100)")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_target_args(listing)
    listing.set_defaults(func=run_list)

    logs = commands.add_parser(
        "logs",
        help="print (and follow) a job's executor output",
        description="Print a job's executor output through JobService.Logs; with -f keep printing new output "
        "until the job ends (works after the job ended too: the worker keeps its log).",
    )
    logs.add_argument("job_id", metavar="ID", help="job id (see `tendril jobs list`)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the job ends")
    logs.add_argument("--tail", type=int, default=0, metavar="N", help="start with the last N lines (default: all)")
    add_target_args(logs)
    logs.set_defaults(func=run_logs)
    add_submit_commands(commands)


def _fail(command: str, address: str, error: grpc.aio.AioRpcError) -> int:
    print(f"tendril jobs {command}: JobService at {address}: {rpc_error_text(error)}", file=sys.stderr)
    return EXIT_FAILED


async def list_jobs(address: str, states: list[str], limit: int, timeout: float) -> job_pb2.ListResponse:
    request = job_pb2.ListRequest(
        states=[job_pb2.JobState.Value(f"JOB_STATE_{s.upper()}") for s in states], limit=limit
    )
    async with open_channel(address, peer_id=OPERATOR_PEER_ID) as channel:
        reply: job_pb2.ListResponse = await job_pb2_grpc.JobServiceStub(channel).List(request, timeout=timeout)
    return reply


def run_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError(f"--limit must be >= 1 (got {args.limit})", key="--limit")
    config, target = target_from_args(args)
    tls.configure(config.tls)
    address = target.address("job")
    try:
        reply = asyncio.run(list_jobs(address, args.state, args.limit, args.timeout))
    except grpc.aio.AioRpcError as exc:
        return _fail("list", address, exc)
    now = time.time()
    rows = [job_row(job, now) for job in reply.jobs]
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    elif rows:
        print("\n".join(job_lines(rows)))
    else:
        print("no jobs")
    return 0


async def print_logs(address: str, job_id: str, *, tail: int, follow: bool) -> None:
    """Write the job's output to stdout as it arrives; raises AioRpcError."""
    request = job_pb2.LogsRequest(job_id=job_id, tail_lines=tail, follow=follow)
    async with open_channel(address, peer_id=OPERATOR_PEER_ID) as channel:
        stream = job_pb2_grpc.JobServiceStub(channel).Logs(request, timeout=None if follow else READ_DEADLINE_SECONDS)
        async for piece in stream:
            sys.stdout.write(piece.text)
            sys.stdout.flush()


def run_logs(args: argparse.Namespace) -> int:
    if args.tail < 0:
        raise ConfigError(f"--tail must be >= 0 (got {args.tail})", key="--tail")
    config, target = target_from_args(args)
    tls.configure(config.tls)
    address = target.address("job")
    try:
        asyncio.run(print_logs(address, args.job_id, tail=args.tail, follow=args.follow))
    except grpc.aio.AioRpcError as exc:
        return _fail("logs", address, exc)
    return 0
