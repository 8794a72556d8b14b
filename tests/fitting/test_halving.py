"""fitting.halving: who survives a rung (a property test), where the rungs fall, and the
halving sweep against the exhaustive one: a survivor's curves are the exhaustive sweep's
(compacting the vmapped batch changes no number), a dropped member's stop at its rung, and
grid.halving = false is today's sweep (same description, same table)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fitting.reports import synthetic_report
from fitting.test_fit import _truth_run, grid
from phenomjax.data import DataConfig, log_spaced_steps
from phenomjax.fitting import fit_run
from phenomjax.fitting.halving import halving_sweep, rung_steps, rungs_of, survivors
from phenomjax.fitting.members import live
from phenomjax.fitting.report import FitReport, Refined, Rung, format_report
from phenomjax.phenom.sweep import describe, read_sweep, sweep
from phenomjax.phenom.train import ModelSection, PhenomConfig, PhenomOptimConfig, TrainSection

scores = st.lists(st.one_of(st.floats(0, 10), st.just(float("inf")), st.just(float("nan"))),
                  min_size=1, max_size=30)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(scores, st.floats(0.01, 1.0))
def test_survivors_are_the_best_share(s, keep):
    kept = survivors(s, keep)
    a = np.where(np.isfinite(s), s, np.inf)
    assert len(kept) == max(1, math.ceil(keep * len(s) - 1e-9))
    assert list(kept) == sorted(set(kept.tolist()))
    dropped = np.setdiff1d(np.arange(len(s)), kept)
    if len(dropped):
        assert a[kept].max() <= a[dropped].min()


def test_rungs_are_evaluation_steps_before_the_end():
    evals = set(log_spaced_steps(1000, 24).tolist())
    r = rung_steps(1000, 24, (0.3, 0.1, 0.1))
    assert len(r) == 2 and r[0] < r[1] < 1000 and set(r) <= evals
    assert r[0] <= 100 and r[1] <= 300
    assert rung_steps(3, 2, (0.1,)) == ()  # no evaluation step below a tenth of 3 steps


def _base(steps=60):
    return PhenomConfig(
        data=DataConfig(K=24, L=8, alpha=1.0, seed=3),
        model=ModelSection(d=4, init_scale=0.1),
        optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
        train=TrainSection(mode="expected", steps=steps, batch=16, num_evals=10),
    )


AXES = {"lr": [3e-3, 1e-2, 3e-2], "w": [1, 2], "seed": [3]}


@pytest.mark.parametrize("compact", [True, False])
def test_halving_sweep_matches_the_exhaustive_one(tmp_path, compact):
    """Rank by final-step loss of the prefix: half survive each rung; their curves equal the
    exhaustive sweep's bit for bit, a dropped member's equal them up to its rung. Without
    compaction a group stops whole or runs on whole (the w = 1 and w = 2 groups here)."""
    base = _base()
    edges = np.array([0, 8, 24])
    full = sweep(base, AXES, out=tmp_path / "full", progress=False)

    def score(b: pd.DataFrame, t: int) -> float:
        return float(b[b["step"] == b["step"].max()]["loss"].mean())

    table = halving_sweep(base, AXES, tmp_path / "half", rungs=(0.2, 0.5), keep=0.5,
                          edges=edges, score=score, compact=compact,
                          progress=False)  # fmt: skip
    assert len(table) == len(full) == 6 and table["member"].tolist() == list(range(6))
    stops = rung_steps(60, 10, (0.2, 0.5))
    rungs = rungs_of("half", table)
    if compact:
        assert [(g.step, g.members, g.dropped) for g in rungs] == [(stops[0], 6, 3),
                                                                   (stops[1], 3, 1)]  # fmt: skip
        assert len(live(table)) == 2
    else:
        assert table.groupby("w")["dropped_at"].nunique().eq(1).all()  # whole groups
        assert set(table["dropped_at"]) <= {-1, *stops}
        assert (table["dropped_at"] < 0).sum() >= 2  # at least the compacted sweep's survivors
    _, a = read_sweep(tmp_path / "full")
    _, b = read_sweep(tmp_path / "half")
    for r in table.itertuples():
        mine = b[b["member"] == r.member].reset_index(drop=True)
        ref = a[a["member"] == r.member]
        if r.dropped_at >= 0:
            ref = ref[ref["step"] <= r.dropped_at]
            assert r.final_step == r.dropped_at
        pd.testing.assert_frame_equal(mine, ref.reset_index(drop=True))
    same = ["final_loss", "diverged", "lr", "w"]
    survived = table[table["dropped_at"] < 0]
    want = full.loc[survived["member"], same].reset_index(drop=True)
    pd.testing.assert_frame_equal(survived[same].reset_index(drop=True), want)


def test_without_halving_the_sweep_is_todays(tmp_path):
    """grid.halving = false runs phenom.sweep.sweep as before: no schedule in the description
    (the cache key of today's sweeps), no dropped_at column."""
    base = _base(steps=20)
    d = describe(base, AXES)
    assert "schedule" not in d and "schedule" in describe(base, AXES, {"halving": {}})
    t = sweep(base, AXES, out=tmp_path / "s", progress=False)
    assert "dropped_at" not in t.columns and rungs_of("s", t) == ()


def test_report_keeps_the_rungs_the_edges_and_the_refinement(tmp_path):
    """report.json round-trips the halving's rungs, the edge flags and the refined optimum;
    the text names each."""
    rep = synthetic_report()
    m = rep.best.member
    ref = Refined(m, "expected", ("lr", "scale", "shift"), (1e-3, 0.1, 1.0), (2e-3, 0.05, 1.2),
                  1.5, 0.7, 0.03, 10)  # fmt: skip
    rep = dataclasses.replace(rep, halving=(Rung("expected", 40, 12, 8),),
                              on_edge=("lr 0.001 is the lowest value swept (0.001, 0.01)",),
                              refined=ref)  # fmt: skip
    rep.save(tmp_path / "report.json")
    back = FitReport.load(tmp_path / "report.json")
    assert back.halving == rep.halving and back.refined == ref and back.on_edge == rep.on_edge
    text = format_report(back)
    assert "expected: step 40: 8 of 12" in text
    assert "best on a grid edge: lr 0.001 is the lowest" in text
    assert "lr 0.001 -> 0.002" in text and "1.500 -> 0.700, gradient norm 0.03" in text


@pytest.mark.slow  # minutes on a loaded 2-core machine (the refinement's compile)
def test_fit_halves_by_default_and_refines(tmp_path):
    """The default path of fit_run: halved sweeps (the rungs in the report, the dropped members
    in members.csv, ranked after the rest), the generating member still found, and the refined
    optimum reported."""
    run = _truth_run(tmp_path / "truth")
    g = grid(lr=(1e-3, 3e-3, 1e-2, 3e-2), refit_seeds=1, halving=True, refine_steps=2)
    rep = fit_run(run, tmp_path / "fit", g, progress=False)
    assert [(r.members, r.dropped) for r in rep.halving] == [(8, 5), (3, 1)]
    members = pd.read_csv(tmp_path / "fit" / "members.csv")
    assert (members["dropped_at"] >= 0).sum() == 6 and len(live(members)) == 2
    assert (members["dropped_at"].to_numpy()[:2] < 0).all()  # the finished ones rank first
    m = rep.best.member
    assert (m.w, m.lr, m.scale) == (2, 1e-2, 0.1) and rep.best.score.rmse < 1e-3
    assert rep.refined is not None and rep.refined.steps == 2 and np.isfinite(rep.refined.grad_norm)
    assert rep.on_edge == ("scale 0.1 is the only value swept (0.1)",)
    assert "halving (members dropped at each rung" in format_report(rep)
