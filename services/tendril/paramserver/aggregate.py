"""Closing a round, file to file: fold the committed pushes, take the outer step.

For every tensor, piece by piece (a few MiB at a time, so memory stays at the size of a
piece whatever the model and the number of workers)::

    acc = Σ float32(wᵢ) · Δᵢ        in float32, over workers sorted by id
    g   = acc / float32(Σ wᵢ)
    θ_new, buf, u = nesterov(θ, buf, g)

# NOTE: pushes are spooled to files as they arrive and only folded here, in worker-id order,
# instead of being added to a live accumulator chunk by chunk. Float addition is not
# associative, so a live accumulator would depend on arrival order, and a push that breaks
# off half way would have to be subtracted again (inexactly). Folding committed files in a
# fixed order makes the aggregate bit-identical whatever the timing and whichever pushes
# broke off. The price is disk (one payload per worker) and one fold per round; resident
# memory stays O(piece), far below O(model).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tendril.core import tensorfile
from tendril.core.tensorfile import Layout
from tendril.paramserver.outer import nesterov


@dataclasses.dataclass(frozen=True)
class Contribution:
    """A committed push: its weight and payload file."""

    worker_id: str
    weight: float
    path: Path


@dataclasses.dataclass(frozen=True)
class RoundOutput:
    """Where close_round wrote its results."""

    theta: Path
    momentum: Path
    update: Path
    weight: float
    contributors: int


class _Open:
    """Open payload files with their layouts; closed together."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def open(self, path: Path, flags: int = os.O_RDONLY) -> int:
        fd = os.open(path, flags)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def close_round(
    *,
    theta: Path,
    momentum: Path | None,
    contributions: Sequence[Contribution],
    lr: float,
    mu: float,
    out_theta: Path,
    out_momentum: Path,
    out_update: Path,
) -> RoundOutput:
    """Write θ_new, the momentum buffer and u (all fp32, θ's tensor order); atomically each."""
    if not contributions:
        raise ValueError("a round cannot close without contributions")
    ordered = sorted(contributions, key=lambda c: c.worker_id)
    weight = float(sum(c.weight for c in ordered))
    theta_layout = tensorfile.read_layout(theta)
    shapes = [(t.name, t.shape) for t in theta_layout.tensors]
    out_layout, header = tensorfile.plan_layout(shapes, "fp32")
    layouts = [tensorfile.read_layout(c.path) for c in ordered]
    momentum_layout = tensorfile.read_layout(momentum) if momentum is not None else None
    step = tensorfile.piece_step(theta_layout, *layouts)
    files = _Open()
    try:
        theta_fd = files.open(theta)
        momentum_fd = files.open(momentum) if momentum is not None else -1
        contribution_fds = [files.open(c.path) for c in ordered]
        with (
            tensorfile.atomic_output(out_theta) as tmp_theta,
            tensorfile.atomic_output(out_momentum) as tmp_momentum,
            tensorfile.atomic_output(out_update) as tmp_update,
        ):
            outs = []
            for path in (tmp_theta, tmp_momentum, tmp_update):
                outs.append(tensorfile.create_payload(path, out_layout, header))
                files.fds.append(outs[-1])
            _fold(
                theta_layout,
                theta_fd,
                momentum_layout,
                momentum_fd,
                [
                    (np.float32(c.weight), fd, layout)
                    for c, fd, layout in zip(ordered, contribution_fds, layouts, strict=True)
                ],
                np.float32(weight),
                out_layout,
                outs,
                step,
                lr=lr,
                mu=mu,
            )
            for fd in outs:
                os.fsync(fd)
    finally:
        files.close()
    return RoundOutput(out_theta, out_momentum, out_update, weight, len(ordered))


def _fold(
    theta_layout: Layout,
    theta_fd: int,
    momentum_layout: Layout | None,
    momentum_fd: int,
    contributions: list[tuple[np.float32, int, Layout]],
    weight: np.float32,
    out_layout: Layout,
    outs: list[int],
    step: int,
    *,
    lr: float,
    mu: float,
) -> None:
    by_name = [{t.name: t for t in layout.tensors} for _, _, layout in contributions]
    momentum_specs = {t.name: t for t in momentum_layout.tensors} if momentum_layout else {}
    for theta_spec, out_spec in zip(theta_layout.tensors, out_layout.tensors, strict=True):
        for a, b in tensorfile.pieces(theta_spec.numel, step):
            acc = np.zeros(b - a, dtype=np.float32)
            for (w, fd, layout), specs in zip(contributions, by_name, strict=True):
                acc += w * tensorfile.read_values(fd, layout, specs[theta_spec.name], a, b)
            grad = acc / weight
            theta_values = tensorfile.read_values(theta_fd, theta_layout, theta_spec, a, b)
            buf = None
            if momentum_layout is not None:
                buf = tensorfile.read_values(momentum_fd, momentum_layout, momentum_specs[theta_spec.name], a, b)
            new_theta, new_buf, update = nesterov(theta_values, buf, grad, lr=lr, mu=mu)
            for fd, values in zip(outs, (new_theta, new_buf, update), strict=True):
                tensorfile.write_values(fd, out_layout, out_spec, a, values)
