"""The outer optimizer equals torch.optim.SGD(lr=0.7, momentum=0.9, nesterov=True), bit for bit.

Each round the server steps exactly as torch does from the same θ (momentum buffer and the
update u = float32(θ_torch − θ) are identical) and keeps θ + u, which is what every worker
holds after applying u; it is θ_torch itself or one ulp from it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from tendril.paramserver.outer import fma32, nesterov
from tests.unit.test_aggregator import close_files


def _exact_fma32(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    # Round the exact rational to the nearest float32 (ties to even) by bracketing.
    guess = np.float32(float(exact))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    best = min(candidates, key=lambda x: (abs(Fraction(float(x)) - exact), int(np.array(x).view(np.uint32)) & 1))
    return np.float32(best)


def test_fma32_rounds_once() -> None:
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(3000) * 10.0 ** rng.integers(-6, 6, 3000)).astype(np.float32)
    c = (rng.standard_normal(3000) * 10.0 ** rng.integers(-6, 6, 3000)).astype(np.float32)
    b = np.float32(0.9)
    got = fma32(a, b, c)
    want = np.array([_exact_fma32(x, b, z) for x, z in zip(a, c, strict=True)], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    # (1 + 2^-12)^2 + 2^-80 lies just above a float32 tie; a float64 sum loses the 2^-80 and
    # a second rounding would then go down to even. Rounded once it goes up.
    a = np.array([1.0 + 2.0**-12], dtype=np.float32)
    c = np.array([2.0**-80], dtype=np.float32)
    naive = np.float32(np.float64(a[0]) * np.float64(a[0]) + np.float64(c[0]))
    once = fma32(a, a[0], c)[0]
    assert once == _exact_fma32(a[0], a[0], c[0]) == np.float32(1.0 + 2.0**-11 + 2.0**-23)
    assert naive != once
    # Many products on or next to float32 midpoints, nudged by tiny addends of both signs.
    m = np.arange(1, 400, dtype=np.float64)
    a = (1.0 + m * 2.0**-12).astype(np.float32)
    c = np.tile(np.array([0.0, 2.0**-80, -(2.0**-80), 2.0**-30], dtype=np.float32), 100)[: a.size]
    got = fma32(a, np.float32(1.0 + 2.0**-12), c)
    exact = [_exact_fma32(x, np.float32(1.0 + 2.0**-12), z) for x, z in zip(a, c, strict=True)]
    np.testing.assert_array_equal(got, np.array(exact, dtype=np.float32))


def _check_step(theta: np.ndarray, new_theta: np.ndarray, update: np.ndarray, param: torch.Tensor) -> None:
    """u is torch's step exactly; θ_new = θ + u is torch's θ up to the rounding of that add; sync torch."""
    torch_theta = param.detach().numpy()
    np.testing.assert_array_equal(update, torch_theta - theta)
    np.testing.assert_array_equal(new_theta, theta + update)
    off = new_theta != torch_theta
    scale = np.maximum(np.abs(theta[off]), np.abs(torch_theta[off]))
    assert np.all(np.abs(new_theta[off] - torch_theta[off]) <= np.spacing(scale))
    assert off.mean() < 0.02
    with torch.no_grad():
        param.copy_(torch.from_numpy(new_theta))  # the next step starts where the workers are


def test_nesterov_matches_torch_over_three_rounds() -> None:
    rng = np.random.default_rng(4)
    theta0 = rng.standard_normal(200_003).astype(np.float32)
    grads = [(rng.standard_normal(theta0.size) * 1e-2).astype(np.float32) for _ in range(3)]
    param = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    optimizer = torch.optim.SGD([param], lr=0.7, momentum=0.9, nesterov=True)
    theta, buf = theta0, None
    for grad in grads:
        param.grad = torch.from_numpy(grad.copy())
        optimizer.step()
        new_theta, buf, update = nesterov(theta, buf, grad, lr=0.7, mu=0.9)
        np.testing.assert_array_equal(buf, optimizer.state[param]["momentum_buffer"].numpy())
        _check_step(theta, new_theta, update, param)
        theta = new_theta


def test_rounds_through_the_accumulator_match_torch(tmp_path: Path) -> None:
    """Three rounds as the server runs them (weighted workers folded in commit order, θ and momentum
    through the checkpoint files) vs torch."""
    rng = np.random.default_rng(5)
    shapes = {"h.0.w": (64, 48), "h.0.b": (48,), "ln.g": (1000,)}
    theta0 = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    save_file(theta0, str(tmp_path / "theta-0.safetensors"))
    params = {n: torch.nn.Parameter(torch.from_numpy(v.copy())) for n, v in theta0.items()}
    optimizer = torch.optim.SGD(list(params.values()), lr=0.7, momentum=0.9, nesterov=True)
    weights = {"w-b": 3.0, "w-a": 1.0, "w-c": 2.5}
    for r in range(3):
        contributions = []
        deltas = {}
        for worker, weight in weights.items():
            delta = {n: (rng.standard_normal(s) * 1e-2).astype(np.float32) for n, s in shapes.items()}
            path = tmp_path / f"{worker}-{r}.safetensors"
            save_file(delta, str(path))
            contributions.append((worker, weight, path))
            deltas[worker] = delta
        close_files(
            tmp_path / f"theta-{r}.safetensors",
            tmp_path / f"momentum-{r}.safetensors" if r else None,
            sorted(contributions),  # committed in worker-id order, as the sum below adds them
            lr=0.7,
            mu=0.9,
            out_theta=tmp_path / f"theta-{r + 1}.safetensors",
            out_momentum=tmp_path / f"momentum-{r + 1}.safetensors",
            out_update=tmp_path / f"update-{r}.safetensors",
        )
        total = np.float32(sum(weights.values()))
        for name, param in params.items():
            acc = np.zeros(shapes[name], dtype=np.float32)
            for worker in sorted(weights):
                acc += np.float32(weights[worker]) * deltas[worker][name]
            param.grad = torch.from_numpy(acc / total)
        before = {n: p.detach().numpy().copy() for n, p in params.items()}
        optimizer.step()
        theta = load_file(str(tmp_path / f"theta-{r + 1}.safetensors"))
        update = load_file(str(tmp_path / f"update-{r}.safetensors"))
        momentum = load_file(str(tmp_path / f"momentum-{r + 1}.safetensors"))
        for name, param in params.items():
            np.testing.assert_array_equal(momentum[name], optimizer.state[param]["momentum_buffer"].numpy())
            _check_step(before[name], theta[name], update[name], param)
