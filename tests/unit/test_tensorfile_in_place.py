"""tensorfile.encode_into / decode_into: a payload written into memory (a kept file's mapping) is
byte for byte the file convert_file writes, for every codec, both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tendril.core import codecs, tensorfile
from tendril.core.codecs import CodecError


def _model(path: Path) -> Path:
    rng = np.random.default_rng(3)
    tensors = {
        "wte": rng.standard_normal((300, 70)).astype(np.float32),
        "h.0.w": (rng.standard_normal(5000) * 1e-3).astype(np.float32),
        "ln.b": np.zeros(7, dtype=np.float32),
        "odd": rng.standard_normal(1).astype(np.float32),
    }
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("codec", [c.name for c in codecs.REGISTRY])
def test_encode_into_memory_is_convert_file(tmp_path: Path, codec: str) -> None:
    src = _model(tmp_path / "delta.safetensors")
    block = codecs.get(codec).default_block_size
    expected = tmp_path / f"expected.{codec}"
    tensorfile.convert_file(src, expected, codec, block_size=block)
    size = tensorfile.encoded_layout_of(src, codec, block).total_bytes
    assert size == expected.stat().st_size
    out = bytearray(b"\xaa" * size)  # (whatever a kept file held before: every byte is written)
    layout = tensorfile.encode_into(src, memoryview(out), codec, block)
    assert layout.total_bytes == size and bytes(out) == expected.read_bytes()
    with pytest.raises(tensorfile.TensorFileError, match="needs"):
        tensorfile.encode_into(src, memoryview(bytearray(size + 1)), codec, block)
    # ...and decoded back into an fp32 image, as convert_file decodes it
    fp32 = tmp_path / "fp32.safetensors"
    tensorfile.convert_file(expected, fp32, "fp32", check_finite=False)
    image = bytearray(b"\x55" * fp32.stat().st_size)
    tensorfile.decode_into(expected, memoryview(image))
    assert bytes(image) == fp32.read_bytes()


def test_encode_into_refuses_non_finite_values(tmp_path: Path) -> None:
    src = tmp_path / "bad.safetensors"
    save_file({"w": np.array([1.0, np.nan, 2.0], dtype=np.float32)}, str(src))
    size = tensorfile.encoded_layout_of(src, "int8", 64).total_bytes
    with pytest.raises(CodecError, match="NaN or Inf"):
        tensorfile.encode_into(src, memoryview(bytearray(size)), "int8", 64)
