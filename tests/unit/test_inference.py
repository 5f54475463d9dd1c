"""The inference executor without the network: config, prompts JSONL, batching, result files,
device and dtype, generation with tiny models made here, and the job loop over a stand-in bridge."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tendril_inference.config import Sampling, parse_config
from tendril_inference.errors import InferenceError, InferenceReason
from tendril_inference.generate import Generator, batch_seed, pick_device, pick_dtype
from tendril_inference.prompts import Prompt, batches, parse_prompts, read_prompts
from tendril_inference.results import GENERATIONS, PARTIAL, SUMMARY, ResultWriter
from tendril_inference.runner import run_job
from tendril_models import ModelError, ModelReason
from tendril_models.entry import run as run_entry
from tendril_models.logs import configure
from tendril_models.tokenizer import load_tokenizer
from tendril_sdk import BridgeError, BridgeReason, Directive, DirectiveKind, FetchedResource, read_error
from tests.tiny_lm import make_tiny_lm

BASE = Sampling()


def _config(**over: Any) -> dict[str, Any]:
    return {"model": {"source": "file:///m"}, "prompts": "file:///p.jsonl", **over}


def _lines(*objects: Any) -> list[str]:
    return [json.dumps(o) for o in objects]


# -- config -------------------------------------------------------------------------------


def test_config_defaults_and_struct_floats() -> None:
    config = parse_config(_config())
    assert config.sampling == Sampling(max_new_tokens=64, temperature=0.0, top_p=1.0, top_k=0)
    assert config.sampling.generate_kwargs() == {"max_new_tokens": 64, "do_sample": False}
    assert (config.batch_size, config.seed, config.chat, config.dtype) == (8, 0, False, "auto")
    # NOTE: a config that travelled as a protobuf Struct has floats only
    config = parse_config(_config(max_new_tokens=8.0, temperature=0.7, top_k=5.0, seed=3.0, batch_size=2.0))
    assert config.sampling.generate_kwargs() == {
        "max_new_tokens": 8,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 5,
    }
    assert (config.seed, config.batch_size) == (3, 2)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"max_tokens": 5}, "unknown keys ['max_tokens']"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_p": 0}, "top_p must be > 0"),
        ({"top_k": -2}, "top_k must be >= 0"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
        ({"max_new_tokens": 0}, "max_new_tokens must be between 1"),
        ({"batch_size": 0}, "batch_size must be between 1"),
        ({"seed": "x"}, "seed must be a number"),
        ({"chat": "yes"}, "chat must be true or false"),
        ({"system": "be brief"}, "it needs chat = true"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"prompts": ""}, "prompts must be a non-empty string"),
        ({"model": {"task": "sequence-classification", "source": "file:///m"}}, "model.task must be one of"),
        ({"model": {"source": "ftp://x/m"}}, "must be a file:///absolute/path"),
        ({"model": {"config": {"model_type": "gpt2"}}}, "give tokenizer"),
    ],
)
def test_config_refuses_what_it_cannot_run(over: dict[str, Any], words: str) -> None:
    with pytest.raises(InferenceError) as caught:
        parse_config(_config(**over))
    assert caught.value.reason == InferenceReason.BAD_JOB_CONFIG
    assert words in caught.value.message and caught.value.message.startswith("job config: ")


def test_config_needs_model_and_prompts() -> None:
    for missing in ("model", "prompts"):
        raw = _config()
        del raw[missing]
        with pytest.raises(InferenceError, match=f"{missing} is required"):
            parse_config(raw)


# -- prompts ------------------------------------------------------------------------------


def test_prompts_ids_overrides_and_meta() -> None:
    lines = _lines(
        {"prompt": "a"},
        {"prompt": "b", "id": "x", "max_new_tokens": 3, "temperature": 0.5, "meta": {"k": [1]}},
    )
    prompts = parse_prompts([lines[0], "", "  ", lines[1]], BASE, chat=False)
    assert [(p.line, p.id, p.prompt) for p in prompts] == [(1, 1, "a"), (4, "x", "b")]
    assert prompts[0].sampling == BASE
    assert prompts[1].sampling == Sampling(max_new_tokens=3, temperature=0.5) and prompts[1].meta == {"k": [1]}


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (['{"prompt": "a"}', "{not json"], "prompts line 2: is not JSON"),
        (['["a"]'], "line 1: must be a JSON object"),
        (['{"text": "a"}'], "line 1: unknown keys ['text']"),
        (['{"id": 3}'], "line 1: prompt must be a non-empty string"),
        (['{"prompt": ""}'], "line 1: prompt must be a non-empty string"),
        (['{"prompt": "a", "id": [1]}'], "line 1: id must be a string or an integer"),
        (['{"prompt": "a", "id": "q"}', '{"prompt": "b", "id": "q"}'], "line 2: id 'q' is already the id of line 1"),
        (['{"prompt": "a", "top_p": 2}'], "line 1: top_p must be > 0 and <= 1"),
        (['{"prompt": "a", "system": "s"}'], "line 1: system is the system message of chat formatting"),
        (["", " "], "prompts has no prompts"),
    ],
)
def test_prompts_refused_name_the_line(lines: list[str], words: str) -> None:
    with pytest.raises(InferenceError) as caught:
        parse_prompts(lines, BASE, chat=False)
    assert caught.value.reason == InferenceReason.BAD_PROMPTS and words in caught.value.message


def test_prompts_file_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "\xff"}\n')
    with pytest.raises(InferenceError, match=r"p\.jsonl is not UTF-8") as caught:
        read_prompts(path, BASE, chat=False)
    assert caught.value.reason == InferenceReason.BAD_PROMPTS


def test_batches_keep_file_order_and_split_on_other_knobs() -> None:
    hot = Sampling(temperature=1.0)
    prompts = [Prompt(i, i, "p", hot if i in (3, 4) else BASE) for i in range(1, 8)]
    got = [[p.line for p in batch] for batch in batches(prompts, 2)]
    assert got == [[1, 2], [3, 4], [5, 6], [7]]
    assert [[p.line for p in b] for b in batches(prompts, 10)] == [[1, 2], [3, 4], [5, 6, 7]]


# -- result files -------------------------------------------------------------------------


def test_results_appear_whole_on_commit_only(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / SUMMARY).write_text("{}")  # an earlier try's
    with ResultWriter(tmp_path) as writer:
        writer.write({"id": 1, "completion": "é"})
        assert not (tmp_path / "results" / GENERATIONS).exists()
        assert not (tmp_path / "results" / SUMMARY).exists(), "a stale summary must not pass for this run's"
        writer.write({"id": 2})
        writer.commit({"prompts": 2})
    files = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert files == [GENERATIONS, SUMMARY], "no temporary file is left"
    lines = (tmp_path / "results" / GENERATIONS).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"id": 1, "completion": "é"}, {"id": 2}]
    assert json.loads((tmp_path / "results" / SUMMARY).read_text()) == {"prompts": 2}


def test_results_of_a_stopped_job_are_marked_partial(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ResultWriter(tmp_path) as writer:
        writer.write({"id": 1})
        raise RuntimeError("stopped")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [PARTIAL]
    with ResultWriter(tmp_path) as writer:
        pass  # nothing written: nothing left
    assert list((tmp_path / "results").iterdir()) == []


# -- device and dtype ---------------------------------------------------------------------


def test_device_follows_the_leases_gpus_and_dtype_the_device() -> None:
    import torch

    assert pick_device({}) == "cpu" and pick_device({"CUDA_VISIBLE_DEVICES": ""}) == "cpu"
    assert pick_dtype("auto", "cpu") == torch.float32 and pick_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(InferenceError) as caught:
        pick_dtype("float16", "cpu")
    assert caught.value.reason == InferenceReason.DTYPE_UNAVAILABLE
    assert batch_seed(1, 0) != batch_seed(0, 1)


# -- generation with tiny models ----------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    import torch

    # NOTE: one thread: on a busy machine torch's threads spin for each other, and a model this
    # small generates tens of times slower with two than with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    try:
        yield {
            "gpt2": make_tiny_lm(root / "gpt2", chat_template=True, n_positions=32),
            "t5": make_tiny_lm(root / "t5", kind="t5"),
        }
    finally:
        torch.set_num_threads(threads)


def _generator(folder: Path, stop: threading.Event | None = None) -> Generator:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    is_t5 = "t5" in folder.name
    auto = AutoModelForSeq2SeqLM if is_t5 else AutoModelForCausalLM
    return Generator(auto.from_pretrained(folder).eval(), load_tokenizer(folder), device="cpu", stop=stop)


def _prompt(text: str, **knobs: Any) -> Prompt:
    return Prompt(1, 1, text, Sampling(**{"max_new_tokens": 6, **knobs}))


def test_left_padding_gives_each_prompt_its_own_greedy_completion(models: dict[str, Path]) -> None:
    gen = _generator(models["gpt2"])
    texts = ["the quick brown fox", "a", "one two three"]
    rows = [gen.encode(_prompt(t), chat=False, system="") for t in texts]
    assert len({len(r) for r in rows}) == 3, "the rows need padding"
    together = gen.run(rows, Sampling(max_new_tokens=6), seed=0)
    alone = [gen.run([row], Sampling(max_new_tokens=6), seed=0) for row in rows]
    assert together is not None and [c.tokens for c in together] == [6, 6, 6]
    assert [c.text for c in together] == [a[0].text for a in alone if a is not None]


def test_sampling_is_deterministic_for_a_seed(models: dict[str, Path]) -> None:
    gen = _generator(models["gpt2"])
    rows = [gen.encode(_prompt(t), chat=False, system="") for t in ("the quick", "a worker")]
    hot = Sampling(max_new_tokens=12, temperature=5.0)
    first, again, other = (gen.run(rows, hot, seed=s) for s in (7, 7, 8))
    assert first == again and first != other


def test_encoder_decoder_models_generate_too(models: dict[str, Path]) -> None:
    gen = _generator(models["t5"])
    rows = [gen.encode(_prompt(t), chat=False, system="") for t in ("the quick brown", "a")]
    done = gen.run(rows, Sampling(max_new_tokens=5), seed=0)
    assert done is not None and all(1 <= c.tokens <= 5 for c in done)


def test_chat_template_prompt_length_and_stop(models: dict[str, Path]) -> None:
    gen = _generator(models["gpt2"])
    plain = gen.encode(_prompt("hi"), chat=False, system="")
    chat = gen.encode(_prompt("hi"), chat=True, system="be brief")
    assert gen.tokenizer.decode(chat) == "system: be brief\nuser: hi\nassistant:" and len(chat) > len(plain)
    with pytest.raises(InferenceError) as caught:
        gen.check_fits(_prompt("x", max_new_tokens=30), plain * 3, "p.jsonl line 4")
    assert caught.value.reason == InferenceReason.PROMPT_TOO_LONG and "p.jsonl line 4" in caught.value.message
    gen.tokenizer.chat_template = None
    with pytest.raises(InferenceError) as caught:
        gen.encode(_prompt("hi"), chat=True, system="")
    assert caught.value.reason == InferenceReason.NO_CHAT_TEMPLATE
    stopped = threading.Event()
    stopped.set()
    assert _generator(models["gpt2"], stopped).run([plain], Sampling(max_new_tokens=6), seed=0) is None


# -- the job over a stand-in bridge -------------------------------------------------------


class FakeBridge:
    """FetchResource copies file:// URIs (NOT_FOUND when missing); ReportProgress answers ``directive``."""

    def __init__(self, work_dir: Path, directive: DirectiveKind | None = DirectiveKind.CONTINUE) -> None:
        self.work_dir = work_dir
        self.directive = directive
        self.fetched: list[str] = []
        self.reports: list[tuple[str, dict[str, Any]]] = []

    async def fetch_resource(self, uri: str, *, dest: str = "", sha256: str = "") -> FetchedResource:
        return self._copy(uri, dest)

    def _copy(self, uri: str, dest: str) -> FetchedResource:
        self.fetched.append(uri)
        source = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
        if not source.is_file():
            raise BridgeError(grpc.StatusCode.NOT_FOUND, f"{uri} does not exist")
        target = self.work_dir / "artifacts" / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        return FetchedResource(target, str(target.relative_to(self.work_dir)), target.stat().st_size, "")

    async def report_progress(self, kind: Any, round: int, **kwargs: Any) -> Directive:
        if self.directive is None:
            raise BridgeError(grpc.StatusCode.FAILED_PRECONDITION, "no scheduler", reason=BridgeReason.NO_SCHEDULER)
        self.reports.append((str(kind), kwargs))
        return Directive(self.directive)


