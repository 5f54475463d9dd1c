"""Parallel streams across a lab link: push and pull time of one payload with K connections.

``measure_streams(lab, ...)`` starts a parameter server alone on ``worker-0``'s host (plaintext,
its data port on the host's address) and runs ``python -m tendril.lab.streams client`` on
``worker-1``'s host: it opens a run, offers θ0, then for each count asked for (``--streams``)
pushes a pseudo-gradient of the same size (one round each) and pulls the run's θ, timing both,
and with ``--auto`` lets the bridge's rule (:class:`tendril.core.tensorstream.StreamChooser`)
choose the count over successive rounds until it settled in both directions. One JSON line per
measurement: ``{"mode", "streams", "mb", "push_s", "pull_s", "push_mbit", "pull_mbit"}``
(``streams`` is the push's count; auto rows add ``pull_streams``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PS_PORT = 51155
DATA_PORT = 51156
RUN = "streams"
AUTO_ROUNDS = 6  # at most 1 → 2 → 4 → 8 and one more to show the choice


def _write(path: Path, mb: float, seed: int) -> Path:
    from safetensors.numpy import save_file

    values = int(mb * 1e6 / 4)
    rng = np.random.default_rng(seed)
    save_file({"w": (rng.standard_normal(values) * 1e-2).astype(np.float32)}, str(path))
    return path


async def client(ps: str, mb: float, counts: list[int], auto: bool, folder: Path) -> list[dict[str, Any]]:
    from tendril.core import tensorstream
    from tendril.core.channel import open_channel
    from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc

    def prepare() -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        return _write(folder / "theta.st", mb, 0), _write(folder / "delta.st", mb, 1)

    theta, delta = await asyncio.to_thread(prepare)
    host = ps.rpartition(":")[0]
    results: list[dict[str, Any]] = []
    async with open_channel(ps, peer_id="lab-streams") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id=RUN, expected_workers=1, rounds=0))
        await tensorstream.push_parameters(channel, theta, run_id=RUN, worker_id="lab-streams")
        round_ = 0

        async def once(streams: int, mode: str, **extra: Any) -> dict[str, Any]:
            nonlocal round_
            began = time.perf_counter()
            sent = await tensorstream.push_update(
                channel, delta, run_id=RUN, round=round_, worker_id="lab-streams", weight=1.0, codec="fp32"
            )
            pushed = time.perf_counter() - began
            await tensorstream.pull_update(channel, run_id=RUN, round=round_, dest=folder / "u.st", codec="fp32")
            round_ += 1
            began = time.perf_counter()
            await tensorstream.pull_parameters(channel, run_id=RUN, dest=folder / "theta1.st")
            pulled = time.perf_counter() - began
            size = sent * 8 / 1e6
            row = {
                "mode": mode,
                "streams": streams,
                "mb": round(sent / 1e6, 1),
                "push_s": round(pushed, 3),
                "pull_s": round(pulled, 3),
                "push_mbit": round(size / pushed, 1),
                "pull_mbit": round(size / pulled, 1),
                **extra,
            }
            print(json.dumps(row), flush=True)
            return row

        for count in counts:
            tensorstream.CHOOSER = tensorstream.StreamChooser(cap=count)
            for direction in ("push", "pull"):
                tensorstream.CHOOSER.choices[host, direction] = tensorstream._Choice(streams=count, settled=True)
            results.append(await once(count, "fixed"))
        if auto:
            chooser = tensorstream.CHOOSER = tensorstream.StreamChooser(cap=8)
            for _ in range(AUTO_ROUNDS):
                push = chooser.streams(host, "push", 1 << 62)
                pull = chooser.streams(host, "pull", 1 << 62)
                results.append(await once(push, "auto", pull_streams=pull))
                if all(chooser.choices.get((host, d), tensorstream._Choice()).settled for d in ("push", "pull")):
                    break
            final = {d: chooser.streams(host, d, 1 << 62) for d in ("push", "pull")}
            settled = all(chooser.choices.get((host, d), tensorstream._Choice()).settled for d in ("push", "pull"))
            # Each direction with its own choice.
            results.append(await once(final["push"], "chosen", pull_streams=final["pull"], settled=settled))
    return results


def ps_toml(root: Path, ip: str) -> Path:
    """A worker.toml whose parameter server (the only service started from it) binds ``ip``."""
    path = root / "streams-ps.toml"
    path.write_text(
        "\n".join(
            [
                "[worker]",
                'id = "worker-0"',
                f'state_dir = "{root / "streams-ps" / "state"}"',
                f'work_dir = "{root / "streams-ps" / "work"}"',
                "[paramserver]",
                f'listen = "{ip}:{PS_PORT}"',
                f'data_listen = "{ip}:{DATA_PORT}"',
                "[telemetry]",
                'log_format = "json"',
                'metrics_listen = "127.0.0.1:10465"',
                "",
            ]
        )
    )
    return path


async def measure_streams(
    lab: Any, *, mb: float = 64.0, counts: tuple[int, ...] = (1, 4), auto: bool = True
) -> list[dict[str, Any]]:
    """Push/pull timings between ``worker-1`` (the client) and a parameter server on ``worker-0``."""
    server = lab.host("worker-0")
    config = ps_toml(lab.root, server.ip)
    argv = [sys.executable, "-m", "tendril.paramserver", "--config", str(config)]
    proc = lab.spawn("worker-0", "streams-ps", argv, tier=1)
    address = f"{server.ip}:{PS_PORT}"
    await lab.cluster.wait_serving(proc, [address], 60.0)
    tool = [sys.executable, "-m", "tendril.lab.streams", "client", "--ps", address, "--mb", str(mb)]
    tool += [arg for count in counts for arg in ("--streams", str(count))]
    tool += ["--auto"] if auto else []
    tool += ["--folder", str(lab.root / "streams-client")]
    done = await asyncio.to_thread(lab.run, "worker-1", tool, timeout=600.0)
    if done.returncode != 0:
        raise RuntimeError(f"the streams client failed: {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{") and '"mode"' in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tendril.lab.streams", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("client", help="push and pull against a parameter server, timing each")
    run.add_argument("--ps", required=True, metavar="IP:PORT")
    run.add_argument("--mb", type=float, default=64.0)
    run.add_argument("--streams", type=int, action="append", default=[])
    run.add_argument("--auto", action="store_true")
    run.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(client(args.ps, args.mb, args.streams, args.auto, args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
