"""End to end with models other than the built-in GPT-2: two supervised workers train, through
every real service, a tiny Llama (causal-lm) loaded from a checkpoint folder named by a file://
URI, then a tiny BERT (masked-lm) from a .tar.gz archive on an HTTP server the test starts
(sha256 checked), two DiLoCo rounds each; a pickle-only checkpoint makes the run fail with the
executor's own reason in the scheduler's log. The checkpoints are made here with save_pretrained
(no downloads)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import math
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, processes_under, worker_ports
from tendril.scheduler.demo import DemoSettings, prepare_data
from tendril.scheduler.metrics import read_metrics
from tendril_diloco.params import load_params
from tendril_models import DataSpec, ModelSpec
from tendril_models.build import build_model

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(420)]

SEQ_LEN = 32
START_SECONDS = 120.0
RUN_SECONDS = 150.0
LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
}
BERT = {
    "model_type": "bert",
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
}


def _job_toml(out: Path, run_id: str, *, gateway: str, data_node: str, model: str, gpu: int = 0) -> str:
    return f"""
[scheduler]
id = "{run_id}-scheduler"
listen = "{free_address()}"
gateway = "{gateway}"
out_dir = "{out}"
finish_timeout_seconds = 30.0

[allocation]
workers = 2
bid = 150.0
republish_seconds = 2.0
timeout_seconds = {START_SECONDS}
max_lost = 0

[allocation.worker]
cpu = 1.0
memory_gib = 1.0
storage_gib = 1.0
gpu = {gpu}

[allocation.parameter_server]
cpu = 0.5
memory_gib = 0.5
storage_gib = 1.0

[data]
node = "{data_node}"

[training]
run_id = "{run_id}"
rounds = 2
inner_steps = 4
round_timeout_seconds = 20.0
torch_threads = 1

[training.inner]
lr = 0.003
warmup_steps = 0
batch_size = 8