def _job(tmp_path: Path, model: Path, *texts: str, **over: Any) -> tuple[Any, FakeBridge]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": t, "id": f"p{i}"}) for i, t in enumerate(texts)) + "\n")
    raw = {
        "model": {"source": f"file://{model}"},
        "prompts": f"file://{prompts}",
        "max_new_tokens": 4,
        "torch_threads": 1,
        **over,
    }
    work = tmp_path / "work"
    work.mkdir()
    return parse_config(raw), FakeBridge(work)


def test_job_writes_one_line_per_prompt_and_reports_each_batch(tmp_path: Path, models: dict[str, Path]) -> None:
    config, bridge = _job(tmp_path, models["gpt2"], "the quick", "a worker", "one two", batch_size=2)
    totals = asyncio.run(run_job(config, bridge, configure("test")))
    results = bridge.work_dir / "results"
    lines = [json.loads(line) for line in (results / GENERATIONS).read_text().splitlines()]
    assert [line["id"] for line in lines] == ["p0", "p1", "p2"]
    assert all(line["completion_tokens"] == 4 and line["prompt_tokens"] > 0 for line in lines)
    assert set(lines[0]) == {"id", "prompt", "completion", "prompt_tokens", "completion_tokens", "seconds"}
    summary = json.loads((results / SUMMARY).read_text())
    assert (
        summary["complete"]
        and summary["prompts"] == 3
        and summary["completion_tokens"] == 12 == totals.completion_tokens
    )
    assert summary["device"] == "cpu" and summary["model"] == f"file://{models['gpt2']}"
    kinds = [kind for kind, _ in bridge.reports]
    assert kinds == ["batch", "batch", "finished"]
    assert [r["metrics"]["prompts_done"] for _, r in bridge.reports[:2]] == [2, 3]


