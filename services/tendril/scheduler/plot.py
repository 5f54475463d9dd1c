"""loss.png: the loss of every round — training (mean and per worker) and held-out — (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_loss(lines: Sequence[dict[str, Any]], path: Path, *, title: str = "DiLoCo training loss") -> None:
    """Write a PNG with the mean training loss per round (bold), each worker's training loss per
    round and, for the rounds that were evaluated, the held-out loss (``eval_loss``, dashed)."""
    import matplotlib

    matplotlib.use("Agg")  # NOTE: no display needed; must be chosen before pyplot is imported
    import matplotlib.pyplot as plt

    rounds = [line["round"] for line in lines]
    workers = sorted({w for line in lines for w in line.get("loss", {})})
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for worker in workers:
        points = [(line["round"], line["loss"][worker]) for line in lines if worker in line.get("loss", {})]
        ax.plot([r for r, _ in points], [v for _, v in points], marker="o", linewidth=1, alpha=0.7, label=worker)
    means = [float("nan") if line.get("loss_mean") is None else float(line["loss_mean"]) for line in lines]
    ax.plot(rounds, means, color="black", marker="s", linewidth=2.5, label="training, mean (sample-weighted)")
    held_out = [(line["round"], float(line["eval_loss"])) for line in lines if line.get("eval_loss") is not None]
    if held_out:
        ax.plot(
            [r for r, _ in held_out],
            [v for _, v in held_out],
            color="tab:red",
            marker="D",
            linewidth=2.5,
            linestyle="--",
            label="held-out (θ after the round)",
        )
    ax.set_xlabel("DiLoCo round (outer step)")
    ax.set_ylabel("loss (cross-entropy)")
    ax.set_title(title)
    ax.set_xticks(rounds)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
