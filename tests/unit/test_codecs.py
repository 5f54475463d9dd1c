"""Codecs: bf16 rounding (against torch), int8 block scales and error bounds, file round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import load_file as torch_load_file

from tendril.core import codecs, tensorfile
from tendril.core.codecs import CodecError


def _torch_bf16_bits(values: np.ndarray) -> np.ndarray:
    return torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def test_bf16_rounds_to_nearest_even_like_torch() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10_000),
            np.array([0.0, -0.0, np.inf, -np.inf, 3.4028235e38, -3.4028235e38, 1e-45, 1.0], dtype=np.float32),
        ]
    ).astype(np.float32)
    # Exact ties: low 16 bits 0x8000, with an even and an odd kept part.
    ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7F8000], dtype=np.uint32).view(np.float32)
    values = np.concatenate([values, ties])
    got = codecs.bf16_from_fp32(values)
    np.testing.assert_array_equal(got, _torch_bf16_bits(values))
    assert got[-4] == 0x3F80  # tie, kept part even: rounds down
    assert got[-3] == 0x3F82  # tie, kept part odd: rounds up to even
    assert got[-1] == 0x7F80  # largest values round up to inf
    np.testing.assert_array_equal(codecs.fp32_from_bf16(got)[:-4], torch.from_numpy(values[:-4]).bfloat16().float())


def test_bf16_keeps_nan_a_nan() -> None:
    nans = np.array([0x7FFFFFFF, 0x7F80FFFF, 0xFFC00001], dtype=np.uint32).view(np.float32)
    assert np.isnan(codecs.fp32_from_bf16(codecs.bf16_from_fp32(nans))).all()


def test_bf16_error_bound() -> None:
    values = np.random.default_rng(2).standard_normal(50_000).astype(np.float32)
    back = codecs.fp32_from_bf16(codecs.bf16_from_fp32(values))
    # 8 significant bits: rounding to nearest errs by at most half an ulp, 2^-8 relative.
    assert np.all(np.abs(back - values) <= np.abs(values) * 2.0**-8)


@pytest.mark.parametrize("numel", [1, 255, 256, 257, 1000])
def test_int8_block_scales_and_error_bound(numel: int) -> None:
    block = 256
    values = np.random.default_rng(numel).standard_normal(numel).astype(np.float32) * 5
    quant, scales = codecs.int8_encode(values, block)
    assert quant.dtype == np.int8 and quant.shape == (numel,)
    assert scales.shape == (codecs.int8_scale_count(numel, block),)
    for i, scale in enumerate(scales):
        chunk = values[i * block : (i + 1) * block]
        assert scale == np.float32(np.abs(chunk).max() / np.float32(127))
        assert np.abs(quant[i * block : (i + 1) * block]).max() == 127  # the absmax value uses the full range
    back = codecs.int8_decode(quant, scales, block)
    bound = np.repeat(scales, block)[:numel] * 0.5 * (1 + 1e-5)
    assert np.all(np.abs(back - values) <= bound)


def test_int8_zero_block_and_non_finite() -> None:
    values = np.zeros(300, dtype=np.float32)
    values[260] = -2.0
    quant, scales = codecs.int8_encode(values, 256)
    assert scales[0] == 0 and scales[1] == np.float32(2.0 / 127)
    np.testing.assert_array_equal(codecs.int8_decode(quant, scales, 256), values)
    with pytest.raises(CodecError, match="NaN or Inf"):
        codecs.int8_encode(np.array([1.0, np.nan], dtype=np.float32), 4)
    with pytest.raises(CodecError, match="unknown codec"):
        codecs.check_codec("fp8")
    with pytest.raises(CodecError, match="out of range"):
        codecs.check_block_size(0)


def _model(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    tensors: dict[str, np.ndarray] = {
        "h.0.w": rng.standard_normal((70, 33)).astype(np.float32),
        "h.0.b": rng.standard_normal(33).astype(np.float16),
        "wte": rng.standard_normal((5, 3)).astype(np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    save_file(tensors, str(path))
    return tensors


@pytest.mark.parametrize("codec", ["fp32", "bf16", "int8", "int4"])
def test_file_round_trip(tmp_path: Path, codec: str) -> None:
    original = _model(tmp_path / "m.safetensors")
    encoded = tmp_path / f"m.{codec}"
    layout = tensorfile.convert_file(tmp_path / "m.safetensors", encoded, codec, block_size=64)
    assert layout.codec == codec and tensorfile.read_layout(encoded) == layout
    # A codec payload is a valid SafeTensors file for the reference implementation.
    loaded = torch_load_file(str(encoded))
    assert set(loaded) >= set(original)
    decoded_path = tmp_path / "back.safetensors"
    tensorfile.convert_file(encoded, decoded_path, "fp32")
    decoded = load_file(str(decoded_path))
    for name, value in original.items():
        want = value.astype(np.float32)
        assert decoded[name].dtype == np.float32 and decoded[name].shape == want.shape
        err = np.abs(decoded[name] - want)
        if codec == "fp32":
            np.testing.assert_array_equal(decoded[name], want)
        elif codec == "bf16":
            assert np.all(err <= np.abs(want) * 2.0**-8)
        elif want.size:
            absmax = np.abs(want).max()
            assert err.max() <= absmax / (127 if codec == "int8" else 7) * 0.5 * (1 + 1e-5)
    sizes = {
        c: tensorfile.plan_layout([(n, v.shape) for n, v in original.items()], c, 64)[0].data_size
        for c in codecs.CODECS
    }
    assert sizes["bf16"] * 2 == sizes["fp32"]
    assert sizes["int8"] < sizes["fp32"] / 3.5
    assert sizes["int4"] < sizes["fp32"] / 6


def test_convert_refuses_non_finite_and_non_float(tmp_path: Path) -> None:
    save_file({"x": np.array([1.0, np.inf], dtype=np.float32)}, str(tmp_path / "inf.safetensors"))
    with pytest.raises(CodecError, match="NaN or Inf"):
        tensorfile.convert_file(tmp_path / "inf.safetensors", tmp_path / "out", "bf16")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))  # no half-written temp file left
    save_file({"ids": np.arange(4, dtype=np.int64)}, str(tmp_path / "ids.safetensors"))
    with pytest.raises(tensorfile.TensorFileError, match="only floating tensors"):
        tensorfile.convert_file(tmp_path / "ids.safetensors", tmp_path / "out", "fp32")


def test_read_layout_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00")
    with pytest.raises(tensorfile.TensorFileError, match="too short"):
        tensorfile.read_layout(bad)
    save_file({"x": np.ones(4, dtype=np.float32)}, str(bad))
    with open(bad, "ab") as f:
        f.write(b"extra")
    with pytest.raises(tensorfile.TensorFileError, match="bytes but its header describes"):
        tensorfile.read_layout(bad)


def _repeats_by_unique(encoded: np.ndarray, numel: int, chunk: int) -> bool:
    """The plain definition: two used slots name the same position of the tensor."""
    slots = codecs.sparse_slots(numel, chunk)
    indices = encoded[: 2 * slots].view(np.uint16).astype(np.int64)
    used = indices != codecs.SPARSE_UNUSED
    positions = (np.arange(slots) // codecs.SPARSE_TOP_K)[used] * chunk + indices[used]
    return bool(np.unique(positions).size != positions.size)


@pytest.mark.parametrize("numel", [4096 * 5, 4096 * 5 + 40, 4096 * 5 + 3000])
def test_sparse_check_finds_repeated_indices_within_a_chunk(numel: int) -> None:
    """Per-chunk sorting finds exactly the repeats np.unique over all positions finds: within full
    chunks and the short last one; unused slots (0xFFFF) and equal indices of two chunks are fine."""
    rng = np.random.default_rng(31)
    values = rng.standard_normal(numel).astype(np.float32)
    values[: 4096 - 10] = 0.0  # the first chunk keeps only 10 values: 54 unused slots
    chunk = codecs.SPARSE_CHUNK
    encoded, _ = codecs.sparse_encode(values, chunk)
    assert codecs.sparse_check(encoded, numel, chunk) is None
    slots = codecs.sparse_slots(numel, chunk)
    indices = encoded[: 2 * slots].view(np.uint16)  # (a view: edits change `encoded`)
    top = codecs.SPARSE_TOP_K
    cases = [(top + 5, top + 9), (slots - 1, slots - 2), (3 * top, 3 * top + top - 1)]
    for a, b in cases:
        broken = encoded.copy()
        view = broken[: 2 * slots].view(np.uint16)
        view[a] = view[b]
        assert _repeats_by_unique(broken, numel, chunk)
        assert codecs.sparse_check(broken, numel, chunk) == "an index is repeated"
    same_across = encoded.copy()
    view = same_across[: 2 * slots].view(np.uint16)
    view[2 * top] = indices[top]  # chunk 2's first slot takes chunk 1's first index
    if view[2 * top] not in view[2 * top + 1 : 3 * top]:
        assert not _repeats_by_unique(same_across, numel, chunk)
        assert codecs.sparse_check(same_across, numel, chunk) is None
