"""End to end: a 2-round run through the real network (gateway, data node, supervised workers,
parameter server, scheduler) with its held-out evaluation job, and the model it exports:
metrics.jsonl has eval_loss for every round, and <out>/model loads with from_pretrained and
generates text (`tendril model generate`).

A data set without a held-out split (a format-1 manifest, or a data node that lists no
eval_slices) runs without evaluation, and the scheduler says so instead of failing."""

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

from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril.scheduler.evaluation import NO_SPLIT

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(400)]


def _has_held_out(data: Path) -> bool:
    """Whether the prepared data set has a held-out split (then the data node must serve it)."""
    return bool(json.loads((data / "manifest.json").read_text()).get("eval_slices"))


async def test_eval_export(tmp_path: Path) -> None:
    # NOTE: a short test name: the job bridges' socket paths under tmp_path must fit 107 bytes.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=2,
        inner_steps=6,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="e2ev",
        timeout_seconds=300,
    )
    result = await run_cluster(settings)
    log = (result.cluster_root / "logs" / "scheduler.log").read_text()
    assert result.scheduler_exit == 0, log[-3000:]
    assert result.killed == [] and processes_under(tmp_path) == []

    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1]
    if _has_held_out(tmp_path / "data"):
        for line in lines:
            assert math.isfinite(line["eval_loss"]) and line["eval_loss"] > 0, line
            assert line["eval_perplexity"] == pytest.approx(math.exp(line["eval_loss"]), rel=1e-3)
            assert line["eval_examples"] > 0
        assert "eval/diloco" in log and NO_SPLIT not in log
    else:
        assert all("eval_loss" not in line for line in lines)
        assert NO_SPLIT in log

    # the exported model is the final θ, loadable with from_pretrained, with the data set's tokenizer
    model_dir = tmp_path / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    final = load_file(str(tmp_path / "model.safetensors"))
    params = dict(model.named_parameters())
    assert final.keys() == params.keys()
    for name, value in final.items():
        assert torch.equal(params[name].detach(), value), name
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer("def f():")["input_ids"]
    command = [sys.executable, "-m", "tendril.cli", "model", "generate", str(model_dir), "--prompt", "import "]
    out = await asyncio.to_thread(
        subprocess.run, [*command, "--max-new-tokens", "8"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("import ")

    # `tendril model eval` scores it on the data set's held-out split (its training slices without one)
    split = "eval" if _has_held_out(tmp_path / "data") else "train"
    command = [sys.executable, "-m", "tendril.cli", "model", "eval", str(model_dir), str(tmp_path / "data")]
    command += ["--split", split, "--json", *(["--max-examples", "32"] if split == "train" else [])]
    out = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    scored = json.loads(out.stdout)
    assert math.isfinite(scored["eval_loss"])
    if split == "eval":  # the final θ on the same held-out split: the run's last evaluation
        assert scored["eval_loss"] == pytest.approx(lines[-1]["eval_loss"], rel=1e-4)
        assert scored["eval_examples"] == lines[-1]["eval_examples"]
    else:
        assert scored["eval_examples"] == 32
