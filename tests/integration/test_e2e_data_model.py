"""End to end with a checkpoint served by the data node: a tiny Llama made here with
save_pretrained is packed into the data set with `tendril data add-model`, and two supervised
workers train it for two DiLoCo rounds through every real service, each fetching it as
``tendril-data://data/model.tar`` through its job bridge (sha256 from the manifest) from the data
node that serves the run's data set; the held-out evaluation job loads it the same way, and the
scheduler exports the trained model after fetching the checkpoint from the data node itself."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, processes_under, worker_ports
from tendril.scheduler.demo import DemoSettings, prepare_data
from tendril.scheduler.metrics import read_metrics
from tendril_diloco.params import load_params
from tendril_models import DataSpec, ModelSpec
from tendril_models.build import build_model
from tests.integration.test_e2e_models import LLAMA, SEQ_LEN, START_SECONDS, _job_toml, _run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(420)]


async def test_dn_source(tmp_path: Path) -> None:  # NOTE: a short name: bridge socket paths must fit 107 bytes
    settings = DemoSettings(out=tmp_path, seq_len=SEQ_LEN, max_bytes=120_000, sequences_per_slice=64)
    folder = prepare_data(settings)
    manifest = json.loads((folder / "manifest.json").read_text())
    llama = build_model(ModelSpec.from_dict({"config": LLAMA}), DataSpec.from_manifest(manifest), seed=11)
    llama.save_pretrained(tmp_path / "llama")
    added = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tendril.data_node", "add-model", str(folder), str(tmp_path / "llama")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    source = f"tendril-data://{manifest['dataset_id']}/model.tar"
    assert f'source = "{source}"' in added.stdout

    cluster = LocalCluster(tmp_path / "r")  # NOTE: short: bridge socket paths must fit 107 bytes
    try:
        gateway = free_address()
        await cluster.wait_serving(cluster.start_gateway(gateway), [gateway], START_SECONDS)
        data_node = free_address()
        await cluster.wait_serving(cluster.start_data_node(folder, data_node, gateway), [data_node], START_SECONDS)
        specs = [
            WorkerSpec(f"worker-{i}", offset, "flexible" if i == 0 else "whole")
            for i, offset in enumerate(pick_offsets(2))
        ]
        for spec in specs:
            proc = cluster.start_worker(spec, gateway)
            await cluster.wait_serving(proc, worker_ports(spec.port_offset)[:5], START_SECONDS)

        out = tmp_path / "out"
        job = tmp_path / "job.toml"
        model = f'[training.model]\ntask = "causal-lm"\nsource = "{source}"\n'
        job.write_text(_job_toml(out, "m-dn", gateway=gateway, data_node=data_node, model=model))
        code = await _run(cluster, job)
        log = (cluster.logs / "scheduler.log").read_text()
        assert code == 0, log[-3000:]
        lines = read_metrics(out / "metrics.jsonl")
        assert [line["round"] for line in lines] == [0, 1]
        assert all(math.isfinite(line["loss_mean"]) and line["contributors"] == 2 for line in lines), lines
        assert any(math.isfinite(line.get("eval_loss", math.nan)) for line in lines), lines  # the eval job loaded it
        final = load_params(out / "model.safetensors")
        names = dict(llama.named_parameters())
        assert final.keys() == names.keys(), "the run trained the checkpoint's parameters"
        assert not all(torch.equal(final[k], names[k].detach()) for k in final), "θ moved"
        exported = AutoModelForCausalLM.from_pretrained(out / "model")
        assert exported.config.model_type == "llama"

        # A source naming an asset the data set lacks fails the run before any job, saying what to do.
        bad = tmp_path / "bad.toml"
        model = f'[training.model]\nsource = "tendril-data://{manifest["dataset_id"]}/other.tar"\n'
        bad.write_text(_job_toml(tmp_path / "out-bad", "m-bad", gateway=gateway, data_node=data_node, model=model))
        assert await _run(cluster, bad) != 0
        log = (cluster.logs / "scheduler.log").read_text()
        assert "has no asset 'other.tar'" in log and "tendril data add-model" in log, log[-3000:]
    finally:
        killed = cluster.stop()
    assert killed == [], "every process should stop on SIGTERM"
    assert processes_under(tmp_path) == []
