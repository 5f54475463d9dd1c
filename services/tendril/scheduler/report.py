"""The human-readable summary of a run: a table of rounds from metrics.jsonl."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Held-out figures shown when some round has them: (metrics.jsonl key, header, digits).
EVAL_COLUMNS = (("eval_perplexity", "eval ppl", 2), ("eval_accuracy", "eval acc", 3))


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(lines: Sequence[dict[str, Any]]) -> str:
    """One row per round: workers, mean training loss, held-out loss (``eval loss``, ``-`` for a
    round that was not evaluated) and perplexity or accuracy, per-worker loss, samples, traffic,
    times (``wait s``: last − first arrival at the sync point)."""
    per_worker = [" ".join(f"{w}={v:.3f}" for w, v in line.get("loss", {}).items()) for line in lines]
    width = max([len("loss per worker"), *map(len, per_worker)])
    extra = [(key, head, digits) for key, head, digits in EVAL_COLUMNS if any(key in line for line in lines)]
    head = (
        f"{'round':>5}  {'workers':>7}  {'loss':>6}  {'eval loss':>9}  "
        + "".join(f"{h:>9}  " for _, h, _ in extra)
        + f"{'loss per worker':<{width}}  {'samples':>7}  "
        f"{'MB up':>6}  {'MB down':>7}  {'compute s':>9}  {'comm s':>6}  {'wait s':>6}  {'wall s':>6}"
    )
    rows = [head, "-" * len(head)]
    for line, per in zip(lines, per_worker, strict=True):
        rows.append(
            f"{line['round']:>5}  {len(line.get('workers', [])):>7}  {_num(line.get('loss_mean'), 3):>6}  "
            f"{_num(line.get('eval_loss'), 3):>9}  "
            + "".join(f"{_num(line.get(key), digits):>9}  " for key, _, digits in extra)
            + f"{per:<{width}}  {line.get('samples', 0):>7}  {line.get('bytes_up', 0) / 1e6:>6.2f}  "
            f"{line.get('bytes_down', 0) / 1e6:>7.2f}  {_num(line.get('compute_seconds'), 1):>9}  "
            f"{_num(line.get('communication_seconds'), 1):>6}  {_num(line.get('sync_wait_seconds'), 2):>6}  "
            f"{_num(line.get('wall_seconds'), 1):>6}"
        )
    return "\n".join(rows)
