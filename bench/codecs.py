"""Bytes, error and speed of the bf16, int8, int4 and sparse codecs against fp32, on a pseudo-gradient-like payload.

The payload mimics a DiLoCo pseudo-gradient: 10 M values (40 MiB fp32) in tensors whose
scales differ by orders of magnitude, with heavy tails (Student t, 3 degrees of freedom).
Each codec runs through the real code path (``tensorfile.convert_file`` to encode, and back
to fp32 to decode); errors are measured on the decoded values, throughput in fp32 bytes per
second of each pass (file to file, one thread; the fastest of PASSES: one pass of 40 MiB takes
10-30 ms, and a single one moves with whatever else the machine is doing).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.common import MIB, Figure

PASSES = 3

SHAPES = {"wte": (8192, 768), "h.0.attn.c_attn.w": (768, 2304), "h.0.mlp.c_fc.w": (768, 3072), "ln_f.g": (768,)}
SCALES = {"wte": 1e-4, "h.0.attn.c_attn.w": 3e-3, "h.0.mlp.c_fc.w": 1e-2, "ln_f.g": 1e-1}
# (codec, target, the fp32/codec byte ratio that meets it): int8/int4 add 4 bytes per 256 values.
# sparse keeps 64 of each 4096 values (2 bytes of index + 2 bits each, 8 bytes of scales per chunk);
# its error is mostly what top-k leaves out, which the worker's accumulator sends later.
CODECS = (
    ("bf16", "2× smaller", 1.99),
    ("int8", "≈ 4× smaller", 3.8),
    ("int4", "≈ 8× smaller", 7.5),
    ("sparse", "≥ 100× smaller", 100.0),
)


def measure(workdir: Path) -> list[Figure]:
    from safetensors.numpy import load_file, save_file

    from tendril.core import tensorfile

    rng = np.random.default_rng(0)
    delta = {n: (rng.standard_t(3, size=s) * SCALES[n]).astype(np.float32) for n, s in SHAPES.items()}
    source = workdir / "codec-delta.safetensors"
    save_file(delta, str(source))
    fp32_bytes = source.stat().st_size
    figures = []
    try:
        for codec, ratio_target, ratio_ok in CODECS:
            encoded, decoded = workdir / f"codec.{codec}", workdir / f"codec.{codec}.fp32"
            encode_s = decode_s = float("inf")
            for _ in range(PASSES):
                start = time.perf_counter()
                tensorfile.convert_file(source, encoded, codec)
                encode_s = min(encode_s, time.perf_counter() - start)
                start = time.perf_counter()
                tensorfile.convert_file(encoded, decoded, "fp32")
                decode_s = min(decode_s, time.perf_counter() - start)
            back = load_file(str(decoded))
            max_abs = max(float(np.abs(back[n] - v).max()) for n, v in delta.items())
            # Relative to each tensor's largest value: what a blockwise/absmax codec promises.
            max_rel_absmax = max(float(np.abs(back[n] - v).max() / np.abs(v).max()) for n, v in delta.items())
            err = np.concatenate([(back[n] - v).ravel() for n, v in delta.items()])
            ref = np.concatenate([v.ravel() for v in delta.values()])
            rms_rel = float(np.sqrt(np.mean(err.astype(np.float64) ** 2) / np.mean(ref.astype(np.float64) ** 2)))
            size = encoded.stat().st_size
            figures.append(
                Figure(
                    f"{codec} payload, {fp32_bytes / MIB:.0f} MiB pseudo-gradient",
                    size,
                    "bytes",
                    baseline=fp32_bytes,
                    baseline_name="fp32 payload",
                    target=ratio_target,
                    ok=fp32_bytes / size >= ratio_ok,
                    note=f"{fp32_bytes / size:.2f}× smaller; max |err| {max_abs:.3g} "
                    f"({max_rel_absmax:.2e} of a tensor's absmax); rms err {rms_rel:.2e} of rms; "
                    f"encode {fp32_bytes / encode_s / 1e6:.0f} MB/s, decode {fp32_bytes / decode_s / 1e6:.0f} MB/s",
                    details={
                        "ratio": round(fp32_bytes / size, 3),
                        "max_abs_error": max_abs,
                        "max_error_over_absmax": max_rel_absmax,
                        "rms_error_over_rms": rms_rel,
                        "encode_seconds": round(encode_s, 3),
                        "decode_seconds": round(decode_s, 3),
                        "encode_mb_per_second": round(fp32_bytes / encode_s / 1e6, 1),
                        "decode_mb_per_second": round(fp32_bytes / decode_s / 1e6, 1),
                        "block_size": {"int8": 256, "int4": 256, "sparse": 4096}.get(codec),
                    },
                )
            )
            encoded.unlink()
            decoded.unlink()
    finally:
        source.unlink(missing_ok=True)
    return figures
