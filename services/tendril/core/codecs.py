"""Wire codecs for tensor values: fp32 (identity), bf16 and int8 blockwise absmax.

Everything here is numpy on flat float32 arrays, so services never need torch. Decoding
always gives float32 (accumulation is always fp32).

* bf16: the upper 16 bits of an fp32, rounded to nearest, ties to even (what
  ``torch.Tensor.to(torch.bfloat16)`` does); NaN stays a (quiet) NaN.
* int8: the flat tensor is cut into blocks of ``block_size`` values (the last one may be
  shorter); each block stores one fp32 scale = absmax / 127 and its values as
  round(x / scale) in [-127, 127]. The error of a value is at most scale / 2.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CODECS = ("fp32", "bf16", "int8")
DEFAULT_BLOCK_SIZE = 256
MAX_BLOCK_SIZE = 1 << 20
INT8_MAX = 127

F32 = npt.NDArray[np.float32]


class CodecError(ValueError):
    """A codec was asked for something it cannot do (unknown name, non-finite values, ...)."""


def check_codec(codec: str) -> str:
    if codec not in CODECS:
        raise CodecError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
    return codec


def check_block_size(block_size: int) -> int:
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise CodecError(f"int8 block size {block_size} is out of range 1..{MAX_BLOCK_SIZE}")
    return block_size


# -- bf16 -------------------------------------------------------------------------------


def bf16_from_fp32(values: F32) -> npt.NDArray[np.uint16]:
    """fp32 -> bf16 bit patterns (uint16), round to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds to nearest and breaks ties to even; a
    # carry into the exponent is right (it rounds up to the next binade or to inf).
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    nan = np.isnan(values)
    if nan.any():
        # Rounding could carry a NaN's payload into inf; keep it a quiet NaN instead.
        rounded[nan] = (bits[nan] >> np.uint32(16)) | np.uint32(0x0040)
    return rounded.astype(np.uint16)


def fp32_from_bf16(bits: npt.NDArray[np.uint16]) -> F32:
    """bf16 bit patterns -> fp32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


# -- int8 blockwise absmax ------------------------------------------------------------------


def int8_scale_count(numel: int, block_size: int) -> int:
    """Number of blocks (and so of fp32 scales) of a tensor of ``numel`` values."""
    return -(-numel // block_size)


def int8_encode(values: F32, block_size: int) -> tuple[npt.NDArray[np.int8], F32]:
    """Flat fp32 -> (int8 values, fp32 scale per block). Values must be finite."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if not np.isfinite(flat).all():
        raise CodecError("int8 cannot encode NaN or Inf values")
    blocks = int8_scale_count(flat.size, block_size)
    padded = flat
    if blocks * block_size != flat.size:
        padded = np.zeros(blocks * block_size, dtype=np.float32)
        padded[: flat.size] = flat
    grid = padded.reshape(blocks, block_size)
    absmax = np.abs(grid).max(axis=1) if blocks else np.zeros(0, dtype=np.float32)
    scales = (absmax / np.float32(INT8_MAX)).astype(np.float32)
    # An all-zero block has scale 0; divide by 1 there so its values stay 0.
    safe = np.where(scales > 0, scales, np.float32(1.0))
    quant = np.rint(grid / safe[:, None])
    np.clip(quant, -INT8_MAX, INT8_MAX, out=quant)
    return quant.astype(np.int8).reshape(-1)[: flat.size], scales


def int8_decode(quant: npt.NDArray[np.int8], scales: F32, block_size: int) -> F32:
    """(int8 values, fp32 scale per block) -> flat fp32."""
    flat = np.asarray(quant, dtype=np.int8).reshape(-1)
    expanded = np.repeat(np.asarray(scales, dtype=np.float32), block_size)[: flat.size]
    return (flat.astype(np.float32) * expanded).astype(np.float32)
