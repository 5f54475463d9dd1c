"""Aggregation: the round state machine, run config, and the fp32 fold of committed pushes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.core import tensorfile
from tendril.core.errors import ErrorKind
from tendril.paramserver.aggregate import Accumulator, close_round, new_payload, payload_layout, write_checkpoint
from tendril.paramserver.errors import ParameterServerError
from tendril.paramserver.rounds import Phase, RoundMachine, RunConfig


def _machine(**config: object) -> RoundMachine:
    values: dict[str, object] = {"expected_workers": 3, "quorum": 2, "round_timeout_seconds": 10.0, "rounds": 2}
    values.update(config)
    return RoundMachine("run", RunConfig.build(**values))  # type: ignore[arg-type]


def _refused(machine: RoundMachine, round: int, worker: str) -> ParameterServerError:
    with pytest.raises(ParameterServerError) as err:
        machine.check_push(round, worker)
    return err.value


def test_round_closes_when_every_expected_worker_committed() -> None:
    machine = _machine()
    machine.commit("a", 1.0, now=100.0)
    machine.commit("b", 1.0, now=101.0)
    assert not machine.close_due(105.0)
    machine.commit("c", 2.0, now=106.0)
    assert machine.close_due(106.0)
    assert machine.begin_close() == [("a", 1.0), ("b", 1.0), ("c", 2.0)]


def test_quorum_closes_after_the_timeout_from_the_first_commit() -> None:
    machine = _machine()
    machine.commit("b", 1.0, now=100.0)
    assert machine.deadline() == 110.0
    assert not machine.close_due(111.0)  # past the timeout but below quorum: keep waiting
    machine.commit("a", 1.0, now=112.0)
    assert machine.close_due(112.0)
    other = _machine()
    other.commit("a", 1.0, now=100.0)
    other.commit("b", 1.0, now=101.0)
    assert not other.close_due(109.9) and other.close_due(110.0)
    no_timeout = _machine(round_timeout_seconds=0.0)
    no_timeout.commit("a", 1.0, now=0.0)
    no_timeout.commit("b", 1.0, now=0.0)
    assert no_timeout.deadline() is None and not no_timeout.close_due(1e9)


def test_pushes_that_must_be_refused() -> None:
    machine = _machine()
    machine.commit("a", 1.0, now=0.0)
    duplicate = _refused(machine, 0, "a")
    assert duplicate.kind is ErrorKind.ALREADY_EXISTS and duplicate.reason == "ALREADY_COMMITTED"
    early = _refused(machine, 1, "b")
    assert early.kind is ErrorKind.FAILED_PRECONDITION and "round 0 is open" in early.message
    machine.commit("b", 1.0, now=0.0)
    machine.begin_close()
    closing = _refused(machine, 0, "c")
    assert closing.reason == "ROUND_CLOSED" and "round 1 is open" in closing.message
    machine.finish_close()
    assert machine.round == 1 and machine.phase is Phase.OPEN and not machine.committed
    late = _refused(machine, 0, "c")
    assert (
        late.kind is ErrorKind.FAILED_PRECONDITION and "round 0 of run run is closed; round 1 is open" in late.message
    )
    machine.commit("a", 1.0, now=0.0)
    machine.begin_close()
    machine.finish_close()
    assert machine.phase is Phase.FINISHED and machine.round == 1
    assert _refused(machine, 2, "a").reason == "RUN_FINISHED"
    assert _refused(_machine(), 0, "").kind is ErrorKind.INVALID_ARGUMENT


def test_run_config_defaults_and_validation() -> None:
    config = RunConfig.build(expected_workers=4)
    assert (config.quorum, config.outer_lr, config.outer_momentum, config.codec) == (1, 0.7, 0.9, "fp32")
    for bad in (
        {"expected_workers": 0},
        {"expected_workers": 2, "quorum": 3},
        {"expected_workers": 2, "outer_momentum": 1.0},
        {"expected_workers": 2, "round_timeout_seconds": -1.0},
        {"expected_workers": 2, "codec": "fp8"},
    ):
        with pytest.raises(ParameterServerError) as err:
            RunConfig.build(**bad)  # type: ignore[arg-type]
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == "BAD_RUN_CONFIG"


SHAPES = {"w": (300, 17), "b": (17,)}
Contribution = tuple[str, float, Path]  # (worker, weight, payload file)


def close_files(
    theta: Path,
    momentum: Path | None,
    contributions: list[Contribution],
    *,
    lr: float,
    mu: float,
    out_theta: Path,
    out_momentum: Path,
    out_update: Path,
    codec: str = "fp32",
) -> None:
    """A round as the server runs it: fold the pushes in this (commit) order, close, save; files in and out."""
    layout = tensorfile.read_layout(theta)
    acc = Accumulator(layout, memoryview(bytearray(4 * layout.numel)))
    for worker, weight, path in contributions:
        payload = memoryview(path.read_bytes())
        acc.fold(worker, weight, payload, payload_layout(payload))
    update_layout, header = new_payload([(t.name, t.shape) for t in layout.tensors], codec)
    update = memoryview(bytearray(update_layout.total_bytes))
    close_round(
        acc=acc,
        theta=theta,
        momentum=momentum,
        lr=lr,
        mu=mu,
        update=update,
        update_layout=update_layout,
        update_header=header,
    )
    out_update.write_bytes(update)
    write_checkpoint(
        acc, theta=theta, update=update, update_layout=update_layout, out_theta=out_theta, out_momentum=out_momentum
    )


def _files(tmp_path: Path, workers: dict[str, float], codec: str = "fp32") -> list[Contribution]:
    rng = np.random.default_rng(11)
    save_file({n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}, str(tmp_path / "theta.st"))
    out = []
    for worker, weight in workers.items():
        path = tmp_path / f"{worker}.st"
        save_file({n: (rng.standard_normal(s) * 1e-3).astype(np.float32) for n, s in SHAPES.items()}, str(path))
        if codec != "fp32":
            tensorfile.convert_file(path, tmp_path / f"{worker}.{codec}", codec, block_size=64)
            path = tmp_path / f"{worker}.{codec}"
        out.append((worker, weight, path))
    return out


def _close(tmp_path: Path, contributions: list[Contribution], tag: str) -> dict[str, Path]:
    close_files(
        tmp_path / "theta.st",
        None,
        contributions,
        lr=0.7,
        mu=0.9,
        out_theta=tmp_path / f"theta-{tag}.st",
        out_momentum=tmp_path / f"momentum-{tag}.st",
        out_update=tmp_path / f"update-{tag}.st",
    )
    return {"update": tmp_path / f"update-{tag}.st", "momentum": tmp_path / f"momentum-{tag}.st"}


def test_fold_is_weighted_fp32_in_commit_order(tmp_path: Path) -> None:
    weights = {"w3": 5.0, "w1": 1.0, "w4": 0.25, "w2": 3.0}
    contributions = _files(tmp_path, weights)
    first = _close(tmp_path, contributions, "a")
    again = _close(tmp_path, contributions, "b")  # the same commits in the same order: the same bits
    for key in ("update", "momentum"):
        assert Path(first[key]).read_bytes() == Path(again[key]).read_bytes()
    momentum = load_file(str(first["momentum"]))  # after the first round the buffer is g itself
    for name in SHAPES:
        acc = np.zeros(SHAPES[name], dtype=np.float32)
        for worker in weights:  # in commit order
            acc += np.float32(weights[worker]) * load_file(str(tmp_path / f"{worker}.st"))[name]
        np.testing.assert_array_equal(momentum[name], acc / np.float32(sum(weights.values())))
    # Another commit order may round the sum differently, in its last bits only.
    reversed_momentum = load_file(str(_close(tmp_path, list(reversed(contributions)), "c")["momentum"]))
    for name in SHAPES:
        np.testing.assert_allclose(reversed_momentum[name], momentum[name], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("codec", ["bf16", "int8"])
def test_fold_decodes_compressed_pushes(tmp_path: Path, codec: str) -> None:
    weights = {"a": 2.0, "b": 1.0}
    contributions = _files(tmp_path, weights, codec)
    momentum = load_file(str(_close(tmp_path, contributions, codec)["momentum"]))
    for name in SHAPES:
        exact = sum(np.float32(w) * load_file(str(tmp_path / f"{k}.st"))[name] for k, w in weights.items()) / 3
        assert np.abs(momentum[name] - exact).max() < 2e-5  # decoded, not raw int8/bf16 bits
    with pytest.raises(ValueError, match="without contributions"):
        _close(tmp_path, [], "none")


@pytest.mark.parametrize("codec", ["bf16", "int8"])
def test_fold_decodes_exactly_as_the_codec(tmp_path: Path, codec: str) -> None:
    """The fold's blockwise decode gives the bits tensorfile.read_values (what workers use) gives."""
    (worker, _, path), *_ = _files(tmp_path, {"a": 1.0}, codec)
    theta = tensorfile.read_layout(tmp_path / "theta.st")
    acc = Accumulator(theta, memoryview(bytearray(4 * theta.numel)))
    payload = memoryview(path.read_bytes())
    acc.fold(worker, 1.0, payload, payload_layout(payload))
    tensorfile.convert_file(path, tmp_path / "decoded.st", "fp32", check_finite=False)
    want = load_file(str(tmp_path / "decoded.st"))
    for spec in theta.tensors:
        np.testing.assert_array_equal(acc.tensor(spec).reshape(spec.shape), want[spec.name])
