"""phenomjax.training.runner.drive_run on a toy model: the rows it writes, the train rows'
learning rates, an early stop, a run cut short by its schedule, and the failure policy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from phenomjax.data import DataConfig
from phenomjax.errors import NonFiniteLossError
from phenomjax.phenom.train import PhenomConfig, TrainSection
from phenomjax.runs import RunDir
from phenomjax.runs.lifecycle import open_run
from phenomjax.training import Evaluation, Schedule, drive_run

K = 4
CFG = PhenomConfig(data=DataConfig(K=K, L=3), train=TrainSection(steps=12, num_evals=3))


def _init() -> dict:
    return {"x": jnp.zeros((), jnp.float32), "step": jnp.zeros((), jnp.int32)}


def _advance(state, n):
    """n steps of the toy: x counts the steps; step s's loss is 1 / (s + 1)."""
    first = int(state["step"])
    losses = np.full(8, np.nan, np.float32)
    losses[:n] = 1.0 / (np.arange(first, first + n) + 1)
    return {"x": state["x"] + n, "step": state["step"] + n}, losses


def _evaluate(state, t: int) -> Evaluation:
    x = float(state["x"])
    return Evaluation(np.full(K, t, np.int64), np.full(K, 1.0 / (x + 1), np.float32),
                      np.zeros(K, np.float32))  # fmt: skip


def _run(out, total: int = 12, **kw) -> RunDir:
    schedule = Schedule(total, 12, (0, 3, 12), max_chunk=8)
    with open_run(out, kind="phenom", cfg=CFG, init=_init, resume=kw.pop("resume", False)) as o:
        if o.complete:
            return o.run
        return drive_run(o, schedule, advance=kw.pop("advance", _advance),
                         evaluate=kw.pop("evaluate", _evaluate),
                         learning_rate=lambda i: 0.1 * (i + 1), progress=False, **kw)  # fmt: skip


def test_rows_checkpoints_and_completion(tmp_path):
    run = _run(tmp_path / "r")
    assert run.manifest()["status"] == "complete"
    ev = run.read_evals()
    assert sorted(ev.step.unique()) == [0, 3, 12] and len(ev) == 3 * K
    np.testing.assert_allclose(ev[ev.step == 12].loss, 1 / 13)
    tr = run.read_train()
    np.testing.assert_array_equal(tr.step, np.arange(1, 13))
    np.testing.assert_allclose(tr.train_loss, 1.0 / np.arange(1, 13), rtol=1e-6)
    np.testing.assert_allclose(tr.learning_rate, 0.1 * np.arange(1, 13), rtol=1e-6)
    assert run.load_checkpoint()[1]["step"] == 12


def test_a_schedule_that_ends_early_leaves_the_run_resumable(tmp_path):
    run = _run(tmp_path / "r", total=5)
    assert run.manifest()["status"] == "running" and run.read_train().step.max() == 5
    resumed = _run(tmp_path / "r", resume=True)
    assert resumed.manifest()["status"] == "complete"
    np.testing.assert_array_equal(resumed.read_train().to_numpy(),
                                  _run(tmp_path / "whole").read_train().to_numpy())  # fmt: skip


def test_the_stop_rule_ends_the_run_complete_after_its_checkpoint(tmp_path):
    run = _run(tmp_path / "r", stop=lambda evals: evals.step.max() >= 3)
    m = run.manifest()
    assert m["status"] == "complete" and m["stopped_early"] and m["stopped_step"] == 3
    assert run.load_checkpoint()[1]["step"] == 3 and run.read_evals().step.max() == 3


def test_a_non_finite_evaluation_fails_the_run_and_keeps_what_was_written(tmp_path):
    def evaluate(state, t):
        ev = _evaluate(state, t)
        return ev if t < 12 else Evaluation(ev.presentations, ev.loss * np.nan, ev.accuracy)

    with pytest.raises(NonFiniteLossError, match="evaluation at step 12"):
        _run(tmp_path / "r", evaluate=evaluate)
    run = RunDir(tmp_path / "r")
    assert run.manifest()["status"] == "failed" and "NonFiniteLossError" in run.manifest()["error"]
    assert sorted(run.read_evals().step.unique()) == [0, 3]


def test_an_interrupt_flushes_and_stays_running(tmp_path):
    def advance(state, n):
        if int(state["step"]) >= 3:
            raise KeyboardInterrupt
        return _advance(state, n)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "r", advance=advance)
    run = RunDir(tmp_path / "r")
    assert run.manifest()["status"] == "running" and run.read_train().step.max() == 3
