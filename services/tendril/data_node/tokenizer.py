"""Tokenizers for ``tendril data prepare``.

* :class:`ByteTokenizer` (default, nothing to download): one token per UTF-8 byte (ids 0–255)
  plus an end-of-text id 256, so ``vocab_size`` is 257. It tokenizes raw bytes, so any file
  works, whatever its encoding. Its asset is an equivalent byte-level ``tokenizer.json``.
* :class:`HFTokenizer`: a Hugging Face tokenizer: a tokenizer directory loaded with
  ``AutoTokenizer.from_pretrained`` (transformers), or a ``tokenizer.json`` file loaded with
  the ``tokenizers`` package. Its end-of-text id is its eos token (else the first of the
  usual end-of-text tokens it knows; one without any gets ``<|endoftext|>`` added).
* :func:`train_bpe`: a byte-level BPE trained with the ``tokenizers`` package on the corpus
  itself (``--train-tokenizer bpe --vocab-size N``); ids 0, 1, 2 are ``<|endoftext|>``,
  ``<pad>`` and ``<mask>``.

Every tokenizer can ``save(folder)`` itself as a Hugging Face tokenizer directory
(``save_pretrained``), which prepare ships beside the slices as the ``tokenizer.tar`` asset so
that an exported model comes with the tokenizer it was trained with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tendril.core.errors import ErrorKind
from tendril.data_node.errors import DataNodeError, DatasetReason

EOT_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]", "<|end_of_text|>")
EOT, PAD, MASK = "<|endoftext|>", "<pad>", "<mask>"
BPE_SPECIAL = (EOT, PAD, MASK)  # ids 0, 1, 2 of a trained BPE
MIN_BPE_VOCAB = 256 + len(BPE_SPECIAL)  # the byte alphabet plus the special tokens

Text = str | bytes


def _as_text(data: Text) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


class Tokenizer(Protocol):
    """What prepare needs from a tokenizer."""

    name: str  # "bytes", "bpe", "hf" (a directory) or "hf:FILE" (a tokenizer.json file)
    sha256: str  # of the tokenizer file; "" for the built-in byte tokenizer
    vocab_size: int
    eot_id: int
    pad_id: int  # the id padding is written with (masked out by attention_mask)
    mask_id: int  # -1 when the tokenizer has no mask token

    def encode(self, data: Text) -> np.ndarray:
        """Token ids (int32) of one document, without the end-of-text id."""
        ...

    def encode_batch(self, texts: Sequence[Text], *, special: bool = False) -> list[np.ndarray]:
        """Token ids of several texts; ``special``: with the tokenizer's own special tokens
        ([CLS] ... [SEP] for BERT-like ones), as for per-example tasks."""
        ...

    def save(self, folder: Path) -> None:
        """Write the tokenizer as a Hugging Face tokenizer directory (or a tokenizer.json)."""
        ...

    def as_transformers(self) -> Any:
        """The tokenizer as a transformers ``PreTrainedTokenizerFast`` (chat templates, save_pretrained)."""
        ...


def _fast(backend: Any, **special: str | None) -> Any:
    """A ``tokenizers.Tokenizer`` inside a transformers ``PreTrainedTokenizerFast`` with its special tokens."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:
        raise _missing("a chat template", "transformers", exc) from exc
    return PreTrainedTokenizerFast(tokenizer_object=backend, **{k: v for k, v in special.items() if v is not None})


