"""Tiny language models made in a test: a byte-level BPE tokenizer trained on a few sentences and a
2-layer GPT-2 (decoder-only) or T5 (encoder-decoder) with random weights, saved with
save_pretrained (config.json, model.safetensors, tokenizer files) into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "a worker runs inference jobs for the network",
    "tendrils grow towards the light and the water",
    "one two three four five six seven eight nine ten",
]
# A minimal chat template: "<role>: content" lines, then "assistant:" when a reply is wanted.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def tiny_tokenizer(*, chat_template: bool = False) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXT, trainer)
    wrapper = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>")
    if chat_template:
        wrapper.chat_template = CHAT_TEMPLATE
    return wrapper


def make_tiny_lm(folder: Path, *, kind: str = "gpt2", chat_template: bool = False, seed: int = 0, **sizes: int) -> Path:
    """Save a tiny ``kind`` ("gpt2" or "t5") model and its tokenizer in ``folder``; returns ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, GPT2Config, T5Config

    tokenizer = tiny_tokenizer(chat_template=chat_template)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    torch.manual_seed(seed)
    if kind == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=sizes.get("n_positions", 128),
            n_embd=sizes.get("n_embd", 32),
            n_layer=sizes.get("n_layer", 2),
            n_head=sizes.get("n_head", 2),
            bos_token_id=eos,
            eos_token_id=eos,
        )
        model = AutoModelForCausalLM.from_config(config)
    elif kind == "t5":
        config = T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            pad_token_id=pad,
            eos_token_id=eos,
            decoder_start_token_id=pad,
        )
        model = AutoModelForSeq2SeqLM.from_config(config)
    else:
        raise ValueError(f"kind must be gpt2 or t5, not {kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
