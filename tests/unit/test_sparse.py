"""The sparse codec (chunk-wise top-k at 2 bits): what is kept, the two magnitudes, odd lengths,
all-zero chunks, refusals, the payload layout, bad indices at the server; the worker's decayed
accumulator (bit for bit the registry's codec)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from tendril.core import codecs, tensorfile
from tendril.core.codecs import CodecError
from tendril.paramserver import aggregate
from tendril_diloco import feedback
from tendril_diloco.config import parse_config

SPARSE = codecs.get("sparse")
K = codecs.SPARSE_TOP_K


@pytest.mark.parametrize("numel", [1, 63, 65, 4095, 4096, 4097, 10_001])
def test_keeps_the_top_k_of_each_chunk_at_two_magnitudes(numel: int) -> None:
    chunk = 4096
    values = np.random.default_rng(numel).standard_normal(numel).astype(np.float32)
    encoded, scales = SPARSE.encode(values, chunk)
    assert encoded.nbytes == SPARSE.tensor_bytes(numel, chunk) and scales.size == SPARSE.scale_count(numel, chunk)
    back = SPARSE.decode_count(encoded, scales, chunk, numel)
    assert back.dtype == np.float32 and back.shape == (numel,)
    for c in range(0, numel, chunk):
        part, got = values[c : c + chunk], back[c : c + chunk]
        kept = np.flatnonzero(got)
        assert kept.size == min(K, part.size)
        # The kept ones are the largest |x| of the chunk, with their signs.
        assert np.abs(part[kept]).min() >= np.sort(np.abs(part))[::-1][min(K, part.size) - 1]
        assert np.array_equal(np.sign(got[kept]), np.sign(part[kept]))
        lo, hi = scales[2 * (c // chunk)], scales[2 * (c // chunk) + 1]
        assert set(np.abs(got[kept]).tolist()) <= {float(lo), float(hi)} and lo <= hi
        order = np.sort(np.abs(part))[::-1][: kept.size]
        assert hi == order[(kept.size + 1) // 2 // 2]  # the middle of the high half
    # Decoding what was decoded gives it back (the worker sends decoded values).
    again, again_scales = SPARSE.encode(back, chunk)
    np.testing.assert_array_equal(SPARSE.decode_count(again, again_scales, chunk, numel), back)


def test_zero_chunks_few_nonzeros_and_refusals() -> None:
    values = np.zeros(9000, dtype=np.float32)
    values[5000], values[5001], values[8999] = 3.0, -1.0, 0.5
    encoded, scales = SPARSE.encode(values, 4096)
    np.testing.assert_array_equal(scales[:2], [0, 0])  # an all-zero chunk: nothing kept
    back = SPARSE.decode_count(encoded, scales, 4096, values.size)
    assert np.count_nonzero(back) == 3 and back[5000] == 3.0 and back[5001] == -1.0  # zeros are never kept
    with pytest.raises(CodecError, match="sparse cannot encode NaN or Inf"):
        SPARSE.encode(np.array([1.0, np.nan], dtype=np.float32), 64)
    with pytest.raises(CodecError, match="chunk"):
        SPARSE.check_block_size(32)
    with pytest.raises(CodecError, match="chunk"):
        SPARSE.check_block_size(65536)


def test_sparse_files_decode_in_pieces_and_bad_indices_are_found(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    original = {"w": rng.standard_normal((301, 70)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    save_file(original, str(tmp_path / "m.st"))
    layout = tensorfile.convert_file(tmp_path / "m.st", tmp_path / "m.sparse", "sparse", block_size=1024)
    assert tensorfile.read_layout(tmp_path / "m.sparse") == layout and layout.shapes() == {"w": (301, 70), "b": (5,)}
    fp32 = tensorfile.plan_layout([(n, v.shape) for n, v in original.items()], "fp32")[0].data_size
    assert fp32 / layout.data_size > 7  # 64 of 1024 values kept: 6.25 % density at 2.25 bytes each + scales
    whole = {n: SPARSE.decode_count(*SPARSE.encode(v.reshape(-1), 1024), 1024, v.size) for n, v in original.items()}
    view = memoryview((tmp_path / "m.sparse").read_bytes())
    fd = os.open(tmp_path / "m.sparse", os.O_RDONLY)
    try:
        for spec in layout.tensors:
            for step in (1024, 4096):
                parts = [aggregate.decode(view, layout, spec, a, b) for a, b in aggregate.blocks(spec.numel, step)]
                np.testing.assert_array_equal(np.concatenate(parts), whole[spec.name])
                read = [tensorfile.read_values(fd, layout, spec, a, b) for a, b in tensorfile.pieces(spec.numel, step)]
                np.testing.assert_array_equal(np.concatenate(read), whole[spec.name])
    finally:
        os.close(fd)
    assert aggregate.bad_indices(view, layout) is None and aggregate.first_non_finite(view, layout) is None
    # An index past the end of the last (short) chunk, then a repeated one.
    spec = next(t for t in layout.tensors if t.name == "w")
    data = bytearray(view)
    last_chunk_slot = (spec.numel // 1024) * K
    at = layout.header_size + spec.begin + 2 * last_chunk_slot
    data[at : at + 2] = np.array([spec.numel % 1024 + 3], dtype=np.uint16).tobytes()
    assert "outside its chunk" in (aggregate.bad_indices(memoryview(bytes(data)), layout) or "")
    data = bytearray(view)
    first = layout.header_size + spec.begin
    data[first + 2 : first + 4] = data[first : first + 2]
    assert "repeated" in (aggregate.bad_indices(memoryview(bytes(data)), layout) or "")


def test_fold_adds_only_the_kept_values(tmp_path: Path) -> None:
    values = np.random.default_rng(4).standard_normal((3, 5000)).astype(np.float32)
    save_file({"w": values}, str(tmp_path / "d.st"))
    layout = tensorfile.convert_file(tmp_path / "d.st", tmp_path / "d.sparse", "sparse")
    theta, _ = tensorfile.plan_layout([("w", (3, 5000))], "fp32")
    acc = aggregate.Accumulator(theta, memoryview(bytearray(4 * 15000)))
    acc.values[:] = 1.0
    acc.empty = False  # a sum of 1.0 everywhere (a fresh accumulator's first fold overwrites it)
    acc.fold("a", 2.0, memoryview((tmp_path / "d.sparse").read_bytes()), layout)
    dense = SPARSE.decode_count(*SPARSE.encode(values.reshape(-1), 4096), 4096, 15000)
    np.testing.assert_array_equal(acc.values, np.float32(1.0) + dense * np.float32(2.0))
    assert acc.workers == ["a"] and acc.weight == 2.0


# -- the worker's side ------------------------------------------------------------------------------------------


def test_worker_constants_are_the_codecs() -> None:
    assert (feedback.SPARSE_CHUNK, feedback.SPARSE_TOP_K) == (codecs.SPARSE_CHUNK, codecs.SPARSE_TOP_K)
    assert SPARSE.default_block_size == codecs.SPARSE_CHUNK and SPARSE.update_codec == "int8"


@pytest.mark.parametrize("numel", [1, 100, 4096, 9000])
def test_worker_roundtrip_is_the_registry_codec_bit_for_bit(numel: int) -> None:
    rng = np.random.default_rng(numel)
    values = (rng.standard_normal(numel) * 10.0 ** rng.integers(-4, 1, numel)).astype(np.float32)
    values[::7] = 0.0
    values[1::50] = 0.25  # ties
    encoded, scales = SPARSE.encode(values, codecs.SPARSE_CHUNK)
    want = SPARSE.decode_count(encoded, scales, codecs.SPARSE_CHUNK, numel)
    got = feedback.roundtrip("sparse", torch.from_numpy(values.copy())).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize(("codec", "block_size"), [("sparse", 1024), ("int4", 64), ("int8", 32)])
def test_worker_roundtrip_follows_the_jobs_block_size(codec: str, block_size: int) -> None:
    values = np.random.default_rng(block_size).standard_normal(5001).astype(np.float32)
    wire = codecs.get(codec)
    want = wire.decode_count(*wire.encode(values, block_size), block_size, values.size)
    got = feedback.roundtrip(codec, torch.from_numpy(values.copy()), block_size).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    ef = feedback.ErrorFeedback(codec, block_size=block_size)
    ef.sent(ef.compensate({"w": torch.from_numpy(values.copy())}))
    assert torch.equal(ef.residual["w"], torch.from_numpy(values) - torch.from_numpy(got))


def test_decayed_accumulator_sends_top_k_and_keeps_the_rest() -> None:
    ef = feedback.ErrorFeedback("sparse", beta=0.9)
    gen = torch.Generator().manual_seed(1)
    a_prev = torch.zeros(2, 5000)
    for _ in range(3):
        delta = {"w": torch.randn(2, 5000, generator=gen)}
        sent = ef.compensate(delta)
        accumulated = a_prev * 0.9 + delta["w"]
        assert torch.equal(sent["w"], feedback.roundtrip("sparse", accumulated))
        assert int((sent["w"] != 0).sum()) == 3 * 64  # 10 000 values: chunks of 4096, 4096, 1808
        ef.sent(sent)
        assert torch.equal(ef.residual["w"], accumulated - sent["w"])
        a_prev = ef.residual["w"]
    base = {"run_id": "r", "parameter_server": "127.0.0.1:1", "rounds": 1}
    config = parse_config({**base, "codec": "sparse", "sparse_beta": 0.5})
    assert config.feedback is True and config.sparse_beta == 0.5