{model}
"""


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


async def _run(cluster: LocalCluster, job: Path, timeout: float = RUN_SECONDS) -> int:
    scheduler = cluster.start_scheduler(job)
    deadline = time.monotonic() + timeout
    while scheduler.popen.poll() is None:
        assert time.monotonic() < deadline, f"the scheduler did not finish; its log ends:\n{scheduler.tail(30)}"
        await asyncio.sleep(0.5)
    cluster.procs.remove(scheduler)
    return int(scheduler.popen.returncode)


async def test_hf_models(tmp_path: Path, http_server: tuple[str, Path]) -> None:
    base_url, served = http_server
    settings = DemoSettings(out=tmp_path, seq_len=SEQ_LEN, max_bytes=120_000, sequences_per_slice=64)
    manifest = json.loads((prepare_data(settings) / "manifest.json").read_text())
    data = DataSpec.from_manifest(manifest)

    # The checkpoints: a Llama folder (file://), a BERT archive (http://), a pickle-only folder.
    models = tmp_path / "models"
    llama = build_model(ModelSpec.from_dict({"config": LLAMA}), data, seed=11)
    llama.save_pretrained(models / "llama")
    bert = build_model(ModelSpec.from_dict({"task": "masked-lm", "config": BERT}), data, seed=12)
    bert.save_pretrained(models / "bert")
    with tarfile.open(served / "bert.tar.gz", "w:gz") as archive:
        archive.add(models / "bert", arcname="bert")
    bert_sha256 = hashlib.sha256((served / "bert.tar.gz").read_bytes()).hexdigest()
    llama.config.save_pretrained(models / "pickled")
    torch.save(llama.state_dict(), models / "pickled" / "pytorch_model.bin")

    cluster = LocalCluster(tmp_path / "r")  # NOTE: short: bridge socket paths must fit 107 bytes
    try:
        gateway = free_address()
        await cluster.wait_serving(cluster.start_gateway(gateway), [gateway], START_SECONDS)
        data_node = free_address()
        await cluster.wait_serving(
            cluster.start_data_node(tmp_path / "data", data_node, gateway), [data_node], START_SECONDS
        )
        extra = (("job.fetch_roots", [str(models)]), ("job.keep_work_dirs", True))
        specs = [
            WorkerSpec(f"worker-{i}", offset, "flexible" if i == 0 else "whole", extra=extra)
            for i, offset in enumerate(pick_offsets(2))
        ]
        for spec in specs:
            proc = cluster.start_worker(spec, gateway)
            await cluster.wait_serving(proc, worker_ports(spec.port_offset)[:5], START_SECONDS)

        runs = {
            "llama": f'[training.model]\ntask = "causal-lm"\nsource = "{(models / "llama").as_uri()}"\n',
            "bert": (
                f'[training.model]\ntask = "masked-lm"\nsource = "{base_url}/bert.tar.gz"\nsha256 = "{bert_sha256}"\n'
            ),
        }
        for name, model in runs.items():
            out = tmp_path / f"out-{name}"
            job = tmp_path / f"{name}.toml"
            job.write_text(_job_toml(out, f"m-{name}", gateway=gateway, data_node=data_node, model=model))
            code = await _run(cluster, job)
            log = (cluster.logs / "scheduler.log").read_text()[-3000:]
            assert code == 0, f"{name}: {log}"
            lines = read_metrics(out / "metrics.jsonl")
            assert [line["round"] for line in lines] == [0, 1], name
            assert all(math.isfinite(line["loss_mean"]) and line["contributors"] == 2 for line in lines), lines
            final = load_params(out / "model.safetensors")
            start = llama if name == "llama" else bert
            names = dict(start.named_parameters())
            assert final.keys() == names.keys(), f"{name}: the run trained the checkpoint's parameters"
            assert not all(torch.equal(final[k], names[k].detach()) for k in final), f"{name}: θ moved"

        # A pickle-only checkpoint: every job fails with the executor's reason, and the run with it.
        job = tmp_path / "pickled.toml"
        model = f'[training.model]\nsource = "{(models / "pickled").as_uri()}"\n'
        job.write_text(
            _job_toml(tmp_path / "out-pickled", "m-pickled", gateway=gateway, data_node=data_node, model=model)
        )
        code = await _run(cluster, job)
        log = (cluster.logs / "scheduler.log").read_text()
        assert code == 1
        assert "no model.safetensors" in log and "SafeTensors weights only" in log, log[-3000:]
    finally:
        killed = cluster.stop()
    assert killed == [], "every process should stop on SIGTERM"
    assert processes_under(tmp_path) == []


def _events(log: Path, event: str) -> list[dict[str, object]]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if f'"{event}"' in line and line.startswith("{")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
async def test_one_gpu_bf16(tmp_path: Path) -> None:
    """A worker with one GPU: the training job's lease holds it, the executor sees it in
    CUDA_VISIBLE_DEVICES and trains on CUDA with bf16 (mixed_precision auto); 2 rounds, loss finite."""
    settings = DemoSettings(out=tmp_path, seq_len=SEQ_LEN, max_bytes=120_000, sequences_per_slice=64)
    prepare_data(settings)
    cluster = LocalCluster(tmp_path / "r")
    try:
        gateway = free_address()
        await cluster.wait_serving(cluster.start_gateway(gateway), [gateway], START_SECONDS)
        data_node = free_address()
        await cluster.wait_serving(
            cluster.start_data_node(tmp_path / "data", data_node, gateway), [data_node], START_SECONDS
        )
        extra = (("resources.gpu", 1), ("job.keep_work_dirs", True))
        specs = [
            WorkerSpec("worker-0", pick_offsets(1)[0], "flexible", extra=extra),
        ]
        for spec in specs:
            proc = cluster.start_worker(spec, gateway)
            await cluster.wait_serving(proc, worker_ports(spec.port_offset)[:5], START_SECONDS)
        job = tmp_path / "gpu.toml"
        model = f"[training.model.config]\n{chr(10).join(f'{k} = {json.dumps(v)}' for k, v in LLAMA.items())}\n"
        text = _job_toml(tmp_path / "out", "m-gpu", gateway=gateway, data_node=data_node, model=model, gpu=1)
        job.write_text(text.replace("workers = 2", "workers = 1"))
        code = await _run(cluster, job)
        assert code == 0, (cluster.logs / "scheduler.log").read_text()[-3000:]
        lines = read_metrics(tmp_path / "out" / "metrics.jsonl")
        assert [line["round"] for line in lines] == [0, 1]
        assert all(math.isfinite(line["loss_mean"]) for line in lines)
        logs = list((tmp_path / "r").glob("worker-0/work/job-m-gpu-t*/executor.log"))
        ready = [e for log in logs for e in _events(log, "model.ready")]
        assert ready and ready[0]["device"] == "cuda:0" and ready[0]["mixed_precision"] == "bf16", ready
    finally:
        cluster.stop()