def test_job_stops_on_done_and_without_a_scheduler_reports_nothing(tmp_path: Path, models: dict[str, Path]) -> None:
    config, bridge = _job(tmp_path, models["gpt2"], "a", "b", "c", batch_size=1)
    bridge.directive = DirectiveKind.DONE
    asyncio.run(run_job(config, bridge, configure("test")))
    summary = json.loads((bridge.work_dir / "results" / SUMMARY).read_text())
    assert summary["complete"] is False and summary["prompts_done"] == 1 and summary["prompts"] == 3

    shutil.rmtree(bridge.work_dir)
    bridge.work_dir.mkdir()
    bridge.directive, bridge.reports = None, []
    asyncio.run(run_job(config, bridge, configure("test")))
    assert json.loads((bridge.work_dir / "results" / SUMMARY).read_text())["prompts_done"] == 3


def test_bad_prompts_fail_before_the_model_is_fetched(tmp_path: Path, models: dict[str, Path]) -> None:
    config, bridge = _job(tmp_path, models["gpt2"], "a")
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "a", "temperature": "hot"}\n')
    with pytest.raises(InferenceError, match="line 1: temperature must be a number"):
        asyncio.run(run_job(config, bridge, configure("test")))
    assert bridge.fetched == [config.prompts]
    (tmp_path / "prompts.jsonl").unlink()
    with pytest.raises(InferenceError) as caught:
        asyncio.run(run_job(config, bridge, configure("test")))
    assert caught.value.reason == InferenceReason.PROMPTS_UNAVAILABLE and "NOT_FOUND" in caught.value.message


