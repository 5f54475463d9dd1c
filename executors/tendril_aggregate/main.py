"""The aggregate executor's program (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import math
import signal
import sys
from collections.abc import Mapping
from typing import Any

import grpc

from tendril_sdk import (
    CODECS,
    DEFAULT_RETRY,
    STREAM_BREAK_CODES,
    TRANSIENT_CODES,
    BridgeClient,
    BridgeError,
    BridgeReason,
    ExecutorEnvError,
    JobDescriptorError,
    RunStatus,
    tracing,
)

EXIT_SIGNALLED = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERM death
EXIT_BAD_CONFIG = 2
REWATCH_SECONDS = 1.0  # pause before watching again when a watch ended before the run did
UINT32_MAX = 2**32 - 1

# NOTE: a watch is opened again (it starts with the state now) while the parameter server or the
# bridge is away or stopping (a transient code or a broken stream), for as long as DEFAULT_RETRY
# allows.
WATCH_RETRY = dataclasses.replace(DEFAULT_RETRY, codes=TRANSIENT_CODES | STREAM_BREAK_CODES)
# Refusals of OpenRun that mean the job's config is wrong (exit 2, not 1).
CONFIG_REASONS = frozenset({BridgeReason.BAD_RUN_ID, BridgeReason.BAD_RUN_CONFIG, BridgeReason.BAD_CODEC})


def log(event: str, **fields: Any) -> None:
    """One JSON line on stderr (JobService keeps it in executor.log)."""
    line = {
        "event": event,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
        "service": "aggregate",
        **fields,
    }
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


class ConfigError(ValueError):
    """The job's config cannot describe an aggregation; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class AggregateConfig:
    """The aggregate job's config (see OpenRun: a key left out, None here, means the parameter
    server's default; 0 is 0 for outer_lr and outer_momentum, the default for quorum and rounds)."""

    run_id: str
    expected_workers: int
    quorum: int = 0
    round_timeout_seconds: float = 0.0
    outer_lr: float | None = None
    outer_momentum: float | None = None
    codec: str = "fp32"
    rounds: int = 0
    fragments: int = 0  # streaming sync: open one run per fragment of θ, <run_id>-f<k>; 0: the run itself

    @property
    def runs(self) -> list[str]:
        """The runs this job opens, follows and closes."""
        if not self.fragments:
            return [self.run_id]
        return [f"{self.run_id}-f{k}" for k in range(self.fragments)]


def parse_config(config: Mapping[str, Any]) -> AggregateConfig:
    """The aggregate config of a job's dispatch config; raises ConfigError saying what is wrong."""
    run_id = config.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ConfigError("the aggregate job config needs run_id (the DiLoCo run the workers push under)")
    try:
        parsed = AggregateConfig(
            run_id=run_id,
            expected_workers=int(config.get("expected_workers", 0)),
            quorum=int(config.get("quorum", 0)),
            round_timeout_seconds=float(config.get("round_timeout_seconds", 0.0)),
            outer_lr=_optional_float(config.get("outer_lr")),
            outer_momentum=_optional_float(config.get("outer_momentum")),
            codec=str(config.get("codec", "fp32") or "fp32"),
            rounds=int(config.get("rounds", 0)),
            fragments=int(config.get("fragments", 0)),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"bad aggregate job config: {exc}") from exc
    if not 1 <= parsed.expected_workers <= UINT32_MAX:
        raise ConfigError("the aggregate job config needs expected_workers >= 1")
    if not 0 <= parsed.quorum <= UINT32_MAX or parsed.rounds < 0 or parsed.fragments < 0:
        raise ConfigError("bad aggregate job config: quorum, rounds and fragments must be >= 0")
    numbers = (parsed.round_timeout_seconds, parsed.outer_lr, parsed.outer_momentum)
    if not all(v is None or math.isfinite(v) for v in numbers):
        raise ConfigError("bad aggregate job config: round_timeout_seconds, outer_lr and outer_momentum must be finite")
    if parsed.codec not in CODECS:
        raise ConfigError(f"bad aggregate job config: codec {parsed.codec!r} is not one of {', '.join(CODECS)}")
    return parsed


def _optional_float(value: Any) -> float | None:
    """A config number that may be left out (None: the parameter server's default)."""
    return None if value is None else float(value)


