"""The executor side of the ReportProgress figure, as its own process.

``python -m bench.progress_client RESULT_JSON --calls N --warmup N --target NAME=SOCKET ...
[--watch NAME=PID ...]`` (token in env ``TENDRIL_BRIDGE_TOKEN``) reports one BATCH per call
through the bridge client every Python executor uses (:class:`tendril_sdk.BridgeClient`)
to every target socket and writes to ``RESULT_JSON``:

* ``times_ms``: ``{target: [round trip of each timed call, ...]}``;
* ``cpu_us_per_call``: ``{target: {"client": µs, WATCHED: µs, ...}}``, the CPU time (user +
  system) this process and every watched process spent per timed call of that target — a view
  that depends far less on what else runs on the machine than wall-clock times do.

Every target first gets ``--warmup`` untimed calls. The timed calls then go in blocks of
:data:`BLOCK`, one target after the other, so that load from other processes on a shared
machine hits every target alike.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tendril_sdk import DEFAULT_RETRY, TOKEN_ENV, BridgeClient, ProgressKind

BLOCK = 50
# NOTE: the client retries UNAVAILABLE for this long (as the executor does), which also covers
# a first connection still being made; a timed call that needed a retry would show in p99.
RETRY_SECONDS = 30.0
RETRY = dataclasses.replace(DEFAULT_RETRY, deadline=RETRY_SECONDS)


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _report(bridge: BridgeClient, index: int) -> float:
    """One BATCH report; its round trip in ms. Anything but CONTINUE for the round is an error."""
    round_index = index // 100
    start = time.perf_counter_ns()
    directive = await bridge.report_progress(
        ProgressKind.BATCH, round_index, batch_size=8, batch_seconds=0.25, metrics={"loss": 3.0 - index * 1e-4}
    )
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if (directive.kind, directive.round) != ("continue", round_index):
        raise RuntimeError(f"expected CONTINUE for round {round_index}, got {directive}")
    return elapsed


def _cpu_now(watched: dict[str, int]) -> dict[str, float]:
    return {"client": time.process_time(), **{name: process_cpu_seconds(pid) for name, pid in watched.items()}}


async def run(targets: dict[str, str], watched: dict[str, int], calls: int, warmup: int, token: str) -> dict[str, Any]:
    bridges = {name: BridgeClient(path, token, retry_policy=RETRY) for name, path in targets.items()}
    try:
        for bridge in bridges.values():
            for i in range(warmup):
                await _report(bridge, i)
        times: dict[str, list[float]] = {name: [] for name in bridges}
        cpu: dict[str, dict[str, float]] = {name: dict.fromkeys(["client", *watched], 0.0) for name in bridges}
        while any(len(t) < calls for t in times.values()):
            for name, bridge in bridges.items():
                done = len(times[name])
                before = _cpu_now(watched)
                for i in range(done, min(done + BLOCK, calls)):
                    times[name].append(await _report(bridge, i))
                for who, seconds in _cpu_now(watched).items():
                    cpu[name][who] += seconds - before[who]
        per_call = {name: {who: round(1e6 * s / calls, 1) for who, s in spent.items()} for name, spent in cpu.items()}
        return {"times_ms": times, "cpu_us_per_call": per_call}
    finally:
        for bridge in bridges.values():
            await bridge.close()


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    if len(pairs) != len(values):
        raise SystemExit(f"each {what} must be NAME=VALUE, got {values}")
    return pairs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="time JobBridgeService.ReportProgress from an executor process")
    parser.add_argument("result", type=Path, help="where the JSON result goes")
    parser.add_argument("--calls", type=int, required=True, help="timed calls per target")
    parser.add_argument("--warmup", type=int, required=True, help="untimed calls per target first")
    parser.add_argument("--target", action="append", required=True, metavar="NAME=SOCKET")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID", help="a process whose CPU to count")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"set {TOKEN_ENV} to the bridge's token")
    watched = {name: int(pid) for name, pid in _pairs(args.watch, "--watch").items()}
    result = asyncio.run(run(_pairs(args.target, "--target"), watched, args.calls, args.warmup, token))
    tmp = args.result.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.result)  # whole or absent: the reader never sees half a result


if __name__ == "__main__":
    main(sys.argv[1:])
