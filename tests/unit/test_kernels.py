"""tendril-kernels (the parameter server's arithmetic in C) against the numpy reference and torch, bit for bit."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from tendril.core import codecs, tensorfile
from tendril.paramserver import aggregate
from tendril.paramserver.aggregate import Accumulator, close_round, new_payload
from tendril.paramserver.outer import KERNELS, step_in_place

kernels = pytest.importorskip("tendril_kernels")


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def _values(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """float32 values over many binades, with zeros of both signs, subnormals and exact small integers."""
    v = (rng.standard_normal(n) * scale * 10.0 ** rng.integers(-4, 4, n)).astype(np.float32)
    v[:8] = [0.0, -0.0, 1e-45, -1e-45, 1e-40, 2.0**-126, 1.0, 3.0]
    v[8:40] = np.arange(32, dtype=np.float32) * np.float32(2.0**-20)
    return v


@pytest.mark.parametrize("with_momentum", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1e-36, 1e3])
def test_nesterov_kernel_matches_the_numpy_reference(with_momentum: bool, scale: float) -> None:
    rng = np.random.default_rng(11)
    n = 100_003  # not a multiple of any vector width: the loops' tails run too
    theta = _values(rng, n, scale)
    momentum = _values(rng, n, scale * 1e-3) if with_momentum else None
    acc = _values(rng, n, scale * 3e-3)
    results = []
    for impl in (None, kernels):
        a, u = acc.copy(), np.empty(n, dtype=np.float32)
        step_in_place(theta, momentum, a, u, weight=np.float32(2.5), lr=0.7, mu=0.9, kernels=impl)
        results.append((a, u))
    (ref_acc, ref_u), (acc_c, u_c) = results
    np.testing.assert_array_equal(_bits(acc_c), _bits(ref_acc))
    np.testing.assert_array_equal(_bits(u_c), _bits(ref_u))


def test_nesterov_kernel_matches_torch_over_three_rounds() -> None:
    rng = np.random.default_rng(12)
    theta = rng.standard_normal(50_001).astype(np.float32)
    param = torch.nn.Parameter(torch.from_numpy(theta.copy()))
    optimizer = torch.optim.SGD([param], lr=0.7, momentum=0.9, nesterov=True)
    buf = None
    for _ in range(3):
        grad = (rng.standard_normal(theta.size) * 1e-2).astype(np.float32)
        param.grad = torch.from_numpy(grad.copy())
        optimizer.step()
        acc, update = grad * np.float32(2.0), np.empty_like(grad)  # a sum of weight 2: g = acc / 2 exactly
        kernels.nesterov(theta, buf, acc, update, 2.0, 0.7, 0.9)
        np.testing.assert_array_equal(acc, optimizer.state[param]["momentum_buffer"].numpy())
        np.testing.assert_array_equal(update, param.detach().numpy() - theta)
        theta, buf = theta + update, acc
        with torch.no_grad():
            param.copy_(torch.from_numpy(theta))


def test_fold_kernel_matches_numpy() -> None:
    rng = np.random.default_rng(13)
    delta, start = _values(rng, 70_001, 1e-2), _values(rng, 70_001, 1.0)
    w = np.float32(0.3)
    acc = start.copy()
    kernels.fold(acc, delta, float(w), False)
    np.testing.assert_array_equal(_bits(acc), _bits(start + delta * w))
    garbage = np.full(delta.size, np.nan, dtype=np.float32)  # the first fold never reads the buffer
    kernels.fold(garbage, delta, float(w), True)
    np.testing.assert_array_equal(_bits(garbage), _bits(np.float32(0) + delta * w))
    assert not np.signbit(garbage[1])  # 0 + (-0.0) is +0.0, as adding to zeros gives


def test_kernels_refuse_wrong_buffers() -> None:
    f32 = np.zeros(16, dtype=np.float32)
    with pytest.raises(TypeError, match="float32"):
        kernels.fold(np.zeros(16, dtype=np.float64), f32, 1.0, False)
    with pytest.raises(TypeError, match="writable"):
        kernels.fold(np.frombuffer(bytes(64), dtype=np.float32), f32, 1.0, False)
    with pytest.raises(ValueError, match="as many"):
        kernels.fold(np.zeros(8, dtype=np.float32), f32, 1.0, False)
    with pytest.raises(ValueError, match="overlap"):
        kernels.nesterov(f32, None, f32, f32.copy(), 1.0, 0.7, 0.9)
    misaligned = np.frombuffer(bytearray(68), dtype=np.uint8)[2:66].view(np.float32)
    with pytest.raises(ValueError, match="4-byte"):
        kernels.fold(f32.copy(), misaligned, 1.0, False)
    with pytest.raises(TypeError):
        kernels.nesterov(f32, None, f32.copy(), f32.copy(), 1.0, 0.7)  # a missing argument


def test_close_round_gives_the_same_bytes_with_and_without_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's close (blocks, two threads, θ and momentum read from files) through both paths."""
    assert KERNELS is not None
    rng = np.random.default_rng(14)
    shapes = [("wte", (300_000,)), ("ln", (1000,))]
    layout, header = tensorfile.plan_layout(shapes, "fp32")
    for name, scale in (("theta", 1.0), ("momentum", 1e-3)):
        fd = tensorfile.create_payload(tmp_path / name, layout, header)
        try:
            tensorfile.pwrite_all(fd, _values(rng, layout.numel, scale).data, layout.header_size)
        finally:
            tensorfile.os.close(fd)
    start = _values(rng, layout.numel, 3e-3)
    out = {}
    for label, impl in (("numpy", None), ("c", KERNELS)):
        monkeypatch.setattr(aggregate, "step_in_place", functools.partial(step_in_place, kernels=impl))
        acc = Accumulator(layout, memoryview(bytearray(start.tobytes())))
        acc.workers, acc.weight, acc.empty = ["a", "b"], 2.0, False
        update_layout, update_header = new_payload(shapes, "fp32")
        update = memoryview(bytearray(update_layout.total_bytes))
        close_round(
            acc=acc,
            theta=tmp_path / "theta",
            momentum=tmp_path / "momentum",
            lr=0.7,
            mu=0.9,
            update=update,
            update_layout=update_layout,
            update_header=update_header,
        )
        out[label] = (bytes(update), acc.values.tobytes())
    assert out["c"] == out["numpy"]


