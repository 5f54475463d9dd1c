"""`tendril data prepare --chat`: conversations rendered with a chat template, the loss on the
assistant's tokens only (labels -100 elsewhere), padding and attention mask, the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tendril.data_node import cli
from tendril.data_node.chat import IGNORE_INDEX, ChatFields, ChatFormatter, conversation
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.sources import Record
from tendril.data_node.tokenizer import ByteTokenizer, load_tokenizer, train_bpe

# A template that writes every turn as <|role|>content<|endoftext|> (the byte tokenizer's id 256).
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
EOT = 256


def _learned(labels: np.ndarray) -> bytes:
    """The byte ids the loss is on (the end-of-text id as b'$')."""
    return bytes(36 if i == EOT else int(i) for i in labels if i != IGNORE_INDEX)


def test_labels_are_the_assistant_turns_only() -> None:
    chat = ChatFormatter(ByteTokenizer(), TEMPLATE)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo!"},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": "ok"},
    ]
    ids, labels = chat.encode(messages, 0)
    text = "<|system|>be brief$<|user|>hi$<|assistant|>yo!$<|user|>and?$<|assistant|>ok$"
    assert bytes(36 if i == EOT else int(i) for i in ids) == text.encode()
    assert _learned(labels) == b"yo!$ok$"  # each answer and its end of turn, never a prompt or a role header
    learned = labels != IGNORE_INDEX
    assert (labels[learned] == ids[learned]).all()


def test_example_is_padded_masked_and_truncated() -> None:
    chat = ChatFormatter(ByteTokenizer(), TEMPLATE)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    example = chat.example(messages, 0, 40)
    assert example is not None
    ids, mask, labels = example
    length = len("<|user|>hi$<|assistant|>yo$")
    assert ids.dtype == np.int32 and mask.dtype == np.int8 and labels.dtype == np.int32
    assert mask.tolist() == [1] * length + [0] * (40 - length)
    assert (ids[length:] == ByteTokenizer.pad_id).all() and (labels[length:] == IGNORE_INDEX).all()
    assert _learned(labels) == b"yo$"
    # Cut before the answer: nothing to learn, the example is left out and counted.
    assert chat.example(messages, 0, 12) is None and chat.dropped == 1


def test_prompt_response_records_are_conversations() -> None:
    record = Record({"system": "s", "prompt": "p", "response": "r"})
    assert conversation(record, 0, ChatFields()) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "p"},
        {"role": "assistant", "content": "r"},
    ]
    with pytest.raises(DataNodeError) as missing:
        conversation(Record({"text": "x"}), 3, ChatFields())
    assert missing.value.reason == DatasetReason.FIELD_MISSING and "record 3" in missing.value.message
    with pytest.raises(DataNodeError) as no_answer:
        conversation(Record({"messages": [{"role": "user", "content": "q"}]}), 0, ChatFields())
    assert no_answer.value.reason == DatasetReason.BAD_CHAT_RECORD and "no assistant" in no_answer.value.message
    with pytest.raises(DataNodeError) as bad:
        conversation(Record({"messages": [{"role": "user"}]}), 0, ChatFields())
    assert bad.value.reason == DatasetReason.BAD_CHAT_RECORD


def test_a_tokenizer_without_a_template_is_refused() -> None:
    with pytest.raises(DataNodeError) as refused:
        ChatFormatter(ByteTokenizer())
    assert refused.value.reason == DatasetReason.NO_CHAT_TEMPLATE
    assert "--chat-template" in refused.value.message


def test_prepare_chat_writes_labels_and_a_tokenizer_with_the_template(tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        if i % 2
        else {"prompt": f"q{i}", "response": f"a{i}"}
        for i in range(20)
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = PrepareOptions(
        seq_len=32, sequences_per_slice=8, progress=False, eval_fraction=0.1, chat=True, chat_template=TEMPLATE
    )
    manifest = prepare_dataset([src], tmp_path / "out", ByteTokenizer(), options)
    assert manifest.task == "causal-lm" and manifest.pad_id == ByteTokenizer.pad_id
    assert set(manifest.tensors) == {"input_ids", "attention_mask", "labels"}
    assert manifest.num_sequences + manifest.eval_sequences == 20
    first = load_file(str(tmp_path / "out" / manifest.slices[0].name))
    assert first["labels"].shape == (8, 32) and first["labels"].dtype == np.int32
    assert _learned(first["labels"][0]) == b"a1$"  # example 0 is held out
    import tarfile

    with tarfile.open(tmp_path / "out" / "tokenizer.tar") as tar:
        config = json.load(tar.extractfile("tokenizer_config.json"))  # type: ignore[arg-type]
        names = tar.getnames()
    assert config.get("chat_template") == TEMPLATE or "chat_template.jinja" in names


def test_cli_chat_needs_a_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    code = cli.main(["prepare", str(src), str(tmp_path / "out"), "--chat", "--no-progress"])
    assert code == 2
    assert "no chat_template" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    flags = ["--chat", "--chat-template", str(template), "--no-progress", "--eval-fraction", "0", "--seq-len", "32"]
    code = cli.main(["prepare", str(src), str(tmp_path / "out"), *flags])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "slice-00000.safetensors").is_file()


def test_a_tokenizer_folder_brings_its_own_template(tmp_path: Path) -> None:
    # A BPE saved with a chat template, loaded back as `--tokenizer DIR`: its template is used.
    trained = train_bpe(["user assistant hello there general kenobi"] * 20, 300)
    fast = trained.as_transformers()
    fast.chat_template = TEMPLATE
    fast.save_pretrained(str(tmp_path / "tok"))
    tokenizer = load_tokenizer(tmp_path / "tok")
    chat = ChatFormatter(tokenizer)
    messages = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "general kenobi"}]
    ids, labels = chat.encode(messages, 0)
    learned = [int(i) for i in labels if i != IGNORE_INDEX]
    assert chat.fast.decode(learned) == "general kenobi<|endoftext|>"
    assert (
        chat.fast.decode([int(i) for i in ids])
        == "<|user|>hello there<|endoftext|><|assistant|>general kenobi<|endoftext|>"
    )


def test_a_bpe_trained_on_the_conversations(tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"say {w}", "response": f"{w} {w}"}) + "\n" for w in ["a", "b"] * 10))
    options = PrepareOptions(
        seq_len=64, progress=False, eval_fraction=0.0, chat=True, chat_template=TEMPLATE, train_bpe_vocab=300
    )
    manifest = prepare_dataset([src], tmp_path / "out", None, options)
    assert manifest.tokenizer == "bpe" and manifest.num_sequences == 20
    assert set(manifest.tensors) == {"input_ids", "attention_mask", "labels"}