def _missing(what: str, package: str, exc: ImportError) -> DataNodeError:
    return DataNodeError(
        ErrorKind.FAILED_PRECONDITION,
        f"{what} needs the `{package}` package: pip install 'tendril[train]'",
        reason=DatasetReason.TOKENIZERS_MISSING,
    )


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2's, which tokenizers uses)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def _save_backend(backend: Any, folder: Path, *, eot: str, pad: str | None, mask: str | None) -> None:
    """A ``tokenizers.Tokenizer`` as a tokenizer directory AutoTokenizer loads (tokenizer.json
    only when transformers is not installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        backend.save(str(folder / "tokenizer.json"))
        return
    special: dict[str, str] = {"eos_token": eot, "bos_token": eot, "unk_token": eot}
    if pad is not None:
        special["pad_token"] = pad
    if mask is not None:
        special["mask_token"] = mask
    PreTrainedTokenizerFast(tokenizer_object=backend, **special).save_pretrained(str(folder))


class ByteTokenizer:
    """Byte-level tokenizer: ids are the bytes themselves, 256 is end-of-text (and padding)."""

    name = "bytes"
    sha256 = ""
    vocab_size = 257
    eot_id = 256
    pad_id = 256
    mask_id = -1

    def encode(self, data: Text) -> np.ndarray:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int32)

    def encode_batch(self, texts: Sequence[Text], *, special: bool = False) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    @staticmethod
    def backend() -> Any:
        """The same tokenizer as a ``tokenizers.Tokenizer`` (byte-level BPE without merges)."""
        try:
            from tokenizers import Tokenizer as _HF
            from tokenizers import decoders, models, pre_tokenizers
        except ImportError as exc:
            raise _missing("the byte tokenizer's tokenizer.json", "tokenizers", exc) from exc
        vocab = {char: byte for byte, char in _bytes_to_unicode().items()}
        tok = _HF(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([EOT])
        return tok

    def save(self, folder: Path) -> None:
        _save_backend(self.backend(), folder, eot=EOT, pad=EOT, mask=None)

    def as_transformers(self) -> Any:
        return _fast(self.backend(), eos_token=EOT, bos_token=EOT, unk_token=EOT, pad_token=EOT)


class HFTokenizer:
    """A Hugging Face tokenizer: a ``tokenizers.Tokenizer`` backend, and for a directory the
    transformers tokenizer around it (special-token templates, save_pretrained)."""

    def __init__(self, backend: Any, *, name: str, sha256: str, wrapper: Any = None) -> None:
        self._tok = backend
        self._wrapper = wrapper
        self.name = name
        self.sha256 = sha256
        eot: str | None = getattr(wrapper, "eos_token", None) if wrapper is not None else None
        if eot is None or backend.token_to_id(eot) is None:
            eot = next((t for t in EOT_CANDIDATES if backend.token_to_id(t) is not None), None)
        if eot is None:
            # NOTE: a tokenizer without an end-of-text token gets one, so documents stay separated.
            eot = EOT
            if wrapper is not None:
                wrapper.add_special_tokens({"eos_token": eot})
            else:
                backend.add_special_tokens([eot])
        self.eot_token = eot
        self.eot_id = int(backend.token_to_id(eot))
        pad = getattr(wrapper, "pad_token", None) if wrapper is not None else None
        if pad is None:
            pad = next((t for t in (PAD, "[PAD]") if backend.token_to_id(t) is not None), None)
        self.pad_token = pad
        self.pad_id = int(backend.token_to_id(pad)) if pad is not None else self.eot_id
        mask = getattr(wrapper, "mask_token", None) if wrapper is not None else None
        if mask is None:
            mask = next((t for t in (MASK, "[MASK]") if backend.token_to_id(t) is not None), None)
        self.mask_token = mask
        self.mask_id = int(backend.token_to_id(mask)) if mask is not None else -1
        self.vocab_size = max(int(backend.get_vocab_size(with_added_tokens=True)), self.eot_id + 1)

    def encode(self, data: Text) -> np.ndarray:
        return np.asarray(self._tok.encode(_as_text(data), add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[Text], *, special: bool = False) -> list[np.ndarray]:
        encoded = self._tok.encode_batch([_as_text(t) for t in texts], add_special_tokens=special)
        return [np.asarray(e.ids, dtype=np.int32) for e in encoded]

    def save(self, folder: Path) -> None:
        if self._wrapper is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._wrapper.save_pretrained(str(folder))
            return
        _save_backend(self._tok, folder, eot=self.eot_token, pad=self.pad_token, mask=self.mask_token)

    def as_transformers(self) -> Any:
        if self._wrapper is not None:
            return self._wrapper
        return _fast(
            self._tok,
            eos_token=self.eot_token,
            bos_token=self.eot_token,
            pad_token=self.pad_token,
            mask_token=self.mask_token,
        )


def _load_file(path: Path) -> HFTokenizer:
    try:
        from tokenizers import Tokenizer as _HF
    except ImportError as exc:
        raise _missing("--tokenizer", "tokenizers", exc) from exc
    try:
        backend = _HF.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses for bad files
        raise DataNodeError(
            ErrorKind.INVALID_ARGUMENT,
            f"cannot load tokenizer {path}: {exc}. Pass a Hugging Face tokenizer directory or tokenizer.json file.",
            reason=DatasetReason.BAD_TOKENIZER,
        ) from exc
    return HFTokenizer(backend, name=f"hf:{path.name}", sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def _load_dir(path: Path) -> HFTokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise _missing("--tokenizer DIR", "transformers", exc) from exc
    try:
        # NOTE: a local path never reaches the network; remote code stays off.
        wrapper = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises OSError/ValueError/... for unusable folders
        raise DataNodeError(
            ErrorKind.INVALID_ARGUMENT,
            f"cannot load the tokenizer in {path}: {exc}. Pass a folder written by a tokenizer's "
            "save_pretrained (with tokenizer.json or the files of a known tokenizer class).",
            reason=DatasetReason.BAD_TOKENIZER,
        ) from exc
    if not getattr(wrapper, "is_fast", False):
        raise DataNodeError(
            ErrorKind.INVALID_ARGUMENT,
            f"the tokenizer in {path} has no fast (Rust) version; save one with tokenizer.json "
            "(`AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(DIR)`)",
            reason=DatasetReason.BAD_TOKENIZER,
        )
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return HFTokenizer(wrapper.backend_tokenizer, name="hf", sha256=digest.hexdigest(), wrapper=wrapper)


def load_tokenizer(path: str | Path | None) -> Tokenizer:
    """The byte tokenizer for ``None``, else the tokenizer directory or tokenizer.json at ``path``."""
    if path is None:
        return ByteTokenizer()
    where = Path(path).expanduser()
    if where.is_dir():
        return _load_dir(where)
    if not where.is_file():
        raise DataNodeError(
            ErrorKind.NOT_FOUND,
            f"tokenizer {where} does not exist; pass a Hugging Face tokenizer directory (save_pretrained) "
            "or a tokenizer.json file.",
            reason=DatasetReason.TOKENIZER_NOT_FOUND,
        )
    return _load_file(where)


def train_bpe(texts: Iterable[Text], vocab_size: int, *, progress: bool = False) -> HFTokenizer:
    """A byte-level BPE with ``vocab_size`` ids trained on ``texts``."""
    if vocab_size < MIN_BPE_VOCAB:
        raise DataNodeError(
            ErrorKind.INVALID_ARGUMENT,
            f"--vocab-size must be at least {MIN_BPE_VOCAB} (256 bytes + {len(BPE_SPECIAL)} special tokens), "
            f"got {vocab_size}",
            reason=DatasetReason.BAD_VOCAB_SIZE,
        )
    try:
        from tokenizers import Tokenizer as _HF
        from tokenizers import decoders, models, pre_tokenizers, trainers
    except ImportError as exc:
        raise _missing("--train-tokenizer bpe", "tokenizers", exc) from exc
    backend = _HF(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(BPE_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    backend.train_from_iterator((_as_text(t) for t in texts), trainer=trainer)
    digest = hashlib.sha256(backend.to_str().encode()).hexdigest()
    return HFTokenizer(backend, name="bpe", sha256=digest)
