"""int4: nibble order and the odd tail, error bounds, the packed layout in files, streams and the
parameter server's in-memory decode; error feedback on the worker (bit for bit the registry's codecs)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file as torch_load_file

from tendril.core import codecs, streaming, tensorfile
from tendril.core.codecs import CodecError
from tendril.core.streaming import Digest, StreamError, StreamInfo
from tendril.paramserver import aggregate
from tendril_diloco import feedback
from tendril_diloco.config import parse_config
from tendril_diloco.errors import ExecutorError

INT4 = codecs.get("int4")


def test_nibble_order_and_odd_tail() -> None:
    # One block: absmax 7 -> scale 1; values 2i low nibble, 2i+1 high nibble, two's complement.
    quant, scales = codecs.int4_encode(np.array([1, -1, 7, -7, 3], dtype=np.float32), 8)
    assert scales.tolist() == [1.0]
    assert quant.dtype == np.uint8 and quant.tolist() == [0xF1, 0x97, 0x03]  # odd tail: high nibble 0
    np.testing.assert_array_equal(codecs.unpack_int4(quant), [1, -1, 7, -7, 3, 0])
    assert INT4.nbytes(5) == 3 and INT4.nbytes(256) == 128
    np.testing.assert_array_equal(INT4.decode_count(quant, scales, 8, 5), [1, -1, 7, -7, 3])


@pytest.mark.parametrize("numel", [1, 255, 256, 257, 1001])
def test_int4_block_scales_and_error_bound(numel: int) -> None:
    block = 256
    values = np.random.default_rng(numel).standard_normal(numel).astype(np.float32) * 5
    packed, scales = codecs.int4_encode(values, block)
    assert packed.shape == (-(-numel // 2),) and scales.shape == (codecs.int8_scale_count(numel, block),)
    q = codecs.unpack_int4(packed)[:numel]
    assert np.abs(q).max() <= 7
    for i, scale in enumerate(scales):
        assert scale == np.float32(np.abs(values[i * block : (i + 1) * block]).max() / np.float32(7))
        assert np.abs(q[i * block : (i + 1) * block]).max() == 7  # the absmax value uses the full range
    back = INT4.decode_count(packed, scales, block, numel)
    assert back.dtype == np.float32 and back.shape == (numel,)
    assert np.all(np.abs(back - values) <= np.repeat(scales, block)[:numel] * 0.5 * (1 + 1e-5))


def test_int4_zero_blocks_non_finite_and_odd_block_sizes() -> None:
    values = np.zeros(301, dtype=np.float32)
    values[260] = -2.0
    packed, scales = codecs.int4_encode(values, 256)
    assert scales[0] == 0 and scales[1] == np.float32(2.0 / 7)
    np.testing.assert_array_equal(INT4.decode_count(packed, scales, 256, 301), values)
    with pytest.raises(CodecError, match="int4 cannot encode NaN or Inf"):
        codecs.int4_encode(np.array([1.0, np.inf], dtype=np.float32), 4)
    with pytest.raises(CodecError, match="multiple of 2"):
        INT4.check_block_size(255)
    with pytest.raises(CodecError, match="multiple of 2"):
        tensorfile.plan_layout([("w", (10,))], "int4", 3)


def test_int4_files_are_safetensors_and_decode_in_pieces(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    original = {"w": rng.standard_normal((301, 7)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    save_file(original, str(tmp_path / "m.st"))
    layout = tensorfile.convert_file(tmp_path / "m.st", tmp_path / "m.int4", "int4", block_size=64)
    assert tensorfile.read_layout(tmp_path / "m.int4") == layout
    assert layout.shapes() == {"w": (301, 7), "b": (3,)}  # the tensors' own shapes, not their bytes
    assert [t.end - t.begin for t in layout.tensors] == [2, 1054]  # ceil(numel / 2) bytes each
    raw = torch_load_file(str(tmp_path / "m.int4"))  # valid SafeTensors: flat U8 tensors + F32 scales
    assert raw["w"].dtype == torch.uint8 and raw["w"].shape == (1054,) and raw["w/__scales__"].shape == (33,)
    # Decoding in pieces (server blocks, file pieces) gives the bits of one whole decode.
    whole = {n: INT4.decode_count(*codecs.int4_encode(v.reshape(-1), 64), 64, v.size) for n, v in original.items()}
    view = memoryview((tmp_path / "m.int4").read_bytes())
    fd = os.open(tmp_path / "m.int4", os.O_RDONLY)
    try:
        for spec in layout.tensors:
            for step in (64, 128, 2048):
                parts = [aggregate.decode(view, layout, spec, a, b) for a, b in aggregate.blocks(spec.numel, step)]
                np.testing.assert_array_equal(np.concatenate(parts), whole[spec.name])
                read = [tensorfile.read_values(fd, layout, spec, a, b) for a, b in tensorfile.pieces(spec.numel, step)]
                np.testing.assert_array_equal(np.concatenate(read), whole[spec.name])
    finally:
        os.close(fd)
    assert aggregate.first_non_finite(view, layout) is None
    # A file whose shapes do not fit its bytes is refused.
    doc = (tmp_path / "m.int4").read_bytes()
    broken = doc.replace(b'\\"w\\":[301,7]', b'\\"w\\":[301,9]')  # inside the JSON string of tendril.shapes
    assert broken != doc
    (tmp_path / "bad.int4").write_bytes(broken)
    with pytest.raises(tensorfile.TensorFileError, match="do not hold shape"):
        tensorfile.read_layout(tmp_path / "bad.int4")


def test_int4_stream_headers_carry_shapes_and_packed_byte_ranges() -> None:
    layout, _ = tensorfile.plan_layout([("w", (3, 5)), ("b", (1,))], "int4", 256)
    info = StreamInfo(uuid.uuid4().hex, "run", 0, "w0", 1.0, layout, Digest("sha256", "0" * 64))
    header = streaming.header_message(info)
    assert [(t.dtype, list(t.shape), t.end - t.begin) for t in header.tensors] == [("U8", [3, 5], 8), ("U8", [1], 1)]
    assert streaming.info_from_header(header).layout == layout
    header.tensors[0].end += 7  # one byte per value is not int4
    with pytest.raises(StreamError, match="do not hold shape"):
        streaming.info_from_header(header)
    header.tensors[0].end -= 7
    header.block_size = 255
    with pytest.raises(StreamError, match="multiple of 2"):
        streaming.info_from_header(header)


def test_int4_sends_about_an_eighth_of_fp32() -> None:
    shapes = [("w", (1024, 1024))]
    fp32 = tensorfile.plan_layout(shapes, "fp32")[0].data_size
    int4 = tensorfile.plan_layout(shapes, "int4", 256)[0].data_size
    assert int4 == 1024 * 1024 // 2 + 4 * 4096 and fp32 / int4 > 7.5


# -- error feedback on the worker ------------------------------------------------------------------------


def test_worker_block_size_is_the_bridges() -> None:
    assert feedback.BLOCK_SIZE == codecs.DEFAULT_BLOCK_SIZE


@pytest.mark.parametrize("codec", ["fp32", "bf16", "int8", "int4"])
@pytest.mark.parametrize("numel", [1, 257, 1000])
def test_worker_roundtrip_is_the_registry_codec_bit_for_bit(codec: str, numel: int) -> None:
    rng = np.random.default_rng(numel)
    values = (rng.standard_normal(numel) * 10.0 ** rng.integers(-6, 2, numel)).astype(np.float32)
    values[: min(numel, 3)] = 0.0
    wire = codecs.get(codec)
    encoded, scales = wire.encode(values, codecs.DEFAULT_BLOCK_SIZE)
    want = wire.decode_count(encoded, scales, codecs.DEFAULT_BLOCK_SIZE, numel)
    got = feedback.roundtrip(codec, torch.from_numpy(values.copy()).reshape(1, numel)).reshape(-1).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_error_feedback_sends_the_sum_of_deltas_over_rounds() -> None:
    """Σ decode(sent) = Σ Δ − e_last: what int4 drops one round is sent in later rounds."""
    ef = feedback.ErrorFeedback("int4")
    gen = torch.Generator().manual_seed(3)
    total_delta = torch.zeros(5, 301, dtype=torch.float64)
    total_sent = torch.zeros(5, 301, dtype=torch.float64)
    total_plain = torch.zeros(5, 301, dtype=torch.float64)  # the same Δs sent without feedback
    for _ in range(6):
        delta = {"w": torch.randn(5, 301, generator=gen) * 1e-2}
        send = ef.compensate(delta)
        ef.sent(send)
        total_delta += delta["w"].double()
        total_sent += feedback.roundtrip("int4", send["w"]).double()
        total_plain += feedback.roundtrip("int4", delta["w"]).double()
        assert ef.norm() > 0
    assert torch.allclose(total_sent + ef.residual["w"].double(), total_delta, atol=1e-6)
    # Without feedback the errors of six rounds add up; with it only the last round's is left.
    with_feedback = float((total_sent - total_delta).norm())
    assert with_feedback < 0.6 * float((total_plain - total_delta).norm())


def test_error_feedback_config_defaults_and_refusals() -> None:
    base = {"run_id": "r", "parameter_server": "127.0.0.1:1", "rounds": 1}
    assert parse_config({**base, "codec": "int4"}).feedback is True
    assert parse_config({**base, "codec": "int8"}).feedback is False
    assert parse_config({**base, "codec": "int8", "error_feedback": True}).feedback is True
    assert parse_config({**base, "codec": "int4", "error_feedback": False}).feedback is False
    with pytest.raises(ExecutorError, match="error_feedback must be true or false"):
        parse_config({**base, "error_feedback": "yes"})
    with pytest.raises(ExecutorError, match="no arithmetic for codec"):
        feedback.ErrorFeedback("fp8")