def test_a_checkpoint_without_tokenizer_files_is_refused(tmp_path: Path, models: dict[str, Path]) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(models["gpt2"] / name, bare / name)
    config, bridge = _job(tmp_path, bare, "a")
    with pytest.raises(ModelError) as caught:
        asyncio.run(run_job(config, bridge, configure("test")))
    assert caught.value.reason == ModelReason.TOKENIZER_NOT_FOUND and "tokenizer" in caught.value.message


def test_entry_turns_an_inference_error_into_error_txt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENDRIL_BRIDGE_TOKEN", "t")
    monkeypatch.setenv("WORK_DIR", str(tmp_path))

    async def body(args: argparse.Namespace, token: str, log: Any) -> None:
        raise InferenceError(
            "prompts.jsonl line 2: prompt must be a non-empty string", reason=InferenceReason.BAD_PROMPTS
        )

    args = argparse.Namespace(socket=str(tmp_path / "bridge.sock"))
    assert run_entry("inference", args, configure("test"), body, failures=(InferenceError,)) == 1
    assert read_error(tmp_path) == "prompts.jsonl line 2: prompt must be a non-empty string (BAD_PROMPTS)"
    assert run_entry("inference", argparse.Namespace(socket=""), configure("test"), body) == 2


def test_the_worker_runs_it_by_default() -> None:
    from tendril.core.config import default_executors

    shipped = {(e.executor_class, e.name): e.command for e in default_executors()}
    assert shipped[("inference", "generate")] == ["{PYTHON}", "-m", "tendril_inference", "--socket", "{SOCKET_PATH}"]


def test_an_archive_source_brings_its_own_tokenizer(tmp_path: Path, models: dict[str, Path]) -> None:
    from tendril.data_node.models import pack_checkpoint

    archive = tmp_path / "model.tar"
    packed = pack_checkpoint(models["gpt2"], archive)
    assert "tokenizer.json" in packed
    config, bridge = _job(tmp_path, archive, "the quick", "a")
    asyncio.run(run_job(config, bridge, configure("test")))
    assert bridge.fetched == [config.prompts, f"file://{archive}"], "one file: the archive (tokenizer inside)"
    assert len((bridge.work_dir / "results" / GENERATIONS).read_text().splitlines()) == 2


def test_remote_code_is_refused_before_anything_is_fetched_but_the_prompts(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENDRIL_ALLOW_REMOTE_CODE", "0")
    config, bridge = _job(tmp_path, models["gpt2"], "a")
    config = parse_config({**_config(), "model": {"source": f"file://{models['gpt2']}", "trust_remote_code": True}})
    config = dataclasses.replace(config, prompts=f"file://{tmp_path / 'prompts.jsonl'}")
    with pytest.raises(ModelError) as caught:
        asyncio.run(run_job(config, bridge, configure("test")))
    assert caught.value.reason == ModelReason.REMOTE_CODE_REFUSED
    assert bridge.fetched == [config.prompts]
