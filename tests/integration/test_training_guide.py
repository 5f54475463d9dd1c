"""docs/TRAINING.md runs as written: every command in it, in order, on this machine (free ports
in place of the guide's, 127.0.0.1 in place of its hosts, two workers with their own port
offsets and state dirs in place of two hosts).

Parts not in this tree are skipped with a message naming them: training needs
``tendril_models`` (the executor's model catalogue) and ``tendril model generate`` needs the
``model`` command group.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tendril.core.ports import free_address
from tendril.data_node.manifest import load_manifest
from tendril.scheduler.cluster import LocalCluster, pick_offsets, worker_ports
from tendril.scheduler.demo import stdlib_sources
from tendril.scheduler.jobconfig import parse_job_config
from tests import guides

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "TRAINING.md"
SERVERS = ("tendril gateway run", "tendril data serve", "tendril worker run")
START_SECONDS = 120.0


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _has_model_command() -> bool:
    probe = subprocess.run([sys.executable, "-m", "tendril.cli", "model", "--help"], capture_output=True, timeout=60)
    return probe.returncode == 0


def _corpus(path: Path) -> None:
    """A JSONL file like the guide's: a text field and another one, ~400 kB of Python sources."""
    rows, size = [], 0
    for source in stdlib_sources():
        for block in source.read_text(errors="replace").split("\n\n\n"):
            if block.strip():
                rows.append(json.dumps({"text": block, "source": source.name}))
                size += len(block)
        if size > 400_000:
            break
    path.write_text("\n".join(rows) + "\n")


def _tokenizer(folder: Path, corpus: Path) -> None:
    """A tokenizer of the reader's own, trained here with the tokenizers package."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator((json.loads(line)["text"] for line in corpus.read_text().splitlines()), trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(str(folder))


async def test_the_training_guide_runs_as_written(tmp_path: Path) -> None:
    blocks = guides.blocks(GUIDE)
    commands = guides.commands(blocks)
    tomls = [body for kind, body in blocks if kind == "toml"]
    examples = [body for kind, body in blocks if kind == "json"]
    assert len(tomls) >= 3 and len(examples) == 1, "the guide's worker.toml, job.toml and fine-tuning snippet"
    # The blocks after those are [training] snippets (codecs): each one, put into the guide's
    # job.toml, must make a valid job config.
    for extra in tomls[3:]:
        job_with = tomllib.loads(tomls[1])
        job_with["training"].update(tomllib.loads(extra)["training"])
        parse_job_config(job_with)
    for line in examples[0].splitlines():
        assert isinstance(json.loads(line)["text"], str)
    snippet = tomllib.loads(tomls[2])["training"]["model"]
    if _has("tendril_models"):
        from tendril_models.spec import ModelSpec

        assert ModelSpec.from_dict(snippet).source.startswith("https://")

    ports = {"50050": free_address(), "50070": free_address(), "50060": free_address()}
    _corpus(tmp_path / "my-corpus.jsonl")
    _tokenizer(tmp_path / "my-tokenizer", tmp_path / "my-corpus.jsonl")
    job = tomllib.loads(guides.localise(tomls[1], ports))
    (tmp_path / "job.toml").write_text(guides.localise(tomls[1], ports))
    offsets = pick_offsets(2)
    workers = {f"worker-{c}": offset for c, offset in zip("ab", offsets, strict=True)}
    cluster = LocalCluster(tmp_path)
    skipped: list[str] = []
    try:
        for command in commands:
            local = guides.localise(command, ports)
            if command.startswith("tendril worker run"):
                for name, offset in workers.items():
                    config = tmp_path / f"{name}.toml"
                    config.write_text(guides.worker_toml(tomls[0], name, offset, tmp_path, ports))
                    proc = cluster.spawn(name, guides.argv(local.replace("worker.toml", config.name)), tier=2)
                    await cluster.wait_serving(proc, worker_ports(offset)[:5], START_SECONDS)
            elif command.startswith(SERVERS):
                tier, address = guides.server(local)
                proc = cluster.spawn(command.split()[1], guides.argv(local), tier=tier)
                await cluster.wait_serving(proc, [address], START_SECONDS)
            elif command.startswith("tendril scheduler run"):
                if not _has("tendril_models"):
                    skipped.append("training: tendril_models (the executor's model catalogue) is not in this tree")
                    break
                done = await guides.run(guides.argv(local), tmp_path, 600)
                assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            elif command.startswith("tendril model"):
                if not _has_model_command():
                    skipped.append("`tendril model generate`: the `model` command group is not in this tree")
                    continue
                done = await guides.run(guides.argv(local), tmp_path, 300)
                assert done.returncode == 0, done.stderr[-3000:]
                assert done.stdout.strip()
            elif command.startswith("tendril"):
                done = await guides.run(guides.argv(local), tmp_path, 300)
                assert done.returncode == 0, done.stderr[-3000:]
            else:
                done = await guides.run(local, tmp_path, 60)
                assert done.returncode == 0, done.stderr
    finally:
        killed = cluster.stop()
    assert killed == [], "every process should stop on SIGTERM"

    data = load_manifest(tmp_path / "my-data")
    assert data.tokenizer == "bpe" and data.vocab_size == 4096 and data.eval_slices and data.seq_len == 128
    own = load_manifest(tmp_path / "my-data-own-tokenizer")
    assert own.tokenizer == "hf" and own.vocab_size == 500
    out = tmp_path / job["scheduler"]["out_dir"]
    if (out / "metrics.jsonl").exists():  # the run was trained
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        rounds = job["training"]["rounds"]
        assert len([line for line in lines if "loss_mean" in line]) == rounds
        if _has("tendril_models.evaluate"):  # held-out evaluation is in this tree
            held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
            assert held_out and all(math.isfinite(v) for v in held_out)
    if skipped:
        pytest.skip("; ".join(skipped))
