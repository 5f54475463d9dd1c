"""loss.png: the loss of every round, mean and per worker (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_loss(lines: Sequence[dict[str, Any]], path: Path, *, title: str = "DiLoCo training loss") -> None:
    """Write a PNG with the mean loss per round (bold) and each worker's loss per round."""
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
    ax.plot(rounds, means, color="black", marker="s", linewidth=2.5, label="mean (sample-weighted)")
    ax.set_xlabel("DiLoCo round (outer step)")
    ax.set_ylabel("training loss (cross-entropy, nats/token)")
    ax.set_title(title)
    ax.set_xticks(rounds)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
