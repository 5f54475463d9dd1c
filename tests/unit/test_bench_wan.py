"""The bench's WAN section without a lab: the grid it runs, the figures' names, baselines and
targets, the baseline's steps and the Markdown table, from made-up run results."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bench import wan
from bench.__main__ import ON_REQUEST, SECTIONS
from tendril.lab.train import job_text
from tendril.scheduler.demo import MODELS


def _run(utilization: float, loss: float, sent: float, samples: int = 480) -> dict[str, Any]:
    return {
        "rounds": 20,
        "utilization": utilization,
        "sync_share": 0.3,
        "waiting_share": 0.05,
        "held_out_loss": loss,
        "held_out_first": 7.5,
        "bytes_up_per_worker": sent,
        "bytes_down_per_worker": sent,
        "samples": samples,
        "step_seconds": 0.05,
        "round_compute_seconds": 0.2,
        "round_sync_seconds": 0.2,
        "load_average": 5.0,
        "seconds": 40.0,
    }


DP = {
    "utilization": 0.4,
    "held_out_loss": 6.0,
    "bytes_up_per_worker": 100e6,
    "ring_bytes_per_worker": 98e6,
    "all_reduce_seconds": 8.0,
    "step_seconds": 0.05,
    "samples": 480,
    "steps": 80,
    "seconds": 30.0,
}


def test_the_wan_section_runs_only_when_named() -> None:
    assert "wan" in ON_REQUEST and "wan" not in SECTIONS


def test_the_grid_takes_any_mode_by_name_and_adds_the_sparse_codec() -> None:
    grid = wan.Grid(modes=("blocking", "streaming"), codecs=("fp32",), rates=(100.0, 1000.0))
    assert grid.runs() == [
        (100.0, "blocking", "fp32"),
        (100.0, "streaming", "fp32"),
        (100.0, "blocking", "sparse"),
        (1000.0, "blocking", "fp32"),
        (1000.0, "streaming", "fp32"),
        (1000.0, "blocking", "sparse"),
    ]
    assert wan.rate_name(100.0) == "100 Mbit/s" and wan.rate_name(1000.0) == "1 Gbit/s"
    assert wan.rate_name(2500.0) == "2500 Mbit/s"


def test_the_baseline_trains_as_many_samples_as_the_diloco_runs() -> None:
    grid = wan.Grid(workers=3, batch_size=2, rounds=20, inner_steps=4)
    runs = [_run(0.5, 6.0, 1e6, samples) for samples in (450, 480, 510)] + [{"error": "x"}]
    assert wan.baseline_steps(grid, runs) == 80  # 480 / (2 × 3)
    assert wan.baseline_steps(grid, [{"error": "x"}]) == 80  # rounds × inner steps


def test_figures_carry_mode_codec_rate_baseline_and_the_issues_goals() -> None:
    grid = wan.Grid(modes=("blocking", "overlapped"), codecs=("fp32", "int4"), rates=(100.0,))
    results = {
        (100.0, "data-parallel", "fp32"): DP,
        (100.0, "blocking", "fp32"): _run(0.55, 6.00, 20e6),
        (100.0, "blocking", "int4"): _run(0.70, 6.05, 2.6e6),
        (100.0, "overlapped", "fp32"): _run(0.96, 6.02, 20e6),
        (100.0, "overlapped", "int4"): _run(0.97, 6.30, 2.6e6),
        (100.0, "blocking", "sparse"): _run(0.80, 6.20, 0.09e6),
    }
    got = {f.name: f for f in wan.figures(grid, results)}
    util = got["WAN overlapped fp32 100 Mbit/s: compute utilization"]
    assert util.value == 0.96 and util.baseline == 0.4 and "data-parallel" in util.baseline_name
    assert util.ok is True  # ≥ 0.95 where blocking fp32 is ≤ 0.60
    assert got["WAN blocking fp32 100 Mbit/s: compute utilization"].ok is None
    # int4 against fp32 of its own mode: 6.05 ≤ 1.02 × 6.00, 6.30 > 1.02 × 6.02
    assert got["WAN blocking int4 100 Mbit/s: held-out loss after 20 rounds"].ok is True
    assert got["WAN overlapped int4 100 Mbit/s: held-out loss after 20 rounds"].ok is False
    # sparse: 100 MB / 0.09 MB ≥ 1000×, but 6.20 > 1.02 × 6.00 (blocking fp32)
    ratio = got["WAN blocking sparse 100 Mbit/s: data-parallel bytes / these bytes"]
    assert ratio.value == pytest.approx(1111.1, abs=0.1) and ratio.ok is True
    assert got["WAN blocking sparse 100 Mbit/s: held-out loss after 20 rounds"].ok is False
    sent = got["WAN blocking int4 100 Mbit/s: bytes sent per worker per run"]
    assert sent.value == 2.6e6 and sent.baseline == 100e6 and sent.unit == "bytes"
    assert got["WAN data-parallel fp32 100 Mbit/s: bytes sent per worker per run"].value == 100e6


def test_a_failed_run_is_a_line_that_says_so_and_the_table_marks_it() -> None:
    grid = wan.Grid(modes=("blocking",), codecs=("fp32",), rates=(1000.0,), sparse_modes=())
    results: dict[tuple[float, str, str], dict[str, Any]] = {
        (1000.0, "data-parallel", "fp32"): DP,
        (1000.0, "blocking", "fp32"): {"error": "scheduler exit 1"},
    }
    got = wan.figures(grid, results)
    failed = [f for f in got if f.value is None]
    assert [f.name for f in failed] == ["WAN blocking fp32 1 Gbit/s: run"]
    assert "scheduler exit 1" in failed[0].note
    table = wan.grid_table(grid, results)
    assert table[2].startswith("| 1 Gbit/s | data-parallel | fp32 | 0.400 | 6.000 | 100.000 MB | 1× |")
    assert table[3] == "| 1 Gbit/s | blocking | fp32 | failed | | | | | |"


def test_a_wider_model_replaces_the_demos_in_the_labs_job_toml(tmp_path: Path) -> None:
    grid = wan.Grid(width=192, layers=4)
    config = wan.model_config(grid)
    assert config == {"model_type": "gpt2", "n_layer": 4, "n_head": 3, "n_embd": 192}
    assert wan.model_config(wan.Grid(width=0)) == MODELS["gpt2"]
    settings = wan.demo_settings(tmp_path, grid, "overlapped", "int4")
    text = job_text(
        settings, listen="198.18.0.3:1", gateway="198.18.0.1:1", data_node="198.18.0.2:1", model_config=config
    )
    job = tomllib.loads(text)
    assert job["training"]["model"] == {"task": "causal-lm", "config": config}
    assert job["training"]["sync"] == "overlapped" and job["training"]["codec"] == "int4"
    assert job["training"]["inner"]["batch_size"] == grid.batch_size
    plain = tomllib.loads(job_text(settings, listen="a:1", gateway="b:1", data_node="c:1"))
    assert plain["training"]["model"]["config"] == MODELS["gpt2"]


def test_every_dense_run_takes_the_grids_outer_momentum_and_sparse_its_own(tmp_path: Path) -> None:
    def training(grid: wan.Grid, mode: str, codec: str) -> dict[str, Any]:
        settings = wan.demo_settings(tmp_path, grid, mode, codec)
        return tomllib.loads(job_text(settings, listen="a:1", gateway="b:1", data_node="c:1"))["training"]

    grid = wan.Grid()
    for mode in ("blocking", "overlapped", "streaming"):
        assert training(grid, mode, "fp32")["outer_momentum"] == wan.DEFAULT_OUTER_MOMENTUM == 0.5
    sparse = training(grid, "blocking", "sparse")
    assert (sparse["outer_momentum"], sparse["outer_lr"]) == (0.0, 1.0)
    # None: the job's own default for its sync (the key is left out)
    assert "outer_momentum" not in training(wan.Grid(outer_momentum=None), "blocking", "fp32")


def test_repeats_give_the_median_of_the_finished_runs_and_list_each() -> None:
    runs = [_run(0.90, 5.6, 1e6, samples=1700), {"error": "lab failed"}, _run(0.96, 5.2, 1e6, samples=1800)]
    runs.append(_run(0.93, 5.4, 1e6, samples=1760))
    got = wan.combine(runs)
    assert got["held_out_loss"] == 5.4 and got["utilization"] == 0.93 and got["samples"] == 1760
    assert got["repeats"] == {"held_out_loss": [5.6, 5.2, 5.4], "utilization": [0.90, 0.96, 0.93], "failed": 1}
    assert wan.combine([runs[1]]) == runs[1] and wan.combine([runs[1], runs[1]]) == runs[1]
    assert wan.combine([runs[0]]) == runs[0]  # one run: as it is
    results = {(100.0, "blocking", "fp32"): got}
    grid = wan.Grid(modes=("blocking",), codecs=("fp32",), rates=(100.0,), sparse_modes=(), baseline=False)
    notes = {f.name: f.note for f in wan.figures(grid, results)}
    assert (
        "median of 3 runs (1 failed): 5.600, 5.200, 5.400"
        in notes["WAN blocking fp32 100 Mbit/s: held-out loss after 20 rounds"]
    )
    assert (
        "median of 3 runs (1 failed): 0.900, 0.960, 0.930" in notes["WAN blocking fp32 100 Mbit/s: compute utilization"]
    )


def test_the_data_sets_slices_hold_whole_batches_of_the_grid(tmp_path: Path) -> None:
    from tendril.scheduler.demo import prepare_args

    def per_slice(grid: wan.Grid) -> int:
        settings = wan.demo_settings(tmp_path, grid, "blocking", "fp32")
        args = prepare_args(settings, tmp_path / "corpus.jsonl", tmp_path / "data")
        return int(args[args.index("--sequences-per-slice") + 1])

    assert per_slice(wan.Grid()) == wan.DEFAULT_SLICE_BATCHES * wan.DEFAULT_BATCH_SIZE == 12
    assert per_slice(wan.Grid(slice_batches=3, batch_size=4)) == 12
    assert per_slice(wan.Grid(slice_batches=1, batch_size=5)) == 5
    assert wan.Grid().repeats == wan.DEFAULT_REPEATS == 3


def test_the_parameter_server_gets_a_host_of_its_own_and_the_run_says_where_each_job_ran(tmp_path: Path) -> None:
    from tendril.scheduler.state import RunStateStore, SavedMember

    assert wan.Grid().paramserver_host
    assert wan.placement(tmp_path) == {}  # no run, no state file
    store = RunStateStore.open(tmp_path)
    for lease, worker, role in [
        ("l1", "worker-1", "train"),
        ("l0", "worker-0", "train"),
        ("l2", "paramserver", "parameter_server"),
        ("l3", "paramserver", "eval"),
    ]:
        store.add_member(SavedMember(lease, worker, role, f"job-{lease}", "a:1", "a:2", ""))
    store.end_members(["l1"])  # an ended member still ran there
    store.close()
    assert wan.placement(tmp_path) == {
        "eval": ["paramserver"],
        "parameter_server": ["paramserver"],
        "train": ["worker-0", "worker-1"],
    }
