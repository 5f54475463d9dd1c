"""Tokenizers for ``tendril data prepare``.

* :class:`ByteTokenizer` (default, nothing to download): one token per UTF-8 byte (ids 0–255)
  plus an end-of-text id 256, so ``vocab_size`` is 257. It tokenizes raw bytes, so any file
  works, whatever its encoding.
* :class:`HFTokenizer`: a HuggingFace ``tokenizer.json`` loaded with the ``tokenizers``
  package (installed with transformers). Its end-of-text id is the first of the usual
  end-of-text tokens it knows; one without any gets ``<|endoftext|>`` added.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np

from tendril.core.errors import ErrorKind
from tendril.data_node.errors import DataNodeError, DatasetReason

EOT_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]", "<|end_of_text|>")


class Tokenizer(Protocol):
    """What prepare needs from a tokenizer."""

    name: str
    sha256: str  # of the tokenizer file; "" for the built-in byte tokenizer
    vocab_size: int
    eot_id: int

    def encode(self, data: bytes) -> np.ndarray:
        """Token ids (int32) of one document, without the end-of-text id."""
        ...


class ByteTokenizer:
    """Byte-level tokenizer: ids are the bytes themselves, 256 is end-of-text."""

    name = "bytes"
    sha256 = ""
    vocab_size = 257
    eot_id = 256

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)


class HFTokenizer:
    """A HuggingFace ``tokenizers`` tokenizer from a tokenizer.json file."""

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer as _HF
        except ImportError as exc:
            raise DataNodeError(
                ErrorKind.FAILED_PRECONDITION,
                "--tokenizer needs the `tokenizers` package (it comes with transformers: "
                "pip install 'tendril[train]'), or leave --tokenizer out to use the byte tokenizer.",
                reason=DatasetReason.TOKENIZERS_MISSING,
            ) from exc
        try:
            self._tok = _HF.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses for bad files
            raise DataNodeError(
                ErrorKind.INVALID_ARGUMENT,
                f"cannot load tokenizer {path}: {exc}. Pass a HuggingFace tokenizer.json file.",
                reason=DatasetReason.BAD_TOKENIZER,
            ) from exc
        self.name = f"hf:{path.name}"
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        eot = next((t for t in EOT_CANDIDATES if self._tok.token_to_id(t) is not None), None)
        if eot is None:
            # NOTE: a tokenizer without an end-of-text token gets one, so documents stay separated.
            self._tok.add_special_tokens(["<|endoftext|>"])
            eot = "<|endoftext|>"
        eot_id = self._tok.token_to_id(eot)
        assert eot_id is not None  # found above, or just added
        self.eot_id = int(eot_id)
        self.vocab_size = max(int(self._tok.get_vocab_size(with_added_tokens=True)), self.eot_id + 1)

    def encode(self, data: bytes) -> np.ndarray:
        text = data.decode("utf-8", errors="replace")
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)


def load_tokenizer(path: str | Path | None) -> Tokenizer:
    """The byte tokenizer for ``None``, else the HuggingFace tokenizer.json at ``path``."""
    if path is None:
        return ByteTokenizer()
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataNodeError(
            ErrorKind.NOT_FOUND,
            f"tokenizer file {file} does not exist; pass the path of a HuggingFace tokenizer.json.",
            reason=DatasetReason.TOKENIZER_NOT_FOUND,
        )
    return HFTokenizer(file)