class Aggregation:
    """Open the job's run, follow its rounds until the last one closed, close it."""

    def __init__(self, bridge: BridgeClient, config: AggregateConfig) -> None:
        self.bridge = bridge
        self.config = config
        self._last: dict[str, tuple[object, ...]] = {}

    async def open(self) -> None:
        for run_id in self.config.runs:
            await self.open_one(run_id)

    async def open_one(self, run_id: str) -> None:
        c = self.config
        opened = await self.bridge.open_run(
            run_id=run_id,
            expected_workers=c.expected_workers,
            quorum=c.quorum,
            round_timeout_seconds=c.round_timeout_seconds,
            outer_lr=c.outer_lr,
            outer_momentum=c.outer_momentum,
            codec=c.codec,
            rounds=c.rounds,
        )
        log("aggregate.opened", run_id=opened.run_id, round=opened.round, resumed=opened.resumed)

    def _seen(self, run_id: str, status: RunStatus) -> None:
        key = (status.round, status.round_closed, status.committed_workers, status.state)
        if key != self._last.get(run_id):
            self._last[run_id] = key
            log(
                "aggregate.round",
                run_id=run_id,
                round=status.round,
                state="closed" if status.round_closed else "open",
                committed=list(status.committed_workers),
                expected=status.expected_workers,
                run_state=status.state.value,
            )

    async def follow(self) -> None:
        """Until every run finished (its last round closed) or was closed."""
        await asyncio.gather(*(self.follow_one(run_id) for run_id in self.config.runs))

    async def follow_one(self, run_id: str) -> None:
        """Until the run finished (its last round closed) or was closed."""
        while True:
            try:
                async for status in self.bridge.watch_run(run_id, retry_policy=WATCH_RETRY):
                    self._seen(run_id, status)
                    if status.ended:
                        return
            except BridgeError as exc:
                if exc.reason == BridgeReason.RUN_NOT_OPEN:
                    # The parameter server lost the run (it restarted without its state): reopen.
                    log("aggregate.reopen", run_id=run_id, message=exc.message)
                    await self.open_one(run_id)
                    continue
                if exc.reason != BridgeReason.WATCH_OVERFLOW:  # (then: a new watch starts with the state now)
                    raise
                continue
            log("aggregate.rewatch", run_id=run_id)  # the watch ended before the run did
            await asyncio.sleep(REWATCH_SECONDS)

    async def run(self) -> None:
        await self.open()
        await self.follow()

    async def close(self) -> None:
        for run_id in self.config.runs:
            await self.bridge.close_run(run_id)
            log("aggregate.closed", run_id=run_id)


async def run(bridge: BridgeClient) -> int:
    async with bridge:
        job = bridge.job if bridge.job is not None else await bridge.get_job()
        config = parse_config(job.config)
        log("aggregate.start", run_id=config.run_id, job_id=job.job_id, rounds=config.rounds)
        aggregation = Aggregation(bridge, config)
        work = asyncio.create_task(aggregation.run())
        signalled = False

        def on_signal() -> None:
            nonlocal signalled
            signalled = True
            work.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            try:
                await work
            except asyncio.CancelledError:
                if not signalled:
                    raise
            # NOTE: also after a stop signal: the run is closed (no more pushes) and its state
            # stays on the parameter server's disk, so a new aggregate job resumes it.
            await aggregation.close()
        except BridgeError as exc:
            log("aggregate.failed", code=exc.code.name, reason=str(exc.reason), method=exc.method, error=exc.message)
            print(f"aggregate executor: {exc}", file=sys.stderr)
            if signalled:
                return EXIT_SIGNALLED
            refused = exc.code is grpc.StatusCode.INVALID_ARGUMENT and exc.reason in CONFIG_REASONS
            return EXIT_BAD_CONFIG if refused else 1
    return EXIT_SIGNALLED if signalled else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tendril_aggregate",
        description="Tendril aggregate executor (a DiLoCo run on the worker's parameter server)",
    )
    parser.add_argument("--socket", default=None, help="the job bridge's Unix socket (default: env SOCKET_PATH)")
    args = parser.parse_args(argv)
    try:
        bridge = BridgeClient.from_env(socket_path=args.socket)
    except (ExecutorEnvError, JobDescriptorError) as exc:
        print(f"aggregate executor: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    tracing.setup("aggregate")  # when OTEL_*/TENDRIL_TRACE_FILE is set: joins the Dispatch trace
    try:
        return asyncio.run(run(bridge))
    except ConfigError as exc:
        print(f"aggregate executor: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except BridgeError as exc:  # GetJob failed (no job.json)
        print(f"aggregate executor: {exc}", file=sys.stderr)
        return 1
