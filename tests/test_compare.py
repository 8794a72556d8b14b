"""`phenomjax compare`: the overlay's saved data holds both curves for every rank bin, the floor
and residual columns match NumPy references, the side-by-side figure, CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.legacy_logs import write_legacy_log

from phenomjax.analysis.binning import default_edges
from phenomjax.analysis.overlay import overlay_data, overlay_figure, side_by_side
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.data import make_bits, zipf_weights
from phenomjax.errors import DataError
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
    """Two pairs (the same fit twice, named a and b): one overlay each and one side by side."""
    run, fit, tmp = pair
    args = ["compare", str(run), str(fit), str(run), str(fit), "--out",
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


def _fit_copy(fit: Path, dest: Path, **report) -> Path:
    """A copy of the fit folder with report.json fields replaced."""
    shutil.copytree(fit, dest)
    rep = json.loads((dest / "report.json").read_text())
    (dest / "report.json").write_text(json.dumps({**rep, **report}))
    return dest


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured
    return captured.err


def test_compare_refuses_a_fit_of_another_run(pair, tmp_path, capsys):
    run, fit, _ = pair
    # a run is not a fit (`compare runs/ref runs/ref`)
    err = _error(capsys, ["compare", str(run), str(run)])
    assert f"compare {run} {run}" in err and "not a fit folder" in err
    # the best member of a fit is a run directory; the message names its fit folder
    err = _error(capsys, ["compare", str(run), str(fit / "best")])
    assert "run directory, not a fit folder" in err and "pass that folder" in err
    assert str(fit) in err
    # a fit whose report names another run that exists
    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    err = _error(capsys, ["compare", str(other), str(fit)])
    assert str(other) in err and str(fit) in err and "'run'" in err
    # a fit of an L=32 (K=32, alpha=1.5) log, named as fitted to this run
    for field, value in (("L", 32), ("K", 32), ("alpha", 1.5)):
        bad = _fit_copy(fit, tmp_path / f"fit-{field}", **{field: value})
        err = _error(capsys, ["compare", str(run), str(bad)])
        assert f"field {field!r} differs" in err and str(run) in err and str(bad) in err
    # the best member's manifest disagreeing with the run
    bad = _fit_copy(fit, tmp_path / "fit-best-L")
    man = json.loads((bad / "best/manifest.json").read_text())
    (bad / "best/manifest.json").write_text(json.dumps({**man, "L": 32}))
    err = _error(capsys, ["compare", str(run), str(bad)])
    assert "best/manifest.json L=32" in err
    # a folder that is neither, and a report without the run field
    err = _error(capsys, ["compare", str(run), str(tmp_path)])
    assert "not a fit folder" in err
    bad = _fit_copy(fit, tmp_path / "fit-no-run")
    rep = json.loads((bad / "report.json").read_text())
    del rep["run"]
    (bad / "report.json").write_text(json.dumps(rep))
    assert "field 'run' missing" in _error(capsys, ["compare", str(run), str(bad)])


def test_compare_accepts_a_moved_pair_by_name(pair, tmp_path):
    """The recorded path no longer exists (the pair was moved): the run's name must match."""
    run, fit, _ = pair
    moved = _fit_copy(fit, tmp_path / "moved-fit", run=f"/elsewhere/gone/{run.name}")
    assert len(overlay_data(run, moved)[0]) > 0
    renamed = _fit_copy(fit, tmp_path / "renamed-fit", run="/elsewhere/gone/another-name")
    with pytest.raises(DataError, match="fit is of another run"):
        overlay_data(run, renamed)


def test_file_names_of_a_legacy_log_drop_pkl(pair, tmp_path, capsys):
    """A legacy RUN (a .pkl) names its overlay by its stem, as analyze does."""
    run, fit, _ = pair
    m = RunDir(run).manifest()
    log = write_legacy_log(tmp_path / "legacy_K16.pkl", K=m["K"], L=m["L"], epochs=6,
                           test_every=2)  # fmt: skip
    fitted = _fit_copy(fit, tmp_path / "legacy-fit", run=str(log))
    out = tmp_path / "figs"
    assert main(["compare", str(log), str(fitted), str(log), str(fitted), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "overlay-legacy_K16.png" in names and not any(".pkl" in n for n in names)
    back = pd.read_csv(out / "overlay-legacy_K16.csv")
    assert back["fresh_bits"].all() and np.isfinite(back["floor"]).all()
    capsys.readouterr()


def test_cli_compare_errors_name_the_path(pair, capsys):
    run, _, tmp = pair
    assert main(["compare", str(run)]) == 2
    assert "pairs" in capsys.readouterr().err
    missing = tmp / "no-fit-here"
    assert main(["compare", str(run), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["compare", str(tmp / "no-run"), str(missing)]) == 2
    assert str(tmp / "no-run") in capsys.readouterr().err