# -- the payload codecs' loops ----------------------------------------------------------------------


def _codec_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """float32 over many binades, with both zeros, subnormals, bf16 ties and values on int8 ties."""
    v = _values(rng, n, 1.0)
    v[40:48] = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7FFFFF, 0x00008000, 1, 2, 3], dtype=np.uint32).view(
        np.float32
    )
    v[48:56] = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 127.0, -127.0, 126.5], dtype=np.float32)
    return v


def test_bf16_kernels_match_numpy() -> None:
    rng = np.random.default_rng(21)
    v = _codec_inputs(rng, 50_001)
    v[60:64] = [np.inf, -np.inf, np.nan, -np.nan]
    v[64] = np.array(0x7FFFFFFF, dtype=np.uint32).view(np.float32)  # a NaN whose rounding would carry
    np.testing.assert_array_equal(codecs.bf16_from_fp32(v), codecs._bf16_from_fp32(v))
    grid = v[:50_000].reshape(100, 500)  # shapes are kept
    assert codecs.bf16_from_fp32(grid).shape == (100, 500)
    bits = rng.integers(0, 1 << 16, 70_001, dtype=np.uint16)
    np.testing.assert_array_equal(_bits(codecs.fp32_from_bf16(bits)), _bits(codecs._fp32_from_bf16(bits)))


