"""LoRA fine-tuning: the finetune spec, θ = the adapter's tensors only (snapshot, load, export),
a chat data set's labels reaching the loss, and [training.finetune] in job.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tendril.core.errors import ConfigError
from tendril.scheduler.dispatch import train_config
from tendril.scheduler.evaluation import eval_config
from tendril.scheduler.jobconfig import parse_job_config
from tendril.scheduler.run import Dataset
from tendril_diloco.config import parse_config
from tendril_diloco.errors import ExecutorError
from tendril_diloco.params import apply_update, compute_delta, load_into, save_params, snapshot
from tendril_models import DataSpec, ModelError, ModelReason, ModelSpec, get_task
from tendril_models.batches import IGNORE_INDEX, model_inputs
from tendril_models.build import build_model
from tendril_models.export import export, load_theta
from tendril_models.finetune import FinetuneSpec, is_adapter_model, trainable_parameters

LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
}
DATA = DataSpec.from_manifest({"vocab_size": 64, "seq_len": 16})


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    build_model(ModelSpec.from_dict({"config": LLAMA}), DATA, seed=3).save_pretrained(folder)
    return folder


def _lora(base: Path, **spec: Any) -> Any:
    source = ModelSpec.from_dict({"source": base.as_uri()})
    return build_model(source, DATA, seed=5, checkpoint_dir=base, finetune=FinetuneSpec.from_dict(spec))


def test_spec_defaults_and_errors() -> None:
    spec = FinetuneSpec.from_dict({"r": 4.0, "target_modules": "all-linear", "merge": True})
    assert spec.r == 4 and spec.target_modules == "all-linear" and spec.merge
    assert FinetuneSpec.from_dict(spec.to_dict()) == spec
    for bad, word in [
        ({"rank": 4}, "unknown keys"),
        ({"r": 0}, "r (the adapter's rank)"),
        ({"dropout": 1.0}, "dropout"),
        ({"target_modules": "q_proj"}, '["q_proj"]'),
        ({"method": "ia3"}, "method"),
    ]:
        with pytest.raises(ModelError) as refused:
            FinetuneSpec.from_dict(bad)
        assert refused.value.reason == ModelReason.BAD_FINETUNE_CONFIG and word in refused.value.message


def test_theta_is_the_adapter_only(base: Path) -> None:
    model = _lora(base)
    assert is_adapter_model(model)
    theta = snapshot(model)
    # peft's default for llama: q_proj and v_proj, A and B of each
    assert len(theta) == 4 and all(".lora_A." in k or ".lora_B." in k for k in theta)
    assert {k.split(".")[-4] for k in theta} == {"q_proj", "v_proj"}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and not any("lora_" in n for n in frozen), "the base is frozen, the adapter trains"
    adapter = sum(v.numel() for v in theta.values())
    assert adapter < sum(p.numel() for p in model.parameters()) // 10
    # Δ, the outer update and loading θ back all work on the adapter's tensors.
    moved = {k: v + 0.5 for k, v in theta.items()}
    load_into(model, moved)
    assert all(torch.equal(v, moved[k]) for k, v in snapshot(model).items())
    delta = compute_delta(theta, moved)
    assert all(torch.allclose(v, torch.full_like(v, -0.5)) for v in delta.values())
    assert apply_update(theta, {k: -v for k, v in delta.items()}).keys() == theta.keys()
    # A full model's θ is every parameter, as before.
    full = build_model(ModelSpec.from_dict({"config": LLAMA}), DATA, seed=3)
    assert snapshot(full).keys() == dict(full.named_parameters()).keys()


def test_all_linear_and_named_targets(base: Path) -> None:
    every = trainable_parameters(_lora(base, target_modules="all-linear"))
    assert {n.split(".")[-4] for n in every} >= {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"}
    only = trainable_parameters(_lora(base, target_modules=["o_proj"], r=2))
    assert {n.split(".")[-4] for n in only} == {"o_proj"}
    with pytest.raises(ModelError) as refused:
        _lora(base, target_modules=["no_such_module"])
    assert refused.value.reason == ModelReason.BAD_FINETUNE_CONFIG


def test_adapter_exports_and_loads_with_peft(base: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = _lora(base, r=4)
    theta = {k: v + 0.25 for k, v in snapshot(model).items()}
    save_params(theta, tmp_path / "theta.safetensors")
    fresh = _lora(base, r=4)
    load_theta(fresh, tmp_path / "theta.safetensors")  # what eval and export do with the PS's θ
    out = export(fresh, tmp_path / "adapter", assets_dir=None)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    mine = {k.replace(".default", ""): v for k, v in theta.items()}
    theirs = {k.replace(".default", ""): p.detach() for k, p in loaded.named_parameters() if "lora_" in k}
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_slice_labels_feed_a_causal_lm() -> None:
    ids = torch.arange(8).reshape(1, 8)
    labels = torch.tensor([[IGNORE_INDEX] * 4 + [4, 5, 6, 7]])
    mask = torch.tensor([[1] * 7 + [0]])
    inputs = model_inputs({"input_ids": ids, "labels": labels, "attention_mask": mask}, get_task("causal-lm"))
    assert inputs["labels"].tolist() == [[IGNORE_INDEX] * 4 + [4, 5, 6, IGNORE_INDEX]]
    plain = model_inputs({"input_ids": ids}, get_task("causal-lm"))
    assert plain["labels"].tolist() == ids.tolist()


JOB = """
[training]
run_id = "ft"
[training.model]
source = "file:///models/base"
[training.finetune]
r = 4
alpha = 8.0
target_modules = ["q_proj", "v_proj"]
merge = true
"""


def test_job_toml_finetune_block_reaches_the_jobs() -> None:
    import tomllib

    config = parse_job_config(tomllib.loads(JOB))
    assert config.training.finetune is not None and config.training.finetune.r == 4
    dataset = Dataset(dataset_id="d", data_node_address="127.0.0.1:1", slices=(), vocab_size=64, seq_len=16)
    train = train_config(config, "ft", "127.0.0.1:2", dataset)
    assert train["finetune"]["target_modules"] == ["q_proj", "v_proj"] and train["finetune"]["merge"] is True
    assert eval_config(config, train, dataset)["finetune"] == train["finetune"]
    assert parse_config(train).finetune == FinetuneSpec(r=4, alpha=8.0, target_modules=("q_proj", "v_proj"), merge=True)
    plain = parse_job_config(tomllib.loads(JOB.split("[training.finetune]")[0]))
    assert "finetune" not in train_config(plain, "ft", "127.0.0.1:2", dataset)
    # LoRA needs a base checkpoint, in job.toml and in the job config alike.
    with pytest.raises(ConfigError) as refused:
        parse_job_config(tomllib.loads("[training.finetune]\nr = 4\n"))
    assert "training.model.source" in str(refused.value)
    with pytest.raises(ExecutorError):
        parse_config({**train, "model": {"config": LLAMA}})
    with pytest.raises(ConfigError):
        parse_job_config(tomllib.loads(JOB.replace("r = 4", "rank = 4")))


def test_other_labels_do_not_feed_a_causal_lm() -> None:
    ids = torch.arange(8).reshape(2, 4)
    inputs = model_inputs({"input_ids": ids, "labels": torch.tensor([1, 0])}, get_task("causal-lm"))
    assert inputs["labels"].tolist() == ids.tolist()  # a class label per example is not a token label
