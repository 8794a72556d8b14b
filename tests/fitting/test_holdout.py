"""Held-out prediction (fitting.holdout): the splits, the fixed-shift prediction against a NumPy
reference, and runs made by the phenom model itself, predicted out of sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.cli import main
from phenomjax.data import DataConfig
from phenomjax.errors import ConfigError, DataError
from phenomjax.fitting import fit_run, format_report
from phenomjax.fitting.grid import FitGridConfig, GridSection, OptimizerEntry
from phenomjax.fitting.holdout import predict, split_evals
from phenomjax.fitting.overlay import overlay_data
from phenomjax.fitting.scoring import Reference, ScoreConfig
from phenomjax.phenom.train import (
    ModelSection,
    PhenomConfig,
    PhenomOptimConfig,
    TrainSection,
    train_phenom,
)

TRUTH = {"w": 2, "d": 4, "lr": 1e-2, "scale": 0.1}
GRID = FitGridConfig(
    grid=GridSection(mode=("expected",), w=(1, 2), d=(4,), scale=(0.1,), refit_seeds=1,
                     num_evals=12),
    optimizers=(OptimizerEntry(lr=(3e-3, 1e-2, 3e-2)),),
)  # fmt: skip


def _evals(steps, K):
    s, r = np.meshgrid(steps, np.arange(K), indexing="ij")
    return pd.DataFrame({"step": s.ravel(), "rank": r.ravel(), "presentations": s.ravel(),
                         "loss": 0.5, "accuracy": 0.5})  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=4, max_size=30, unique=True))
def test_steps_split_is_a_partition_in_time(steps):
    ev = _evals(sorted(steps), 3)
    train, test, e, eo, _ = split_evals(ev, "steps", np.array([0, 1, 3]))
    assert len(train) + len(test) == len(ev)
    assert train["step"].max() < test["step"].min()
    n = len(steps)
    assert train["step"].nunique() == (n - 1) // 2 + 1  # the first half, the median included
    assert e.tolist() == eo.tolist() == [0, 1, 3]


def test_bins_split_and_bad_splits():
    ev = _evals([0, 1, 2, 3], 150)
    edges = np.array([0, 5, 10, 100, 150])
    train, test, e, eo, _ = split_evals(ev, "bins", edges)
    assert train["rank"].max() == 99 and test["rank"].min() == 100
    assert e.tolist() == [0, 5, 10, 100] and eo.tolist() == [100, 150]
    with pytest.raises(DataError, match="edge at rank 100"):
        split_evals(ev[ev["rank"] < 50], "bins", np.array([0, 5, 10, 50]))
    with pytest.raises(DataError, match="3 evaluations"):
        split_evals(_evals([0, 1, 2], 3), "steps", edges)
    with pytest.raises(ConfigError, match="holdout"):
        split_evals(ev, "ranks", edges)


def test_predict_reads_the_fit_at_the_fixed_shift():
    """NumPy reference: z = RMSE over the reference points of (log L_fit(n / s) - log L_ref(n))
    / sigma, the fit interpolated linearly in log presentations, no shift search."""
    x = np.logspace(0, 3, 12)
    fx = np.logspace(-1, 4, 20)
    ref_loss = 0.1 + 0.6 / (1 + x / 30)
    fit_loss = 0.1 + 0.6 / (1 + fx / 20)
    table = lambda n, y: pd.DataFrame({"step": np.arange(len(n)), "rank_lo": 0, "rank_hi": 5,  # noqa: E731
                                       "presentations": n, "loss": y, "accuracy": 0.5})  # fmt: skip
    ref = Reference(table(x, ref_loss), {(0, 5): 0.05}, pd.DataFrame(), 1, "test")
    s = 1.7
    got = predict(table(fx, fit_loss), s, ref, ScoreConfig())
    want = np.interp(np.log(x / s), np.log(fx), np.log(fit_loss)) - np.log(ref_loss)
    rmse = np.sqrt(np.mean(want**2))
    assert got[0].n_points == 12
    assert got[0].log_loss_rmse == pytest.approx(rmse, rel=1e-9)
    assert got[0].z == pytest.approx(rmse / 0.05, rel=1e-9)


def _truth(tmp, K, seed):
    cfg = PhenomConfig(
        data=DataConfig(K=K, L=8, alpha=1.0, seed=seed),
        model=ModelSection(w=TRUTH["w"], d=TRUTH["d"], init_scale=TRUTH["scale"]),
        optimizer=PhenomOptimConfig(name="adam", lr=TRUTH["lr"]),
        train=TrainSection(mode="expected", steps=150, batch=16, num_evals=12),
    )
    return train_phenom(cfg, tmp / f"truth-{K}" / f"seed-{seed}", progress=False).path


def test_a_model_made_run_is_predicted_out_of_sample(tmp_path, capsys):
    """Fitted on the first half of its evaluations, the generating setting is found and the
    later half is predicted to within 1e-3 in log loss; the CLI prints the held-out table."""
    run = _truth(tmp_path, 24, 3)
    rep = fit_run(run, tmp_path / "fit", GRID, holdout="steps", progress=False)
    b = rep.best.member
    assert (b.w, b.d) == (TRUTH["w"], TRUTH["d"])  # the grid's point or the refined one by it
    assert (b.lr, b.scale) == (pytest.approx(TRUTH["lr"], rel=1e-3),
                               pytest.approx(TRUTH["scale"], rel=1e-3))  # fmt: skip
    h = rep.holdout
    assert h.split == "steps" and h.out_of_sample and rep.settings.holdout == "steps"
    for p in h.out_of_sample:
        assert p.n_points > 0 and p.log_loss_rmse < 1e-3, p
    assert rep.intervals is None  # one run: no seeds to take an interval over
    assert "held out (steps)" in format_report(rep)
    # the refined optimum is one more member, trained and scored like the grid's
    members = pd.read_csv(tmp_path / "fit" / "members.csv")
    refined = members[members["sweep"] == "refined"]
    assert len(refined) == 1 and (tmp_path / "fit" / "refined" / "sweep.parquet").is_file()
    f = rep.refined
    assert f.total == pytest.approx(float(refined["total"].iloc[0]))
    assert f.start_total == pytest.approx(float(members[members["sweep"] != "refined"]
                                                .iloc[0]["total"]))  # fmt: skip
    assert float(refined["lr"].iloc[0]) == pytest.approx(f.after[0], rel=1e-6)
    assert "scored as a member (refined/): total" in format_report(rep)
    args = ["fit", str(run), "--out", str(tmp_path / "fit"), "--holdout", "steps", "--w", "1,2",
            "--d", "4", "--lr", "3e-3,1e-2,3e-2", "--scale", "0.1", "--refit-seeds", "1",
            "--modes", "expected", "--num-evals", "12", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held out (steps)" in out and "(reused)" in out


@pytest.mark.slow  # a second holdout fit; test_a_model_made_run_is_predicted_out_of_sample stays
def test_rare_bins_predicted_and_seed_intervals(tmp_path):
    """A seed group (2 model-made runs, K = 128): fitted on bins 0-99, the rarer bin is
    predicted within the seed band; every seed alone picks the generating lr and scale."""
    for s in (3, 4):
        _truth(tmp_path, 128, s)
    group = tmp_path / "truth-128"  # a group folder of seed-<s> runs, as `train --seeds` writes
    rep = fit_run(group, tmp_path / "fit", GRID, holdout="bins", progress=False)
    assert rep.run.inputs == (str(group),) and len(rep.run.runs) == 2
    h = rep.holdout
    assert [(p.rank_lo, p.rank_hi) for p in h.out_of_sample] == [(100, 128)]
    assert all(p.z < 2.0 for p in h.out_of_sample)
    assert rep.run.n_seeds == 2 and "seed band over 2 seeds" in rep.run.noise
    iv = rep.intervals
    assert len(iv.per_seed) == 2 and iv.same_setting
    assert iv.lr == (TRUTH["lr"], TRUTH["lr"]) and iv.scale == (0.1, 0.1)
    assert iv.shift[0] <= 1.0 <= iv.shift[1] or iv.shift[0] == pytest.approx(1.0, rel=0.05)
    # compare GROUP FIT: the group's mean and band with the fit; one of its seeds is accepted
    data, label, _ = overlay_data(group, tmp_path / "fit")
    emp = data[data.source == "empirical"]
    assert (emp.n_seeds == 2).all() and (emp.loss_lo <= emp.loss_hi).all() and "2 seeds" in label
    assert overlay_data(group / "seed-4", tmp_path / "fit")[0].loss_lo.isna().all()
