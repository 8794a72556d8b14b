"""capacity/plateau.py: the phenomenological rungs' convergence rule."""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from phenomjax.capacity import PlateauSection, converged_step, plateaued
from phenomjax.data import log_spaced_steps

LN2 = float(np.log(2.0))
RULE = PlateauSection(window=4, rel_tol=0.01, min_steps=200)


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(2000, 50000),
    floor=st.floats(0.0, 0.68),
    tau_frac=st.floats(1e-3, 0.02),
    n=st.integers(40, 100),
)
def test_a_curve_that_flattens_is_detected(total, floor, tau_frac, n):
    steps = log_spaced_steps(total, n)
    loss = floor + (LN2 + 0.001 - floor) * np.exp(-steps / (tau_frac * total))
    assert np.all(np.diff(loss) <= 0)  # monotone
    assert plateaued(steps, loss, RULE)
    first = converged_step(steps, loss, RULE)
    assert first is not None and first >= RULE.min_steps


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(2000, 50000),
    gain=st.floats(0.02, 0.69),
    n=st.integers(40, 100),
    shape=st.sampled_from(["log", "linear"]),
)
def test_a_steadily_falling_curve_is_not(total, gain, n, shape):
    steps = log_spaced_steps(total, n)
    frac = np.log1p(steps) / np.log1p(total) if shape == "log" else steps / total
    loss = LN2 - gain * frac  # gains a steady share per log-step (or per step)
    assert not plateaued(steps, loss, RULE)
    assert converged_step(steps, loss, RULE) is None


def test_the_initial_plateau_near_ln2_is_not_convergence():
    steps = log_spaced_steps(5000, 60)
    flat_above = np.full(len(steps), LN2 + 1e-4)  # no gain yet
    assert converged_step(steps, flat_above, RULE) is None
    early = steps[steps < RULE.min_steps]
    assert not plateaued(early, np.full(len(early), 0.5), RULE)  # flat but before min_steps


def test_min_presentations_tells_the_initial_plateau_from_the_final_one():
    rule = dataclasses.replace(RULE, min_presentations=100.0)
    steps = log_spaced_steps(5000, 60)
    loss = np.full(len(steps), LN2 - 0.002)
    presentations = steps * 128 / 4096  # batch 128, K = 4096
    assert plateaued(steps, loss, RULE)
    first = converged_step(steps, loss, rule, presentations)
    assert first == steps[np.argmax(presentations >= 100)]
    assert not plateaued(
        steps[steps < first], loss[steps < first], rule, presentations[steps < first]
    )


def test_the_rule_as_train_stop_hook_ends_the_run_as_complete(tmp_path):
    from phenomjax.capacity import stop_rule
    from phenomjax.data import DataConfig
    from phenomjax.transformer.model import GPTConfig
    from phenomjax.transformer.train import LoopConfig, TrainConfig, train

    cfg = TrainConfig(
        data=DataConfig(K=8, L=8, alpha=0.0),
        model=GPTConfig(n_layer=1, n_head=1, head_dim=4),
        train=LoopConfig(steps=200, batch=8, num_evals=20, max_chunk=50, per_position=False),
    )
    rule = PlateauSection(window=2, rel_tol=1e3, min_steps=5)  # any gain below ln 2 stops it
    run = train(cfg, tmp_path / "r", progress=False, stop=stop_rule(rule))
    m = run.manifest()
    ev = run.read_evals()
    assert m["status"] == "complete" and m["stopped_early"] is True
    assert m["stopped_step"] == ev["step"].max() < 200
    steps = np.sort(ev["step"].unique())
    loss = ev.groupby("step")["loss"].mean().to_numpy()
    assert plateaued(steps, loss, rule) and not plateaued(steps[:-1], loss[:-1], rule)
