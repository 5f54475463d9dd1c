"""The example executor's program (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tendril_sdk import BridgeClient, BridgeError, ExecutorEnvError, JobDescriptorError, tracing

EXIT_ON_SIGTERM = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERM death


def _say(text: str) -> None:
    print(f"[example] {text}", flush=True)


def _write_result(result: dict[str, Any]) -> Path:
    path = Path(os.environ.get("WORK_DIR", ".")) / "result.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def _write_results(folder: Path, files: Any) -> list[str]:
    """Config ``results`` ({relative path: text}): files written into the job's results folder."""
    if not isinstance(files, dict):
        raise ValueError(f"config results must be a table of relative path = text, got {files!r}")
    written = []
    for name, text in files.items():
        target = folder / str(name)
        if not target.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"config results: {name!r} leaves the results folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(text))
        written.append(str(name))
    return written


async def run(bridge: BridgeClient) -> int:
    async with bridge:
        job = await bridge.get_job()
        config = job.config
        _say(f"job {job.job_id} on worker {job.worker_id}, config {json.dumps(config, sort_keys=True)}")
        result: dict[str, Any] = {"job_id": job.job_id, "worker_id": job.worker_id, "config": config}
        uri = config.get("fetch")
        if uri:
            fetched = await bridge.fetch_resource(uri, sha256=config.get("fetch_sha256", ""))
            _say(f"fetched {uri} -> {fetched.relative} ({fetched.size_bytes} bytes, sha256 {fetched.sha256})")
            result["fetched"] = {"path": fetched.relative, "size_bytes": fetched.size_bytes, "sha256": fetched.sha256}
    sleep = float(config.get("sleep_seconds", 0) or 0)
    exit_code = int(config.get("exit_code", 0) or 0)
    result["exit_code"] = exit_code
    _say(f"wrote {_write_result(result)}")
    if "results" in config:
        written = _write_results(job.results_dir, config["results"])
        _say(f"wrote results {', '.join(written)} into {job.results_dir}")
    if sleep > 0:
        _say(f"sleeping {sleep:g} s")
        await asyncio.sleep(sleep)
    _say(f"done, exiting with code {exit_code}")
    return exit_code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tendril example executor")
    parser.add_argument("--socket", default=None, help="the job bridge's Unix socket (default: env SOCKET_PATH)")
    args = parser.parse_args(argv)
    try:
        bridge = BridgeClient.from_env(socket_path=args.socket)
    except (ExecutorEnvError, JobDescriptorError) as exc:
        print(f"example executor: {exc}", file=sys.stderr)
        sys.exit(2)

    def on_sigterm(signum: int, frame: Any) -> None:
        _say("SIGTERM: stopping now")
        os._exit(EXIT_ON_SIGTERM)  # nothing to flush or save: leave at once

    signal.signal(signal.SIGTERM, on_sigterm)
    tracing.setup("example")  # when OTEL_*/TENDRIL_TRACE_FILE is set: joins the Dispatch trace
    started = time.monotonic()
    try:
        code = asyncio.run(run(bridge))
    except BridgeError as exc:
        _say(f"bridge call failed: {exc.code.name}: {exc.message} (reason {exc.reason or 'none'})")
        code = 1
    _say(f"ran {time.monotonic() - started:.2f} s")
    sys.exit(code)
