"""End to end with the other tasks: two supervised workers train, through every real service
(gateway, a data node per data set, scheduler, parameter server, the held-out eval job), two
DiLoCo rounds each of

* a tiny BERT for sequence classification on a Parquet data set written here (text + label
  columns), tokenized with a tokenizer trained here with the ``tokenizers`` package;
* a tiny ViT for image classification on PNGs drawn here with Pillow (dark vs bright), plainly
  resized;
* a tiny T5 (seq2seq-lm) on a JSONL data set of source/target pairs;

each model built from its config. metrics.jsonl has the held-out figures of both rounds, and
the exported ``<out>/model`` loads with the task's ``AutoModelFor*`` class (and ``tendril model
eval`` scores the classifier on the held-out split)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, processes_under, worker_ports
from tendril.scheduler.metrics import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(400)]

START_SECONDS = 120.0
RUN_SECONDS = 150.0
WORDS = {
    0: ["bad", "awful", "poor", "sad", "dull", "broken", "ugly", "slow", "wrong", "weak"],
    1: ["good", "great", "fine", "happy", "bright", "fast", "right", "strong", "neat", "kind"],
}
BERT = 'model_type = "bert"\nnum_hidden_layers = 1\nnum_attention_heads = 2\nhidden_size = 32\nintermediate_size = 64\n'
VIT = (
    'model_type = "vit"\nimage_size = 16\npatch_size = 8\nnum_channels = 3\nnum_hidden_layers = 1\n'
    "num_attention_heads = 2\nhidden_size = 32\nintermediate_size = 64\n"
)
T5 = 'model_type = "t5"\nnum_layers = 1\nnum_decoder_layers = 1\nnum_heads = 2\nd_model = 32\nd_kv = 16\nd_ff = 64\n'


def _job_toml(out: Path, run_id: str, *, gateway: str, data_node: str, task: str, config: str) -> str:
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

[allocation.parameter_server]
cpu = 0.5
memory_gib = 0.5
storage_gib = 1.0

[allocation.eval]
cpu = 0.5
memory_gib = 0.5
storage_gib = 1.0

[data]
node = "{data_node}"

[training]
run_id = "{run_id}"
rounds = 2
inner_steps = 3
round_timeout_seconds = 20.0
torch_threads = 1

[training.inner]
lr = 0.003
warmup_steps = 0
batch_size = 8

[training.model]
task = "{task}"

[training.model.config]
{config}
[evaluation]
batch_size = 16
timeout_seconds = 120.0
"""


