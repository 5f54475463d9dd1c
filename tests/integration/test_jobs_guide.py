"""docs/JOBS.md's walkthrough runs as written: every command in it, in order, on this machine (free
ports in place of the guide's, 127.0.0.1 in place of its hosts, two workers with their own port
offsets and state dirs in place of two hosts, a folder of the test's in place of /srv/tendril).

The model is a tiny GPT-2 with a chat template made here, the prompts and the conversations are
a few lines written here; the walkthrough submits an inference job with `tendril jobs submit`
and fine-tunes the model with LoRA through `tendril scheduler run`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

import pytest

from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, pick_offsets, worker_ports
from tests import guides
from tests.tiny_lm import make_tiny_lm

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "JOBS.md"
SERVERS = ("tendril gateway run", "tendril data serve", "tendril worker run")
START_SECONDS = 120.0
PROMPTS = ["the quick brown fox", "a worker runs", "tendrils grow towards"]
TOPICS = ["fox", "dog", "worker", "light", "water", "numbers", "network", "jobs"]


def _prompts(path: Path) -> None:
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))


def _conversations(path: Path, count: int) -> None:
    """Chat JSONL in both documented forms: messages lists and prompt/response pairs."""
    lines = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        if i % 2:
            lines.append({"prompt": f"tell me about the {topic}", "response": f"the {topic} is number {i % 10}"})
        else:
            lines.append(
                {
                    "messages": [
                        {"role": "user", "content": f"what does the {topic} do"},
                        {"role": "assistant", "content": f"the {topic} jumps over the lazy dog {i % 7} times"},
                    ]
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _here(text: str, ports: dict[str, str], srv: Path) -> str:
    return guides.localise(text, ports).replace("/srv/tendril", str(srv))


async def test_the_jobs_guide_runs_as_written(tmp_path: Path) -> None:
    blocks = guides.blocks(GUIDE)
    walkthrough = GUIDE.read_text().split("## Submit a job and get its results")[0]
    blocks = [b for b in blocks if b[1] in walkthrough]
    commands = guides.commands(blocks)
    tomls = [body for kind, body in blocks if kind == "toml"]
    assert len(tomls) == 3, "the walkthrough's worker.toml, answers.toml and lora.toml"

    srv = tmp_path / "srv"  # NOTE: short paths: bridge socket paths must fit 107 bytes
    make_tiny_lm(srv / "my-model", chat_template=True, n_positions=128)
    _prompts(srv / "prompts.jsonl")
    _conversations(srv / "chat.jsonl", 240)
    ports = {port: free_address() for port in ("50050", "50060", "50070", "50080")}
    (tmp_path / "answers.toml").write_text(_here(tomls[1], ports, srv))
    (tmp_path / "lora.toml").write_text(_here(tomls[2], ports, srv))
    lora = tomllib.loads(_here(tomls[2], ports, srv))
    workers = {f"worker-{c}": offset for c, offset in zip("ab", pick_offsets(2), strict=True)}
    # NOTE: the workers' dirs under a short root: a job's bridge socket path must fit 107 bytes.
    short = Path(tempfile.mkdtemp(prefix="tj-", dir="/tmp"))
    cluster = LocalCluster(tmp_path)
    outputs: dict[str, str] = {}
    try:
        for command in commands:
            local = _here(command, ports, srv)
            if command.startswith("tendril worker run"):
                for name, offset in workers.items():
                    config = tmp_path / f"{name}.toml"
                    config.write_text(_here(guides.worker_toml(tomls[0], name, offset, short, ports), ports, srv))
                    proc = cluster.spawn(name, guides.argv(local.replace("worker.toml", str(config))), tier=2)
                    await cluster.wait_serving(proc, worker_ports(offset)[:5], START_SECONDS)
            elif command.startswith(SERVERS):
                tier, address = guides.server(local)
                proc = cluster.spawn(command.split()[1], guides.argv(local), tier=tier)
                await cluster.wait_serving(proc, [address], START_SECONDS)
            elif command.startswith("tendril"):
                done = await guides.run(guides.argv(local), tmp_path, 600)
                assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                outputs[command] = done.stdout
            else:
                done = await guides.run(local, tmp_path, 60)
                assert done.returncode == 0, f"{command}\n{done.stderr}"
                outputs[command] = done.stdout
    finally:
        killed = cluster.stop()
        shutil.rmtree(short, ignore_errors=True)
    assert killed == [], "every process should stop on SIGTERM"

    # The inference job: one line per prompt, in the file's order, with token counts; a summary.
    answers = tmp_path / "answers"
    lines = [json.loads(line) for line in (answers / "generations.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["p0", "p1", "p2"] and [line["prompt"] for line in lines] == PROMPTS
    assert all(line["prompt_tokens"] > 0 and 0 < line["completion_tokens"] <= 16 for line in lines), lines
    summary = json.loads((answers / "summary.json").read_text())
    assert summary["complete"] is True and summary["prompts"] == 3 and summary["device"] == "cpu"
    partial = [n for n in os.listdir(tmp_path) if n.startswith(".answers.part-")]
    assert not partial, "no partial download is left beside the results"

    # The LoRA run: both rounds, held-out loss, only the adapter travelled, the adapter and the merged model.
    out = tmp_path / lora["scheduler"]["out_dir"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [line for line in metrics if "loss_mean" in line]
    assert len(rounds) == lora["training"]["rounds"] and all(math.isfinite(r["loss_mean"]) for r in rounds)
    assert any(math.isfinite(line.get("eval_loss", math.nan)) for line in metrics), metrics
    from safetensors.torch import load_file

    theta = load_file(str(out / "model.safetensors"))
    assert theta and all("lora_" in name for name in theta), sorted(theta)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (out / "adapter").iterdir()}
    assert "adapter_model.safetensors" in outputs["ls my-lora/adapter"]
    assert outputs['tendril model generate my-lora/model --prompt "user: hello" --max-new-tokens 8'].strip()
