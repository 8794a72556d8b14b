"""The historical CLI end to end, headless, on legacy logs and on a run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.legacy_logs import write_legacy_log
from fixtures.run_dirs import make_run_dir

from phenomjax.analysis import figstyle, load_analysis_config, plots, process_run
from phenomjax.analysis.settings import PlotSettings
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.data import make_bits, zipf_weights
from phenomjax.runs import RunDir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working folder with two legacy logs (both layouts) and a config naming them."""
    monkeypatch.chdir(tmp_path)
    write_legacy_log("logs/small.pkl", K=120, L=6, epochs=12, test_every=2, heads=8, layers=12)
    write_legacy_log("logs/medium.pkl", K=10000, L=4, epochs=5, test_every=2, heads=16,
                     layers=24, lr=1e-4, seed=1)  # fmt: skip
    cfg = tmp_path / "analysis.toml"
    cfg.write_text(
        '[experiments]\nsmall = ["logs/small.pkl"]\nmedium = ["logs/medium.pkl"]\n'
        'all = ["@small", "@medium"]\n[plot]\nformats = ["png", "pdf"]\ndpi = 60\n'
        "max_comparative_bins = 3\n"
    )
    return tmp_path, cfg


def test_legacy_comparative_end_to_end_with_exports(project, capsys):
    root, cfg = project
    argv = ["analyze", "--config", str(cfg), "--experiment", "all", "--rank-selection", "low",
            "--comparative", "--no-show-plots", "--export", "binned.csv",
            "--export-summary", "summary.parquet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "processed" in out and "memorized_bits" in out and "presentations_to_loss_level" in out
    comp = root / "cache/zipf_figs"
    for r in range(3):  # --rank-selection low with --comparative: a figure per selected rank,
        for ext in ("png", "pdf", "csv"):  # the first max_comparative_bins = 3 of them
            assert (comp / f"all_comparative_rank_{r}.{ext}").stat().st_size > 100
    assert not (comp / "all_comparative_rank_3.png").exists()
    assert not list(comp.glob("*ranks_*")) and not list(comp.glob("*/"))
    binned = pd.read_csv(root / "binned.csv")
    for c in ("step", "rank_lo", "rank_hi", "sequence_rank", "presentations", "loss",
              "accuracy", "n_sequences", "run", "label", "experiment"):  # fmt: skip
        assert c in binned.columns
    assert set(binned["label"]) == {"8 heads, 12 layers, learned, lr=0.001",
                                    "16 heads, 24 layers, learned, lr=0.0001"}  # fmt: skip
    summary = pd.read_parquet(root / "summary.parquet")
    want = {"presentations_to_loss_level", "memorized_bits", "log_loss_gap", "lag_ratio_0.75"}
    assert want <= set(summary)
    assert main(argv) == 0
    assert "(cache" in capsys.readouterr().out  # the second run is served from the cache


def test_rank_selection_draws_one_curve_per_selected_rank(project, capsys):
    root, cfg = project
    assert main(["analyze", "--config", str(cfg), "--experiment", "small", "--rank-selection",
                 "mid", "--no-show-plots"]) == 0  # fmt: skip
    figs = root / "cache/zipf_figs"
    for quantity in ("loss", "loss_scatter", "accuracy"):
        assert (figs / f"small_{quantity}_mid.png").is_file()
    assert (figs / "small_loss_heatmap.pdf").is_file()  # K < 10000
    r = process_run(root / "logs/small.pkl", ranks=range(70), cache_dir=None)
    for name, want in (("mid", range(30, 40)), ("high", range(60, 70))):
        sel = load_analysis_config(cfg).rank_selections.get(name) or tuple(want)
        drawn = plots.metric_figure(plots.curves_from_ranks(r.ranks, list(sel)), "loss",
                                    plot=PlotSettings(), title="t").data  # fmt: skip
        assert sorted(drawn["rank"].unique()) == list(want)
        assert drawn.groupby("curve")["rank"].nunique().eq(1).all()  # one rank per curve
    heat = plots.heatmap_figure(r.positions, plot=PlotSettings(), title="t").data
    last = r.positions[r.positions.step == r.positions.step.max()]
    want = last[(last.rank_lo == 10)].sort_values("position")["loss"].to_numpy()
    got = heat[(heat.rank_lo == 10) & (heat.quantity == "loss")].sort_values("position")
    np.testing.assert_allclose(got["value"].to_numpy(), want)


def test_run_directory_end_to_end_with_floor(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_run_dir(tmp_path / "runs/tiny", K=16, L=8)
    argv = ["analyze", "--run", "runs/tiny", "--rank-selection", "all", "--no-show-plots",
            "--export", "binned.parquet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 heads, 1 layers, RoPE, lr=0.01" in out and "bits_per_param" in out
    binned = pd.read_parquet("binned.parquet")
    assert {"floor", "excess_loss", "ceiling"} <= set(binned.columns)
    # each bin's excess loss is the mean of its ranks' loss minus their independently computed
    # floors (per_sequence_floor of the fixture's bits), at every step
    floor, _ = per_sequence_floor(make_bits(3, 16, 8), zipf_weights(16, 1.0))
    ev = RunDir("runs/tiny").read_evals()
    ev = ev.assign(excess=ev["loss"].to_numpy() - floor[ev["rank"]])
    for _, row in binned.iterrows():
        sel = ev[(ev.step == row.step) & (ev["rank"] >= row.rank_lo) & (ev["rank"] < row.rank_hi)]
        np.testing.assert_allclose(row.excess_loss, sel.excess.mean(), atol=1e-5)
    figs = tmp_path / "cache/zipf_figs"
    assert (figs / "tiny_loss_all.png").is_file() and (figs / "tiny_loss_heatmap.png").is_file()
    assert (figs / "tiny_lag.png").is_file() and (figs / "tiny_lag.csv").is_file()
    # the floor reference lines come with the data drawn
    r = process_run(tmp_path / "runs/tiny", cache_dir=None)
    drawn = plots.metric_figure(plots.curves_from_bins(r.binned), "loss", plot=PlotSettings(),
                                title="t").data  # fmt: skip
    assert np.isfinite(drawn["floor"]).all() and (drawn["presentations"] > 0).all()
    # the legend says what the floor bounds: the mixture's expected loss, not each sequence
    fig = plots.metric_figure(plots.curves_from_bins(r.binned), "loss", plot=PlotSettings(),
                              title="t", keep=True).figure  # fmt: skip
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("mixture optimum, not a per-sequence bound" in t for t in texts)
    assert "fresh bits" in figstyle.floor_label(fresh_bits=True)


def test_no_save_plots_writes_nothing_and_errors_are_one_line(project, capsys):
    root, cfg = project
    assert main(["analyze", "--config", str(cfg), "--no-save-plots", "--no-show-plots"]) == 0
    assert not (root / "cache/zipf_figs").exists()
    cases = [
        (["--experiment", "huge"], "experiment 'huge' does not exist"),
        (["--rank-selection", "weird"], "--rank-selection 'weird'"),
        (["--export", "out.txt"], "expected a .csv or .parquet"),
    ]
    for extra, msg in cases:
        assert main(["analyze", "--config", str(cfg), "--no-show-plots", *extra]) == 2
        assert msg in capsys.readouterr().err
    bad = root / "bad.toml"
    bad.write_text('[experiments]\nsmall = ["x"]\n[plot]\ndpii = 3\n')
    assert main(["analyze", "--config", str(bad), "--no-show-plots"]) == 2
    assert "bad.toml: plot.dpii: unknown key" in capsys.readouterr().err


def test_historical_script_runs_headless_in_a_subprocess(project):
    root, cfg = project
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY",
                                                            "MPLBACKEND")}  # fmt: skip
    cmd = [sys.executable, str(REPO / "scripts/analysis.py"), "--config", str(cfg),
           "--experiment", "small", "--rank-selection", "selected",
           "--force-reprocess"]  # fmt: skip
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (root / "cache/zipf_figs/small_accuracy_selected.pdf").is_file()
    assert list((root / "cache/processed_data").glob("small.pkl-*.json"))


def test_config_edges_steps_and_selections_are_honoured(project):
    root, cfg = project
    text = cfg.read_text()
    custom = root / "custom.toml"
    extra = "[rank_selections]\nmine = [2, 7]\n[legacy]\nsteps_per_epoch = 5\n"
    custom.write_text("edges = [0, 3, 40, 120]\n" + text + extra)
    argv = ["analyze", "--config", str(custom), "--rank-selection", "mine", "--no-show-plots",
            "--export", "b.parquet"]  # fmt: skip
    assert main(argv) == 0
    b = pd.read_parquet(root / "b.parquet")
    assert sorted(set(zip(b.rank_lo, b.rank_hi, strict=True))) == [(0, 3), (3, 40), (40, 120)]
    assert sorted(set(b.step)) == [0, 10, 20, 30, 40, 50]  # epochs 0, 2, ..., 10 x 5
    assert (root / "cache/zipf_figs/small_loss_mine.png").is_file()


def test_missing_run_prints_nothing_before_its_error(project, capsys):
    root, cfg = project
    argv = ["analyze", "--config", str(cfg), "--no-show-plots", "--run", "logs/small.pkl",
            "--run", "/nonexistent.pkl"]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().count("\n") == 0 and "/nonexistent.pkl: not found" in captured.err


def test_legacy_summary_says_unknown_for_unrecorded_counts(project, capsys):
    root, cfg = project
    assert main(["analyze", "--config", str(cfg), "--no-show-plots", "--no-save-plots"]) == 0
    out = capsys.readouterr().out
    table = out.split("memorized bits at the last evaluation")[1].split("presentations to bring")[0]
    assert "None" not in table and "NaN" not in table
    row = [ln for ln in table.splitlines() if ln.strip().startswith("small")][0]
    assert row.split()[-2:] == ["unknown", "unknown"]  # n_params, bits_per_param


def _seed_group(root: Path, name: str = "seeds", seeds=(3, 4), **kw) -> Path:
    """A group folder as `phenomjax train --seeds` writes it: <name>/seed-<s>, one run each."""
    for s in seeds:
        make_run_dir(root / name / f"seed-{s}", K=16, L=8, seed=s, steps=(0, 4, 16, 64, 256), **kw)
    return root / name


def test_a_group_folder_is_one_seed_group_with_one_lag_summary(tmp_path, monkeypatch, capsys):
    from phenomjax.analysis import lag
    from phenomjax.analysis.groups import lag_summary, load_group

    monkeypatch.chdir(tmp_path)
    _seed_group(tmp_path / "runs")
    argv = ["analyze", "--run", "runs/seeds", "--rank-selection", "all", "--no-show-plots",
            "--export-summary", "s.csv"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 run(s), seed group(s) seeds" in out
    assert "seed group seeds: lag as geo. mean [min, max] over 2 seeds" in out
    figs = tmp_path / "cache/zipf_figs"
    names = sorted(p.name for p in figs.iterdir() if not p.name.startswith("."))
    assert "seeds_loss_all.png" in names and "seeds_lag.png" in names
    assert not [n for n in names if n.startswith("seeds_seeds")]  # no doubled names
    # the printed lag is lag_summary of the per-seed ratios (the summary the fit prints too)
    per_run = lag.lag_table(load_group(["runs/seeds"]))
    row = next(ln for ln in out.splitlines() if "ranks 5-9" in ln)
    for lv in (0.75, 0.5, 0.25):
        s = lag_summary(per_run[(per_run.level == lv) & (per_run.rank_lo == 5)]["lag_ratio"])
        assert str(s) in row
    summary = pd.read_csv("s.csv")
    assert set(summary["run"]) == {"seeds/seed-3", "seeds/seed-4"}
    assert {"lag_ratio_0.75", "median_presentations_0.25", "log_loss_gap"} <= set(summary)
    # the same runs named one by one with --group: the same group
    assert main(["analyze", "--run", "runs/seeds/seed-3", "--run", "runs/seeds/seed-4",
                 "--group", "pair", "--no-show-plots", "--no-save-plots"]) == 0  # fmt: skip
    assert "seed group pair: lag as geo. mean" in capsys.readouterr().out
    make_run_dir(tmp_path / "runs/other", K=16, L=8, seed=5, lr=0.5)
    assert main(["analyze", "--run", "runs/seeds/seed-3", "--run", "runs/other", "--group", "x",
                 "--no-show-plots", "--no-save-plots"]) == 2  # fmt: skip
    assert "a seed group differs only in seed" in capsys.readouterr().err


def test_comparative_draws_one_banded_curve_per_group(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _seed_group(tmp_path / "runs", "a")
    _seed_group(tmp_path / "runs", "b", seeds=(5, 6), lr=0.02)
    argv = ["analyze", "--run", "runs/a", "--run", "runs/b", "--experiment", "ab", "--comparative",
            "--no-show-plots", "--figures-dir", "figs"]  # fmt: skip
    assert main(argv) == 0
    drawn = pd.read_csv("figs/ab_comparative_ranks_0-4.csv")
    assert set(drawn["run"]) == {"a", "b"} and (drawn["n_runs"] == 2).all()
    assert {"loss_lo", "loss_hi", "accuracy_lo"} <= set(drawn.columns)


def test_flags_that_do_not_combine_are_refused(project, capsys):
    root, cfg = project
    cases = [
        (["--no-save-plots", "--figures-dir", "f"], "--figures-dir: given with --no-save-plots"),
        (["--export-summary", "s.txt"], "--export-summary s.txt: expected a .csv or .parquet"),
        (["--set", "summary.reach_level=1.5"], "reach_level: expected a share in (0, 1)"),
    ]
    for extra, msg in cases:
        assert main(["analyze", "--config", str(cfg), "--no-show-plots", *extra]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (root / "f").exists() and not (root / "cache").exists()
    # absolute thresholds stay available
    assert main(["analyze", "--config", str(cfg), "--no-show-plots", "--no-save-plots",
                 "--set", "summary.loss_threshold=0.3"]) == 0  # fmt: skip
    assert "presentations_to_loss: to reach loss <= 0.3 nats" in capsys.readouterr().out


def test_names_from_users_and_configs_write_nothing_outside_the_figures_folder(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "a" / "b"
    make_run_dir(work / "runs/tiny", K=16, L=8)
    monkeypatch.chdir(work)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["analyze", "--experiment", "../../x", "--run", "runs/tiny", "--no-show-plots",
                 "--figures-dir", "figs", "--cache-dir", "cache"]) == 0  # fmt: skip
    cfg = work / "evil.toml"
    cfg.write_text('[experiments]\n"../../x" = ["runs/tiny"]\n')
    assert main(["analyze", "--config", str(cfg), "--experiment", "../../x", "--no-show-plots",
                 "--figures-dir", "figs", "--cache-dir", "cache"]) == 0  # fmt: skip
    assert main(["analyze", "--run", "runs/tiny", "--group", "a/../b", "--no-show-plots",
                 "--figures-dir", "figs", "--cache-dir", "cache"]) == 0  # fmt: skip
    new = sorted(set(tmp_path.rglob("*")) - set(before))
    outside = [p for p in new if not p.is_relative_to(work / "figs")
               and not p.is_relative_to(work / "cache") and p != cfg]  # fmt: skip
    assert outside == []
    assert (work / "figs/x_lag.png").is_file() and (work / "figs/a_.._b_lag.png").is_file()


def test_a_figures_folder_phenomjax_did_not_write_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_run_dir(tmp_path / "runs/tiny", K=16, L=8)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/thesis.tex").write_text("x")
    assert main(["analyze", "--run", "runs/tiny", "--no-show-plots", "--figures-dir", "mine"]) == 2
    assert "in a folder phenomjax did not write" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def test_an_experiment_with_no_run_names_the_command_that_trains_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", "--experiment", "all", "--no-show-plots"]) == 2
    err = capsys.readouterr().err
    assert "`phenomjax experiments --cpu`" in err
    lines = err.splitlines()
    assert "  runs/small_cpu" in lines and "  runs/large_lr_cpu" in lines  # one path per line
    assert max(len(ln) for ln in lines) < 200
