"""`phenomjax compare`: the overlay's saved data holds both curves for every rank bin, the floor
and residual columns match NumPy references, the side-by-side figure, CLI errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenomjax.analysis.binning import default_edges
from phenomjax.analysis.overlay import overlay_data, overlay_figure, side_by_side
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.data import make_bits, zipf_weights
from phenomjax.phenom.fit import fit_run
from phenomjax.runs import RunDir
from phenomjax.transformer.train import TrainConfig, embedded_config, train


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    cfg = load_config(TrainConfig, embedded_config("tiny"), [])
    run = train(cfg, tmp / "tiny", progress=False).path
    fit_run(run, tmp / "tiny-fit", ws=(2,), ds=(2,), lrs=(1e-2, 3e-2), scales=(0.1,),
            modes=("expected",), seeds=2, num_evals=8, progress=False)  # fmt: skip
    return run, tmp / "tiny-fit", tmp


def test_overlay_data_holds_both_curves_for_every_bin(pair):
    run, fit, tmp = pair
    ov = overlay_figure(run, fit, tmp / "fig")
    names = sorted(p.name for p in ov.paths)
    assert names == ["overlay.csv", "overlay.pdf", "overlay.png"]
    assert all(p.stat().st_size > 1000 for p in ov.paths)
    back = pd.read_csv(tmp / "fig" / "overlay.csv")  # what the figure was drawn from
    for c in ("source", "rank_lo", "rank_hi", "presentations", "loss", "accuracy"):
        assert c in back.columns
    assert set(back.source) == {"empirical", "fit"}
    edges = default_edges(16)
    bins = set(zip(edges[:-1], edges[1:], strict=True))
    for lo, hi in bins:
        g = back[(back.rank_lo == lo) & (back.rank_hi == hi)]
        assert (g.source == "empirical").sum() >= 2, (lo, hi)
        assert (g.source == "fit").sum() >= 2, (lo, hi)
    assert (back.presentations > 0).all() and (back.loss > 0).all()
    pd.testing.assert_frame_equal(back, ov.data.reset_index(drop=True), check_dtype=False)


def test_overlay_floor_and_shift_match_references(pair):
    run, fit, tmp = pair
    data = overlay_data(run, fit)[0]
    m = RunDir(run).manifest()
    floor, _ = per_sequence_floor(make_bits(m["seed"], m["K"], m["L"]), zipf_weights(m["K"], 1.0))
    for (lo, hi), g in data.groupby(["rank_lo", "rank_hi"]):
        np.testing.assert_allclose(g["floor"], floor[lo:hi].mean(), rtol=1e-5)
    # fitted presentations are the best run's binned presentations times the report's shift
    import json

    rep = json.loads((fit / "report.json").read_text())
    ev = RunDir(fit / "best").read_evals()
    top = ev[ev["rank"] < 5].groupby("step")["expected_presentations"].mean()
    f = data[(data.source == "fit") & (data.rank_lo == 0)].set_index("step")["presentations"]
    np.testing.assert_allclose(f.to_numpy(), top.loc[f.index].to_numpy() * rep["shift"])


def test_residual_column_is_log_ratio_at_empirical_points(pair):
    run, fit, _ = pair
    data = overlay_data(run, fit)[0]
    for _, g in data.groupby(["rank_lo", "rank_hi"]):
        e = g[g.source == "empirical"].sort_values("presentations")
        f = g[g.source == "fit"].sort_values("presentations")
        xf, xe = np.log(f.presentations.to_numpy()), np.log(e.presentations.to_numpy())
        inside = (xe >= xf[0]) & (xe <= xf[-1])
        want = np.interp(xe, xf, np.log(f.loss.to_numpy())) - np.log(e.loss.to_numpy())
        np.testing.assert_allclose(e.log_residual.to_numpy()[inside], want[inside], rtol=1e-6)
        assert np.isnan(e.log_residual.to_numpy()[~inside]).all()
    assert data[data.source == "fit"].log_residual.isna().all()


def test_cli_side_by_side_has_every_experiment(pair, capsys):
    """Two pairs: a fit folder and a bare phenom run directory (shift 1) as FIT."""
    run, fit, tmp = pair
    args = ["compare", str(run), str(fit), str(run), str(fit / "best"), "--out",
            str(tmp / "sbs"), "--names", "a,b"]  # fmt: skip
    assert main(args) == 0
    back = pd.read_csv(tmp / "sbs" / "side-by-side.csv")
    assert set(back.experiment) == {"a", "b"}
    for _, g in back.groupby(["experiment", "rank_lo"]):
        assert set(g.source) == {"empirical", "fit"}
    for name in ("side-by-side.png", "side-by-side.pdf", "overlay-a.png", "overlay-b.csv"):
        assert (tmp / "sbs" / name).is_file(), name
    assert "side by side" in capsys.readouterr().out
    direct = side_by_side([(run, fit)], None, names=["only"])
    assert set(direct.data.experiment) == {"only"} and direct.paths == []


def test_cli_compare_errors_name_the_path(pair, capsys):
    run, _, tmp = pair
    assert main(["compare", str(run)]) == 2
    assert "pairs" in capsys.readouterr().err
    missing = tmp / "no-fit-here"
    assert main(["compare", str(run), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["compare", str(tmp / "no-run"), str(missing)]) == 2
    assert str(tmp / "no-run") in capsys.readouterr().err
