"""fitting.overlay and `phenomjax compare`: the overlay's saved data holds both curves for every
rank bin, the floor, shift and residual columns match NumPy references, seed groups (the band,
a seed of the group, another run refused), the figure's references and legends, names from
users, the side-by-side figure, CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.legacy_logs import write_legacy_log
from fixtures.run_dirs import make_run_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.analysis.binning import default_edges
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.configs import packaged
from phenomjax.data import make_bits, zipf_weights
from phenomjax.errors import DataError
from phenomjax.fitting import FitReport, fit_run
from phenomjax.fitting import overlay as ov_mod
from phenomjax.fitting.grid import FitGridConfig, GridSection, OptimizerEntry
from phenomjax.fitting.overlay import FONT, group_refs, overlay_data, overlay_figure, side_by_side
from phenomjax.runs import RunDir
from phenomjax.transformer.train import TrainConfig, train

from .reports import synthetic_report, write_fit_folder

GRID = FitGridConfig(
    grid=GridSection(mode=("expected",), w=(2,), d=(2,), scale=(0.1,), refit_seeds=1,
                     num_evals=8),
    optimizers=(OptimizerEntry(lr=(1e-2, 3e-2)),),
)  # fmt: skip


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    cfg = load_config(TrainConfig, packaged("tiny"), [])
    run = train(cfg, tmp / "tiny", progress=False).path
    fit_run(run, tmp / "tiny-fit", GRID, progress=False)
    return run, tmp / "tiny-fit", tmp


def test_overlay_data_holds_both_curves_for_every_bin(pair):
    run, fit, tmp = pair
    ov = overlay_figure(run, fit, tmp / "fig")
    assert sorted(p.name for p in ov.paths) == ["overlay.csv", "overlay.pdf", "overlay.png"]
    assert all(p.stat().st_size > 1000 for p in ov.paths)
    back = pd.read_csv(tmp / "fig" / "overlay.csv")  # what the figure was drawn from
    for c in ("source", "rank_lo", "rank_hi", "presentations", "loss", "accuracy", "loss_lo"):
        assert c in back.columns
    assert set(back.source) == {"empirical", "fit"}
    edges = default_edges(16)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        g = back[(back.rank_lo == lo) & (back.rank_hi == hi)]
        assert (g.source == "empirical").sum() >= 2, (lo, hi)
        assert (g.source == "fit").sum() >= 2, (lo, hi)
    assert (back.presentations >= 1).all() and (back.loss > 0).all()  # from one presentation
    assert back.loss_lo.isna().all()  # one run: no band
    pd.testing.assert_frame_equal(back, ov.data.reset_index(drop=True), check_dtype=False)


def test_overlay_floor_and_shift_match_references(pair):
    run, fit, tmp = pair
    data = overlay_data(run, fit)[0]
    m = RunDir(run).manifest()
    floor, _ = per_sequence_floor(make_bits(m["seed"], m["K"], m["L"]), zipf_weights(m["K"], 1.0))
    for (lo, hi), g in data.groupby(["rank_lo", "rank_hi"]):
        np.testing.assert_allclose(g["floor"], floor[lo:hi].mean(), rtol=1e-5)
    # fitted presentations are the best run's binned presentations times the report's shift
    shift = FitReport.load(fit / "report.json").best.score.shift
    ev = RunDir(fit / "best").read_evals()
    top = ev[ev["rank"] < 5].groupby("step")["expected_presentations"].mean()
    f = data[(data.source == "fit") & (data.rank_lo == 0)].set_index("step")["presentations"]
    np.testing.assert_allclose(f.to_numpy(), top.loc[f.index].to_numpy() * shift)


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


def test_cli_side_by_side_has_every_experiment_and_safe_names(pair, capsys):
    """Two pairs (the same fit twice) named "a/b" and "c": one overlay each, one side by side;
    a name with "/" becomes a file name inside the figures folder."""
    run, fit, tmp = pair
    args = ["compare", str(run), str(fit), str(run), str(fit), "--out", str(tmp / "sbs"),
            "--names", "a/b,c"]  # fmt: skip
    assert main(args) == 0
    back = pd.read_csv(tmp / "sbs" / "all_overlay.csv")
    assert set(back.experiment) == {"a/b", "c"}
    for _, g in back.groupby(["experiment", "rank_lo"]):
        assert set(g.source) == {"empirical", "fit"}
    for name in ("all_overlay.png", "all_overlay.pdf", "a_b_overlay.png", "c_overlay.csv"):
        assert (tmp / "sbs" / name).is_file(), name
    assert not (tmp / "a").exists() and "side by side" in capsys.readouterr().out
    direct = side_by_side([(run, fit)], None, names=["only"])
    assert set(direct.data.experiment) == {"only"} and direct.paths == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=12), st.floats(0.0, 0.2))
def test_references_group_where_they_coincide(values, gap):
    groups = group_refs([(v, i) for i, v in enumerate(values)], gap)
    assert sum(len(g) for g in groups) == len(values)
    for g in groups:
        assert all(v <= g[0][0] * (1 + gap) for v, _ in g)
    firsts = [g[0][0] for g in groups]
    assert all(b > a * (1 + gap) for a, b in zip(firsts, firsts[1:], strict=False))


def _group(tmp: Path) -> tuple[Path, Path]:
    """A seed group folder (seed-0, seed-1, fabricated runs) and a fit folder of it."""
    grp = tmp / "grp"
    for s in (0, 1):
        make_run_dir(grp / f"seed-{s}", seed=s, steps=(0, 4, 16, 64, 256))
    fit = tmp / "grp-fit"
    make_run_dir(fit / "best", seed=0, steps=(0, 4, 16, 64, 256))
    rep = synthetic_report(inputs=(str(grp),), runs=(str(grp / "seed-0"), str(grp / "seed-1")),
                           n_seeds=2)  # fmt: skip
    write_fit_folder(fit, rep)
    return grp, fit


def test_a_seed_group_is_drawn_as_its_band_with_the_fit(tmp_path, monkeypatch, capsys):
    """`compare GROUP GROUPFIT`: the seeds' mean (geometric for loss) with their min-max band,
    against NumPy; the figure shades it, starts at one presentation, and its legends are at
    least FONT points. `compare GROUP/seed-0 GROUPFIT` is one seed of that group."""
    grp, fit = _group(tmp_path)
    data, elabel, _ = overlay_data(grp, fit)
    emp = data[data.source == "empirical"]
    assert (emp.n_seeds == 2).all() and "mean of 2 seeds" in elabel
    runs = [RunDir(grp / f"seed-{s}").read_evals() for s in (0, 1)]
    top = [r[r["rank"] < 5].groupby("step")["loss"].mean() for r in runs]
    row = emp[(emp.rank_lo == 0)].set_index("step")
    for step, r in row.iterrows():
        vals = np.array([t.loc[step] for t in top])
        assert r.loss == pytest.approx(np.exp(np.log(vals).mean()), rel=1e-6)
        assert (r.loss_lo, r.loss_hi) == pytest.approx((vals.min(), vals.max()), rel=1e-6)
    figs = []
    monkeypatch.setattr(ov_mod, "save_figure", lambda fig, *a, **k: figs.append(fig) or [])
    assert main(["compare", str(grp), str(fit), "--out", str(tmp_path / "f")]) == 0
    fig = figs[-1]
    texts = [t for leg in fig.legends for t in leg.get_texts()]
    assert texts and min(t.get_fontsize() for t in texts) >= FONT >= 8
    assert any(len(a.collections) for a in fig.axes[:2])  # the shaded band
    assert all(a.get_xlim()[0] >= 1.0 for a in fig.axes)
    assert main(["compare", str(grp / "seed-0"), str(fit), "--out", str(tmp_path / "g")]) == 0
    one, label, _ = overlay_data(grp / "seed-0", fit)
    assert one.loss_lo.isna().all() and "mean of" not in label
    other = tmp_path / "other"
    shutil.copytree(grp / "seed-1", other)
    with pytest.raises(DataError, match="a seed group's folder with its fit"):
        overlay_data(other, fit)
    capsys.readouterr()


def _fit_copy(fit: Path, dest: Path, edit) -> Path:
    """A copy of the fit folder with report.json edited by `edit(dict)`."""
    shutil.copytree(fit, dest)
    rep = json.loads((dest / "report.json").read_text())
    edit(rep)
    (dest / "report.json").write_text(json.dumps(rep))
    return dest


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured
    return captured.err


def test_compare_refuses_a_fit_of_another_run(pair, tmp_path, capsys):
    run, fit, _ = pair
    err = _error(capsys, ["compare", str(run), str(run)])  # a run is not a fit
    assert f"compare {run} {run}" in err and "not a fit folder" in err
    assert not (run / "figures").exists()  # nothing written before the pair is checked
    # the best member of a fit is a run directory; the message names its fit folder
    err = _error(capsys, ["compare", str(run), str(fit / "best")])
    assert "run directory, not a fit folder" in err and "pass that folder" in err
    assert str(fit) in err
    other = tmp_path / "other-run"  # a fit whose report names another run that exists
    shutil.copytree(run, other)
    err = _error(capsys, ["compare", str(other), str(fit)])
    assert str(other) in err and str(fit) in err and "'run.inputs'" in err
    for field, value in (("L", 32), ("K", 32), ("alpha", 1.5)):
        bad = _fit_copy(
            fit, tmp_path / f"fit-{field}", lambda r, f=field, v=value: r["run"].update({f: v})
        )
        err = _error(capsys, ["compare", str(run), str(bad)])
        assert f"field {field!r} differs" in err and str(run) in err and str(bad) in err
    bad = _fit_copy(fit, tmp_path / "fit-best-L", lambda r: None)
    man = json.loads((bad / "best/manifest.json").read_text())
    (bad / "best/manifest.json").write_text(json.dumps({**man, "L": 32}))
    assert "best/manifest.json L=32" in _error(capsys, ["compare", str(run), str(bad)])
    assert "not a fit folder" in _error(capsys, ["compare", str(run), str(tmp_path)])
    bad = _fit_copy(fit, tmp_path / "fit-no-run", lambda r: r.pop("run"))
    assert "field run: missing" in _error(capsys, ["compare", str(run), str(bad)])


def test_compare_accepts_a_moved_pair_by_name(pair, tmp_path):
    """The recorded path no longer exists (the pair was moved): the run's name must match."""
    run, fit, _ = pair

    def moved(path):
        return lambda r: r["run"].update(inputs=[path], runs=[path])

    ok = _fit_copy(fit, tmp_path / "moved-fit", moved(f"/elsewhere/gone/{run.name}"))
    assert len(overlay_data(run, ok)[0]) > 0
    renamed = _fit_copy(fit, tmp_path / "renamed-fit", moved("/elsewhere/gone/another-name"))
    with pytest.raises(DataError, match="fit is of another run"):
        overlay_data(run, renamed)


def test_file_names_of_a_legacy_log_drop_pkl(pair, tmp_path, capsys):
    """A legacy RUN (a .pkl) names its overlay by its stem, as analyze does."""
    run, fit, _ = pair
    m = RunDir(run).manifest()
    log = write_legacy_log(tmp_path / "legacy_K16.pkl", K=m["K"], L=m["L"], epochs=6,
                           test_every=2)  # fmt: skip
    fitted = _fit_copy(fit, tmp_path / "legacy-fit",
                       lambda r: r["run"].update(inputs=[str(log)], runs=[str(log)]))  # fmt: skip
    out = tmp_path / "figs"
    assert main(["compare", str(log), str(fitted), str(log), str(fitted), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "legacy_K16_overlay.png" in names and not any(".pkl" in n for n in names)
    back = pd.read_csv(out / "legacy_K16_overlay.csv")
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
    user = tmp / "user-figs"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert main(["compare", str(run), str(tmp / "tiny-fit"), "--out", str(user)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (user / "notes.txt").read_text() == "mine"