def _texts(count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.randrange(2)
        rows.append((" ".join(rng.choice(WORDS[label]) for _ in range(rng.randint(4, 10))), label))
    return rows


def _parquet(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _texts(256, seed=1)
    table = pa.table({"review": [t for t, _ in rows], "stars": ["pos" if y else "neg" for _, y in rows]})
    pq.write_table(table, path)
    return [t for t, _ in rows]


def _tokenizer(folder: Path, texts: list[str]) -> None:
    """A WordPiece tokenizer of BERT's kind, trained here and saved as a transformers folder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(str(folder))


def _images(folder: Path) -> None:
    """Dark and bright 12×12 PNGs with a little noise, listed in a JSONL file by relative path."""
    from PIL import Image

    rng = random.Random(2)
    (folder / "png").mkdir(parents=True)
    rows = []
    for i in range(160):
        label = i % 2
        base = 200 if label else 40
        pixels = bytes(max(0, min(255, base + rng.randint(-30, 30))) for _ in range(12 * 12 * 3))
        name = f"png/{i:03d}.png"
        Image.frombytes("RGB", (12, 12), pixels).save(folder / name)
        rows.append(json.dumps({"image": name, "label": "bright" if label else "dark"}))
    (folder / "images.jsonl").write_text("\n".join(rows) + "\n")


def _pairs(path: Path) -> None:
    """source -> target: the words of the source reversed."""
    rows = []
    for text, _ in _texts(192, seed=3):
        rows.append(json.dumps({"source": text, "target": " ".join(reversed(text.split()))}))
    path.write_text("\n".join(rows) + "\n")


def _prepare(src: Path, out: Path, *args: str) -> None:
    command = [sys.executable, "-m", "tendril.cli", "data", "prepare", str(src), str(out), "--no-progress", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "manifest.json").read_text())["eval_slices"], f"{out}: no held-out split"


async def _run(cluster: LocalCluster, job: Path) -> int:
    scheduler = cluster.start_scheduler(job)
    deadline = time.monotonic() + RUN_SECONDS
    while scheduler.popen.poll() is None:
        assert time.monotonic() < deadline, f"the scheduler did not finish; its log ends:\n{scheduler.tail(30)}"
        await asyncio.sleep(0.5)
    cluster.procs.remove(scheduler)
    return int(scheduler.popen.returncode)


async def test_hf_tasks(tmp_path: Path) -> None:
    from transformers import (
        AutoModelForImageClassification,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    # The data sets: Parquet + own tokenizer (classes), PNGs (classes), JSONL pairs (seq2seq).
    src = tmp_path / "src"
    src.mkdir()
    texts = _parquet(src / "reviews.parquet")
    _tokenizer(tmp_path / "tok", texts)
    _images(src / "img")
    _pairs(src / "pairs.jsonl")
    data = {"cls": tmp_path / "d-cls", "vit": tmp_path / "d-vit", "t5": tmp_path / "d-t5"}
    common = ("--sequences-per-slice", "32", "--eval-fraction", "0.1")
    _prepare(
        src / "reviews.parquet",
        data["cls"],
        *("--task", "sequence-classification", "--tokenizer", str(tmp_path / "tok")),
        *("--text-field", "review", "--label-field", "stars", "--seq-len", "16", *common),
    )
    _prepare(src / "img" / "images.jsonl", data["vit"], "--task", "image-classification", "--image-size", "16", *common)
    _prepare(
        src / "pairs.jsonl",
        data["t5"],
        *("--task", "seq2seq-lm", "--tokenizer", str(tmp_path / "tok"), "--text-field", "source"),
        *("--target-field", "target", "--seq-len", "16", *common),
    )

    cluster = LocalCluster(tmp_path / "r")  # NOTE: short: bridge socket paths must fit 107 bytes
    try:
        gateway = free_address()
        await cluster.wait_serving(cluster.start_gateway(gateway), [gateway], START_SECONDS)
        nodes = {}
        for name, folder in data.items():
            nodes[name] = free_address()
            args = ["serve", str(folder), "--listen", nodes[name], "--gateway", gateway]
            proc = cluster.spawn(f"data-{name}", [sys.executable, "-m", "tendril.data_node", *args], tier=1)
            await cluster.wait_serving(proc, [nodes[name]], START_SECONDS)
        specs = [
            WorkerSpec(f"worker-{i}", offset, "flexible" if i == 0 else "whole")
            for i, offset in enumerate(pick_offsets(2))
        ]
        for spec in specs:
            proc = cluster.start_worker(spec, gateway)
            await cluster.wait_serving(proc, worker_ports(spec.port_offset)[:5], START_SECONDS)

        runs = {
            "cls": ("sequence-classification", BERT),
            "vit": ("image-classification", VIT),
            "t5": ("seq2seq-lm", T5),
        }
        outs = {}
        for name, (task, config) in runs.items():
            outs[name] = out = tmp_path / f"out-{name}"
            job = tmp_path / f"{name}.toml"
            job.write_text(
                _job_toml(out, f"t-{name}", gateway=gateway, data_node=nodes[name], task=task, config=config)
            )
            code = await _run(cluster, job)
            log = (cluster.logs / "scheduler.log").read_text()[-3000:]
            assert code == 0, f"{name}: {log}"
            lines = read_metrics(out / "metrics.jsonl")
            assert [line["round"] for line in lines] == [0, 1], f"{name}: {lines}"
            # NOTE: θ of a round is evaluated when the eval job fetches it before the next round
            # replaced it; these rounds take a fraction of a second, so only the last round (which
            # is always evaluated) is sure to have its figures.
            assert "eval_loss" in lines[-1], f"{name}: {lines[-1]}"
            for line in lines:
                assert math.isfinite(line["loss_mean"]) and line["contributors"] == 2, f"{name}: {line}"
                if "eval_loss" not in line:
                    continue
                assert math.isfinite(line["eval_loss"]) and line["eval_examples"] > 0, f"{name}: {line}"
                if task != "seq2seq-lm":
                    assert 0.0 <= line["eval_accuracy"] <= 1.0, f"{name}: {line}"
                else:
                    assert line["eval_perplexity"] == pytest.approx(math.exp(line["eval_loss"]), rel=1e-3)
    finally:
        killed = cluster.stop()
    assert killed == [], "every process should stop on SIGTERM"
    assert processes_under(tmp_path) == []

    # The exports load with the task's AutoModelFor* class (with the data set's tokenizer).
    classifier = AutoModelForSequenceClassification.from_pretrained(outs["cls"] / "model")
    assert classifier.config.id2label == {0: "neg", 1: "pos"}, "the data set's label names"
    tokenizer = AutoTokenizer.from_pretrained(outs["cls"] / "model")
    logits = classifier(**tokenizer(["good great fine"], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, 2)
    vit = AutoModelForImageClassification.from_pretrained(outs["vit"] / "model")
    assert vit.config.id2label == {0: "bright", 1: "dark"} and vit.config.image_size == 16
    t5 = AutoModelForSeq2SeqLM.from_pretrained(outs["t5"] / "model")
    assert t5.config.model_type == "t5"
    assert AutoTokenizer.from_pretrained(outs["t5"] / "model")("good bad")["input_ids"]

    # `tendril model eval` scores the classifier on the held-out split: the run's last evaluation.
    command = [sys.executable, "-m", "tendril.cli", "model", "eval", str(outs["cls"] / "model"), str(data["cls"])]
    done = await asyncio.to_thread(subprocess.run, [*command, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = json.loads(done.stdout)
    last = read_metrics(outs["cls"] / "metrics.jsonl")[-1]
    assert scored["eval_loss"] == pytest.approx(last["eval_loss"], rel=1e-4)
    assert scored["eval_accuracy"] == pytest.approx(last["eval_accuracy"])
    assert scored["eval_examples"] == last["eval_examples"]
