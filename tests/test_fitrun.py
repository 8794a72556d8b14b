"""`phenomjax fit`: scoring against a NumPy reference, identifiability of a phenom-generated run,
legacy logs (fresh bits), reuse of complete sweeps, CLI errors that name the path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from fixtures.legacy_logs import write_legacy_log
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.cli import main
from phenomjax.data import DataConfig
from phenomjax.phenom.fit import fit_run, format_report, grid_config
from phenomjax.phenom.scoring import ScoreConfig, score_curves
from phenomjax.phenom.train import (
    FitConfig,
    ModelSection,
    PhenomOptimConfig,
    TrainSection,
    fit_phenom,
)
from phenomjax.runs import RunDir

TRUTH = {"w": 2, "d": 4, "lr": 1e-2, "scale": 0.1}
GRID = {"ws": (1, 2), "ds": (4,), "lrs": (3e-3, 1e-2, 3e-2), "scales": (0.1,)}


def _curve_table(x, loss, acc, lo=0, hi=5):
    n = len(x)
    return pd.DataFrame(
        {"step": np.arange(n), "rank_lo": lo, "rank_hi": hi, "presentations": x, "loss": loss,
         "accuracy": acc}
    )  # fmt: skip


def _naive_score(ex, ey, fx, fy, s, ea=None, fa=None):
    """Loop reference: RMSE of log-loss (and of accuracy, when given) at the empirical points
    inside the shifted fit range, the model read at n / s; (loss rmse, accuracy rmse, n)."""
    err, aerr = [], []
    for i, (x, y) in enumerate(zip(ex, ey, strict=True)):
        q = x / s
        if fx.min() <= q <= fx.max():
            # linear in log-presentations, by hand
            j = np.searchsorted(fx, q, side="right") - 1
            j = min(j, len(fx) - 2)
            t = (np.log(q) - np.log(fx[j])) / (np.log(fx[j + 1]) - np.log(fx[j]))
            pred = (1 - t) * np.log(fy[j]) + t * np.log(fy[j + 1])
            err.append(pred - np.log(y))
            if ea is not None:
                aerr.append((1 - t) * fa[j] + t * fa[j + 1] - ea[i])
    n = len(err)
    if n == 0:
        return np.inf, np.inf, 0
    acc = np.sqrt(np.mean(np.square(aerr))) if aerr else np.nan
    return np.sqrt(np.mean(np.square(err))), acc, n


_POINT = st.tuples(st.floats(0.05, 0.7), st.floats(0.0, 1.0))  # (loss, accuracy)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(_POINT, min_size=4, max_size=9),
    st.lists(_POINT, min_size=4, max_size=9),
    st.floats(0.05, 1.0),
    st.sampled_from([0.0, 0.5, 0.9]),
)
def test_score_matches_naive_reference(emp_pts, fit_pts, logs, min_overlap):
    (ey, ea), (fy, fa) = (np.asarray(list(zip(*p, strict=True))) for p in (emp_pts, fit_pts))
    ex = np.logspace(0, 3, len(ey))
    fx = np.logspace(-0.5, 3.5, len(fy))
    emp, fit = _curve_table(ex, ey, ea), _curve_table(fx, fy, fa)
    got = score_curves(emp, fit, ScoreConfig(shift=False, min_overlap=0.0))
    want, want_acc, n = _naive_score(ex, ey, fx, fy, 1.0, ea, fa)
    assert got["n_points"] == n and got["score"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert got["accuracy_rmse"] == pytest.approx(want_acc, rel=1e-9, abs=1e-12)
    # the shift search on a grid {1/s, 1, s}: the exact minimiser among the factors that keep
    # min_overlap of the points matched at 1
    s = float(np.exp(logs))
    best = score_curves(emp, fit, ScoreConfig(shift_range=s, shift_points=3,
                                              min_overlap=min_overlap))  # fmt: skip
    ref = {g: _naive_score(ex, ey, fx, fy, g, ea, fa) for g in (1 / s, 1.0, s)}
    allowed = {g: r for g, r in ref.items() if r[2] >= max(1, min_overlap * n)}
    m = min(r[0] for r in allowed.values())
    ties = [g for g, r in allowed.items() if r[0] <= m + 1e-9 * (1 + m)]  # equal scores
    g = next(g for g in ties if best["shift"] == pytest.approx(g, rel=1e-9))
    assert best["score"] == pytest.approx(ref[g][0], rel=1e-9, abs=1e-12)
    assert best["accuracy_rmse"] == pytest.approx(ref[g][1], rel=1e-9, abs=1e-12)
    assert best["n_points"] == ref[g][2] and best["score_unshifted"] == pytest.approx(want)


def test_min_overlap_keeps_shifts_that_match_most_points():
    """A fit that agrees only early: sliding it (large s) drops the early points and wins on
    the rest. min_overlap = 0.9 refuses that shift; without it the search would take it."""
    x = np.logspace(0, 3, 20)
    fit_loss = np.where(x <= 10, 0.5, 0.5 + 0.4 * np.log10(x / 10))
    emp = _curve_table(x, np.full(20, 0.5), np.full(20, 0.8))
    fit = _curve_table(x, fit_loss, np.full(20, 0.8))
    cfg = ScoreConfig(shift_range=3.0, shift_points=41, min_overlap=0.9)
    got = score_curves(emp, fit, cfg)
    ref = {g: _naive_score(x, np.full(20, 0.5), x, fit_loss, g) for g in np.exp(cfg.grid())}
    n1 = ref[1.0][2] if 1.0 in ref else 20
    allowed = {g: r for g, r in ref.items() if r[2] >= 0.9 * n1}
    g_allowed = min(allowed, key=lambda g: allowed[g][0])
    g_any = min(ref, key=lambda g: ref[g][0])
    assert g_any > g_allowed  # the guard changes the answer here
    assert got["shift"] == pytest.approx(g_allowed, rel=1e-9)
    assert got["n_points"] >= 0.9 * n1 and got["score"] == pytest.approx(allowed[g_allowed][0])


def test_shift_recovers_a_known_presentation_scale():
    x = np.logspace(0, 4, 30)
    curve = lambda n: 0.05 + 0.65 / (1.0 + n / 100.0)  # noqa: E731
    emp = _curve_table(x, curve(x), np.full(30, 0.8))
    fit = _curve_table(x, curve(x * 2.0), np.full(30, 0.8))  # the model learns 2x faster
    got = score_curves(emp, fit, ScoreConfig(shift_range=4.0, shift_points=201))
    assert got["shift"] == pytest.approx(2.0, rel=0.02)
    assert got["score"] < 0.01 < got["score_unshifted"]


def _truth_run(tmp_path):
    cfg = FitConfig(
        data=DataConfig(K=24, L=8, alpha=1.0, seed=3),
        model=ModelSection(w=TRUTH["w"], d=TRUTH["d"], init_scale=TRUTH["scale"]),
        optimizer=PhenomOptimConfig(name="adam", lr=TRUTH["lr"]),
        train=TrainSection(mode="expected", steps=150, batch=16, num_evals=12),
    )
    return fit_phenom(cfg, tmp_path / "truth", progress=False).path


@pytest.fixture(scope="module")
def truth_fit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ident")
    run = _truth_run(tmp)
    rep = fit_run(run, tmp / "fit", modes=("expected",), seeds=3, num_evals=12, progress=False,
                  **GRID)  # fmt: skip
    return run, tmp / "fit", rep


def test_identifiability_recovers_the_generating_settings(truth_fit):
    """A run made by the phenom model itself (w=2, d=4, lr=1e-2, scale=0.1) is fitted back:
    tolerance: w and d exact, lr exact on this grid (allowed: one grid step), score < 1e-3."""
    _, out, rep = truth_fit
    b = rep["best"]
    assert (b["w"], b["d"], b["scale"]) == (TRUTH["w"], TRUTH["d"], TRUTH["scale"])
    lrs = list(GRID["lrs"])
    assert abs(lrs.index(b["lr"]) - lrs.index(TRUTH["lr"])) <= 1
    assert b["lr"] == TRUTH["lr"]
    assert rep["score"] < 1e-3 and rep["shift"] == pytest.approx(1.0)
    assert len(rep["per_seed"]) == 3 and rep["score_std"] >= 0
    assert {p["seed"] for p in rep["per_seed"]} == {3, 4, 5}
    assert not rep["fresh_bits"] and "own bits" in rep["bits"]
    # the best run directory is a complete phenom run with the truth's config
    m = RunDir(out / "best").manifest()
    assert m["kind"] == "phenom" and m["status"] == "complete" and m["seed"] == 3
    assert m["config"]["model"]["w"] == TRUTH["w"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["best"] == rep["best"] and len(on_disk["per_bin"]) >= 2
    assert rep["grid"]["members"] == 6 and "total_s" in rep["wall_time_s"]
    text = format_report(rep)
    assert (
        "best: expected adam" in text
        and "full w=2 d=4 lr=0.01" in text
        and "ranks" not in text.split("\n")[0]
    )


def test_rerun_reuses_complete_sweeps(truth_fit):
    run, out, rep = truth_fit
    stamp = (out / "sweeps" / "expected-0-adam" / "sweep.parquet").stat().st_mtime_ns
    best_stamp = (out / "best" / "manifest.json").stat().st_mtime_ns
    report_stamp = (out / "report.json").stat().st_mtime_ns
    again = fit_run(run, out, modes=("expected",), seeds=3, num_evals=12, progress=False, **GRID)
    # what was reused is not rewritten: the report keeps the timings of the call that fitted
    assert (out / "report.json").stat().st_mtime_ns == report_stamp
    assert again["wall_time_s"] == rep["wall_time_s"]
    assert (out / "sweeps" / "expected-0-adam" / "sweep.parquet").stat().st_mtime_ns == stamp
    assert (out / "best" / "manifest.json").stat().st_mtime_ns == best_stamp
    assert again["best"] == rep["best"] and again["score"] == rep["score"]


def test_legacy_log_fits_on_fresh_bits_in_both_modes(tmp_path):
    log = write_legacy_log(tmp_path / "legacy.pkl", K=40, L=6, epochs=6, test_every=1, batch=8,
                           iters_per_epoch=5)  # fmt: skip
    rep = fit_run(log, tmp_path / "fit", ws=(1,), ds=(2,), lrs=(1e-2,), scales=(0.1,), seeds=3,
                  num_evals=6, progress=False)  # fmt: skip
    assert rep["fresh_bits"] and "fresh bits" in rep["bits"] and rep["run_kind"] == "legacy"
    assert rep["batch"] == 8 and rep["steps"] == 25  # 5 epochs x 5 steps per epoch
    assert {t["mode"] for t in rep["top"]} == {"expected", "stochastic"}
    assert np.isfinite(rep["score_mean"]) and len(rep["per_seed"]) == 3


def test_cli_errors_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["fit", str(missing), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "notarun"
    empty.mkdir()
    assert main(["fit", str(empty), "--no-progress"]) == 2
    assert str(empty) in capsys.readouterr().err


def test_cli_prints_the_table(truth_fit, capsys):
    run, out, _ = truth_fit
    args = ["fit", str(run), "--out", str(out), "--w", "1,2", "--d", "4", "--lr",
            "3e-3,1e-2,3e-2", "--scale", "0.1", "--modes", "expected", "--num-evals", "12",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "full w=2 d=4" in text and "report.json" in text


def test_fit_recovers_the_variant_knobs(tmp_path):
    """A run made by the variant (forget 0.02, readout_scale 1: docs/design.md §6) is fitted by a
    grid that holds both the stated model (0, 0) and the variant: the fit picks the variant's
    knobs, refits the best with them, and names them among the knobs of the sign table."""
    cfg = FitConfig(
        data=DataConfig(K=24, L=8, alpha=1.0, seed=3),
        model=ModelSection(w=2, d=4, init_scale=0.1, forget=0.02, readout_scale=1.0),
        optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
        train=TrainSection(mode="expected", steps=150, batch=16, num_evals=12),
    )
    run = fit_phenom(cfg, tmp_path / "truth", progress=False).path
    grid = grid_config(None, ws=(2,), ds=(4,), lrs=(1e-2,), scales=(0.1,), modes=("expected",),
                       seeds=1, num_evals=12)  # fmt: skip
    grid = dataclasses.replace(
        grid, grid=dataclasses.replace(grid.grid, forget=(0.0, 0.02), readout_scale=(0.0, 1.0))
    )
    rep = fit_run(run, tmp_path / "fit", grid, progress=False)
    assert rep["grid"]["members"] == 4
    assert (rep["best"]["forget"], rep["best"]["readout_scale"]) == (0.02, 1.0)
    assert rep["score"] < 1e-3
    model = RunDir(tmp_path / "fit" / "best").manifest()["config"]["model"]
    assert (model["forget"], model["readout_scale"]) == (0.02, 1.0)


def test_fit_of_an_unfinished_run_warns_and_says_so(truth_fit, tmp_path):
    """A run still `running` is fitted up to its last evaluation, with a warning naming it and
    its status in the report and the printed table (issue 12 item 7)."""
    import shutil

    run, _, _ = truth_fit
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    m = json.loads((cut / "manifest.json").read_text())
    (cut / "manifest.json").write_text(json.dumps({**m, "status": "running"}))
    with pytest.warns(UserWarning, match=r"unfinished runs .*cut \(running\)"):
        rep = fit_run(cut, tmp_path / "fit", modes=("expected",), seeds=1, num_evals=12,
                      progress=False, ws=(2,), ds=(4,), lrs=(1e-2,), scales=(0.1,))  # fmt: skip
    assert rep["run_status"] == "running"
    assert "run status: running (fitted up to its last evaluation)" in format_report(rep)