@pytest.mark.parametrize("block_size", [1, 7, 64, 4096])
def test_blockwise_kernels_match_numpy(block_size: int) -> None:
    rng = np.random.default_rng(22)
    v = _codec_inputs(rng, 50_001)
    v[block_size : 2 * block_size] = 0.0  # an all-zero block: scale 0, values 0
    for limit, name in ((codecs.INT8_MAX, "int8"), (codecs.INT4_MAX, "int4")):
        quant, scales = codecs._absmax_quantize(v, block_size, limit, name)
        ref_quant, ref_scales = codecs._absmax_quantize_numpy(v, block_size, limit, name)
        np.testing.assert_array_equal(quant, ref_quant)
        np.testing.assert_array_equal(_bits(scales), _bits(ref_scales))
        with np.errstate(over="ignore"):  # (float32's largest value decodes past it: inf, both ways)
            np.testing.assert_array_equal(
                _bits(codecs.int8_decode(quant, scales, block_size)),
                _bits(codecs._int8_decode(ref_quant, ref_scales, block_size)),
            )
    packed = codecs.pack_int4(quant)  # int4 values of the last pass, an odd count
    np.testing.assert_array_equal(packed, codecs._pack_int4(quant))
    np.testing.assert_array_equal(codecs.unpack_int4(packed), codecs._unpack_int4(packed))
    bad = v.copy()
    bad[-1] = np.nan
    for impl in (codecs._absmax_quantize, codecs._absmax_quantize_numpy):
        with pytest.raises(codecs.CodecError, match="NaN or Inf"):
            impl(bad, block_size, codecs.INT8_MAX, "int8")


@pytest.mark.parametrize("chunk", [64, 68, 4096, 32768])
def test_sparse_kernel_matches_numpy(chunk: int) -> None:
    """Every chunk's top k with their ties, zeros (never kept), subnormals and a tail chunk of fewer
    values than the k kept; and chunks whose sampled values (every 8th, from which the kernel
    guesses a floor) are their only large ones, so that fewer than k reach the floor guessed."""
    rng = np.random.default_rng(24)
    v = _codec_inputs(rng, 3 * 32768 + 37)
    misleading = (rng.standard_normal(v.size) * 1e-3).astype(np.float32)
    for start in range(0, v.size, chunk):
        sampled = np.arange(start, min(start + 20 * 8, v.size), 8)
        misleading[sampled] = 10 + rng.random(sampled.size).astype(np.float32)
    cases = {
        "values": v,
        "mostly zero": np.where(rng.random(v.size) < 0.99, np.float32(0), v).astype(np.float32),
        "ties": (np.round(rng.standard_normal(v.size) * 4) / 4).astype(np.float32),
        "signed zeros and subnormals": np.where(rng.random(v.size) < 0.5, np.float32(-0.0), np.float32(1e-45)),
        "one tail value": v[: chunk + 1],
        "shorter than k": v[:37],
        "empty": v[:0],
        "large values only where sampled": misleading,
    }
    for name, values in cases.items():
        encoded, scales = codecs.sparse_encode(values, chunk)
        ref_encoded, ref_scales = codecs._sparse_encode_numpy(values, chunk)
        np.testing.assert_array_equal(encoded, ref_encoded, err_msg=name)
        np.testing.assert_array_equal(_bits(scales), _bits(ref_scales), err_msg=name)
    bad = v.copy()
    for at in (0, chunk - 1, v.size - 1):
        for value in (np.nan, np.inf, -np.inf):
            bad[:] = v
            bad[at] = value
            with pytest.raises(codecs.CodecError, match="NaN or Inf"):
                codecs.sparse_encode(bad, chunk)
    for value in (np.nan, np.inf):  # the floor guessed is itself NaN or Inf
        bad[:] = v
        bad[chunk : 2 * chunk : 8] = value
        with pytest.raises(codecs.CodecError, match="NaN or Inf"):
            codecs.sparse_encode(bad, chunk)
    with pytest.raises(ValueError, match="multiple of 4"):
        kernels.sparse_encode(v, 64, 6, np.zeros(1, np.uint16), np.zeros(1, np.uint8), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="sized"):
        kernels.sparse_encode(v[:64], 64, 64, np.zeros(1, np.uint16), np.zeros(16, np.uint8), np.zeros(2, np.float32))


