"""End to end LoRA fine-tuning through DiLoCo: a chat JSONL is prepared with a chat template made
here (`tendril data prepare --chat`, labels on the assistant's tokens only), a tiny Llama made
here is packed into the data set as the base checkpoint (`tendril data add-model`), and two
supervised workers fine-tune a LoRA adapter on it for two DiLoCo rounds through every real
service. The parameter server's run holds the adapter's tensors only, so that is what every
push carries (the bytes each round's pushes sent are the adapter's, a small part of the
model's); the held-out evaluation runs on base + adapter; the scheduler exports the adapter
(PeftModel.from_pretrained loads it, with the trained weights) and, with merge = true, the
merged model (AutoModelForCausalLM.from_pretrained loads it)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, processes_under, worker_ports
from tendril.scheduler.metrics import read_metrics
from tendril_models import DataSpec, ModelSpec
from tendril_models.build import build_model
from tests.integration.test_e2e_models import LLAMA, START_SECONDS, _job_toml, _run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
FINETUNE = """
[training.finetune]
r = 4
alpha = 8.0
merge = true
"""


def _chat_jsonl(path: Path, count: int) -> None:
    words = ["red", "green", "blue", "cyan", "pink", "gold"]
    lines = []
    for i in range(count):
        a, b = words[i % 6], words[(i // 6) % 6]
        if i % 2:
            lines.append({"prompt": f"mix {a} and {b}", "response": f"{a}-{b}"})
        else:
            lines.append(
                {
                    "messages": [
                        {"role": "system", "content": "answer briefly"},
                        {"role": "user", "content": f"say {a} twice"},
                        {"role": "assistant", "content": f"{a} {a}"},
                    ]
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


async def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tendril.data_node", *argv], capture_output=True, text=True, check=False
    )


async def test_lora(tmp_path: Path) -> None:  # NOTE: a short name: bridge socket paths must fit 107 bytes
    _chat_jsonl(tmp_path / "chat.jsonl", 400)
    (tmp_path / "chat.jinja").write_text(TEMPLATE)
    folder = tmp_path / "data"
    prepared = await _cli(
        "prepare",
        str(tmp_path / "chat.jsonl"),
        str(folder),
        "--chat",
        "--chat-template",
        str(tmp_path / "chat.jinja"),
        "--seq-len",
        "64",
        "--sequences-per-slice",
        "64",
        "--eval-fraction",
        "0.1",
        "--no-progress",
    )
    assert prepared.returncode == 0, prepared.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["tensors"]) == {"input_ids", "attention_mask", "labels"}

    base = build_model(ModelSpec.from_dict({"config": LLAMA}), DataSpec.from_manifest(manifest), seed=11)
    base.save_pretrained(tmp_path / "base")
    added = await _cli("add-model", str(folder), str(tmp_path / "base"))
    assert added.returncode == 0, added.stderr
    source = f"tendril-data://{manifest['dataset_id']}/model.tar"

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
        model = f'[training.model]\ntask = "causal-lm"\nsource = "{source}"\n{FINETUNE}'
        job.write_text(_job_toml(out, "lora", gateway=gateway, data_node=data_node, model=model))
        code = await _run(cluster, job)
        log = (cluster.logs / "scheduler.log").read_text()
        assert code == 0, log[-3000:]
    finally:
        killed = cluster.stop()
    assert killed == [], "every process should stop on SIGTERM"
    assert processes_under(tmp_path) == []

    lines = read_metrics(out / "metrics.jsonl")
    assert [line["round"] for line in lines] == [0, 1]
    assert all(math.isfinite(line["loss_mean"]) and line["contributors"] == 2 for line in lines), lines
    assert any(math.isfinite(line.get("eval_loss", math.nan)) for line in lines), lines  # eval on base + adapter

    # θ at the parameter server is the adapter: LoRA A and B of q_proj and v_proj, nothing of the base.
    theta = load_file(str(out / "model.safetensors"))
    assert theta and all(".lora_A." in name or ".lora_B." in name for name in theta), sorted(theta)
    adapter_bytes = sum(t.numel() * 4 for t in theta.values())
    model_bytes = sum(p.numel() * 4 for p in base.parameters())
    assert adapter_bytes * 20 < model_bytes
    for line in lines:
        # Each round two pushes of the adapter in fp32 (SafeTensors layout: a header of the names), never the model.
        assert 2 * adapter_bytes <= line["bytes_up"] <= 2 * (adapter_bytes + 8192), (line["bytes_up"], adapter_bytes)
    assert not all(torch.equal(t, torch.zeros_like(t)) for n, t in theta.items() if ".lora_B." in n), "B moved"

    # The export: the adapter (PeftModel loads it on the base) and the merged model.
    from peft import PeftModel

    adapter = out / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == source
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), adapter)
    trained = {n: p.detach() for n, p in tuned.named_parameters() if "lora_" in n}
    assert len(trained) == len(theta) and all(torch.equal(trained[n], theta[n]) for n in theta)
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    assert merged.config.model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert tokenizer.chat_template == TEMPLATE
