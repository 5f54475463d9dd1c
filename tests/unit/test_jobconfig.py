"""job.toml: ranges named in the errors, deploy/job.toml is the defaults, and 0 stays 0 up to the dispatch config."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tendril.core.errors import ConfigError
from tendril.scheduler.dispatch import aggregate_config, train_config
from tendril.scheduler.jobconfig import FinetuneSection, JobConfig, load_job_config, parse_job_config
from tendril.scheduler.run import Dataset
from tendril.scheduler.slices import SliceRef

ROOT = Path(__file__).resolve().parents[2]


def _keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for name, value in table.items():
        key = f"{prefix}{name}"
        out |= _keys(value, f"{key}.") if isinstance(value, dict) and name != "config" else {key}
    return out


def test_deploy_job_toml_shows_every_key_at_its_default() -> None:
    path = ROOT / "deploy" / "job.toml"
    assert load_job_config(path) == JobConfig()
    # NOTE: [training.finetune] is absent by default (None); the file shows it commented out.
    assert _keys(tomllib.loads(path.read_text())) == _keys(JobConfig().model_dump(exclude_none=True))
    text = path.read_text().split("# [training.finetune]", 1)[1].split("\n\n", 1)[0]
    block = "\n".join(line.removeprefix("# ") for line in text.splitlines()[1:] if not line.startswith("#  "))
    assert tomllib.loads(block) == FinetuneSection().model_dump()


@pytest.mark.parametrize(
    ("data", "key", "says"),
    [
        ({"training": {"outer_momentum": 1.0}}, "training.outer_momentum", "must be >= 0 and < 1 (got 1.0)"),
        ({"training": {"outer_momentum": -0.5}}, "training.outer_momentum", "must be >= 0 and < 1"),
        ({"allocation": {"bid": 0}}, "allocation.bid", "must be > 0 (got 0)"),
        ({"training": {"codec": "fp8"}}, "training.codec", "'fp32', 'bf16', 'int8', 'int4' or 'sparse'"),
        ({"training": {"mixed_precision": "fp8"}}, "training.mixed_precision", "'auto', 'no', 'fp16' or 'bf16'"),
        ({"training": {"rounds": 2.5}}, "training.rounds", "valid integer"),
        ({"training": {"keep_updates": 1}}, "training.keep_updates", "valid boolean"),
        ({"training": {"outer_lr": float("inf")}}, "training.outer_lr", "finite number"),
        ({"training": {"inner": 3}}, "training.inner", "must be a table"),
        ({"nonsense": {}}, "nonsense", "the sections are: scheduler, allocation, data, training"),
        ({"training": {"quorum": 3}}, "training.quorum", "between 1 and allocation.workers (2)"),
    ],
)
def test_errors_name_the_key_and_what_it_accepts(data: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_job_config(data)
    assert err.value.key == key and key in err.value.message and says in err.value.message
    assert "\n" not in err.value.message


def test_errors_say_whether_the_file_or_a_flag_set_the_value(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text("[training]\nrounds = 0\n")
    with pytest.raises(ConfigError, match=rf"training\.rounds \(from {re.escape(str(path))}\) must be > 0"):
        load_job_config(path)
    path.write_text("[training]\nrounds = 3\n")
    with pytest.raises(ConfigError, match=r"training\.rounds \(from --set\) must be > 0"):
        load_job_config(path, overrides={"training.rounds": "0"})


def test_zero_is_zero_up_to_the_dispatch_config() -> None:
    """0 is a value of its own: momentum-free outer SGD, no weight decay, no warm-up, seed 0."""
    config = parse_job_config(
        {
            "allocation": {"max_lost": 0, "worker": {"gpu": 0, "storage_gib": 0}},
            "training": {"outer_momentum": 0, "seed": 0, "inner": {"weight_decay": 0, "warmup_steps": 0}},
        }
    )
    assert config.allocation.max_lost == 0 and config.allocation.worker.storage_gib == 0
    aggregate = aggregate_config(config, "run")
    assert aggregate["outer_momentum"] == 0.0 and "outer_momentum" in aggregate
    dataset = Dataset("ds", "127.0.0.1:9", (SliceRef("s.safetensors", 10, "0" * 64, 4),), 16, 257)
    train = train_config(config, "run", "127.0.0.1:1", dataset)
    assert train["seed"] == 0
    assert train["inner"] == {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "batch_size": 8}


def test_the_model_section_takes_a_task_and_a_config_or_a_source() -> None:
    model = parse_job_config({}).training.model
    assert model.spec().to_dict() == {
        "task": "causal-lm",
        "config": {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64},
        "source": "",
        "sha256": "",
        "trust_remote_code": False,
    }
    llama = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64}
    assert parse_job_config({"training": {"model": {"config": llama}}}).training.model.config == llama
    source = parse_job_config(
        {"training": {"model": {"task": "masked-lm", "source": "https://m.example/bert.tar.gz", "sha256": "a" * 64}}}
    ).training.model.spec()
    assert (source.task, source.source, source.config) == ("masked-lm", "https://m.example/bert.tar.gz", {})
    bad: list[tuple[dict[str, Any], str]] = [
        ({"task": "translation"}, "'causal-lm', 'masked-lm'"),
        ({"source": "ftp://h/m.tar"}, "file:///absolute/path"),
        ({"source": "file:///m", "config": llama}, "either config"),
        ({"config": {"model_type": "llama"}, "sha256": "ab"}, "needs a source"),
    ]
    for model, says in bad:
        with pytest.raises(ConfigError) as err:
            parse_job_config({"training": {"model": model}})
        assert (err.value.key or "").startswith("training.model") and says in err.value.message, err.value.message


def test_the_old_gpt2_form_is_refused_with_the_new_one() -> None:
    with pytest.raises(ConfigError) as err:
        parse_job_config({"training": {"model": {"n_layer": 4, "n_head": 2}}})
    message = err.value.message
    assert err.value.key == "training.model" and "n_head, n_layer" in message
    assert "[training.model.config]" in message and 'model_type = "gpt2"' in message and "\n" not in message


def test_train_jobs_get_the_model_spec_and_the_data_summary() -> None:
    config = parse_job_config({"training": {"model": {"config": {"n_layer": 1}}}})
    v1 = Dataset("ds", "127.0.0.1:9", (SliceRef("s.safetensors", 10, "0" * 64, 4),), 16, 257)
    train = train_config(config, "run", "127.0.0.1:1", v1)
    assert train["model"]["config"] == {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 64}
    assert train["data"]["task"] == "causal-lm" and train["data"]["vocab_size"] == 257
    assert train["data"]["tensors"] == {"input_ids": {"dtype": "int32", "shape": [16]}}
    summary = {"task": "causal-lm", "tensors": {"input_ids": {"dtype": "int32", "shape": [16]}}, "pad_id": 1}
    v2 = dataclasses.replace(v1, data=summary)
    assert train_config(config, "run", "127.0.0.1:1", v2)["data"] == summary