def test_codec_kernels_refuse_wrong_buffers() -> None:
    f32 = np.zeros(16, dtype=np.float32)
    with pytest.raises(TypeError, match="uint16"):
        kernels.bf16_encode(f32, np.zeros(16, dtype=np.int16))
    with pytest.raises(ValueError, match="as many"):
        kernels.bf16_encode(f32, np.zeros(8, dtype=np.uint16))
    with pytest.raises(ValueError, match="one per block"):
        kernels.absmax_quantize(f32, np.zeros(16, dtype=np.int8), np.zeros(1, dtype=np.float32), 4, 127)
    with pytest.raises(ValueError, match="limit"):
        kernels.absmax_quantize(f32, np.zeros(16, dtype=np.int8), np.zeros(4, dtype=np.float32), 4, 300)
    with pytest.raises(ValueError, match="bytes"):
        kernels.pack_int4(np.zeros(5, dtype=np.int8), np.zeros(2, dtype=np.uint8))


def test_all_finite_kernel_finds_every_nan_and_inf() -> None:
    rng = np.random.default_rng(23)
    v = _codec_inputs(rng, 10_001)
    assert kernels.all_finite(v) and codecs.all_finite(v) and kernels.all_finite(v[:0])
    for at in (0, 4095, 4096, 8191, 10_000):  # block edges and the tail
        for bad in (np.nan, np.inf, -np.inf):
            w = v.copy()
            w[at] = bad
            assert not kernels.all_finite(w) and not codecs.all_finite(w)
            assert not codecs.all_finite(w.astype(np.float64))  # (other dtypes: numpy)
    with pytest.raises(TypeError, match="float32"):
        kernels.all_finite(np.zeros(4, dtype=np.float64))


def test_misaligned_payloads_go_through_the_kernels_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload whose header leaves its tensors off float32's alignment (a writer may pad it to any
    byte) folds to the same bits as numpy's, and the codecs decode such views too."""
    import json

    n = 10_001
    rng = np.random.default_rng(41)
    delta = _values(rng, n, 1e-2)
    text = json.dumps({"t": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    text += b" " * ((-(8 + len(text)) % 4) + 1)  # 8 + len(text) ≡ 1 (mod 4): every value misaligned
    raw = bytearray(len(text).to_bytes(8, "little") + text + delta.tobytes())
    view = memoryview(raw)
    layout = aggregate.payload_layout(view)
    assert layout.header_size % 4 == 1
    theta_layout, _ = tensorfile.plan_layout([("t", (n,))], "fp32")
    start = _values(rng, n, 1.0)
    sums = []
    for impl in (kernels, None):
        monkeypatch.setattr(aggregate, "KERNELS", impl)
        acc = Accumulator(theta_layout, memoryview(bytearray(start.tobytes())))
        acc.empty = False
        acc.fold("w", 0.5, view, layout)
        sums.append(acc.values.copy())
    np.testing.assert_array_equal(_bits(sums[0]), _bits(sums[1]))
    odd = np.frombuffer(raw, dtype=np.uint8)[1 : 1 + 2 * 999].view(np.uint16)  # a misaligned uint16 view
    assert not odd.flags.aligned
    np.testing.assert_array_equal(_bits(codecs.fp32_from_bf16(odd)), _bits(codecs._fp32_from_bf16(odd)))
    floats = np.frombuffer(raw, dtype=np.uint8)[1 : 1 + 4 * 999].view(np.float32)
    assert codecs.all_finite(floats) == bool(np.isfinite(floats).all())
    quant = rng.integers(-127, 128, 999, dtype=np.int8)
    np.testing.assert_array_equal(
        _bits(codecs.int8_decode(quant, floats[:4], 256)), _bits(codecs._int8_decode(quant, floats[:4], 256))
    )
