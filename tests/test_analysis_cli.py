"""The historical CLI end to end, headless, on legacy logs and on a run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis_fixtures import make_run_dir

from phenomjax.analysis import load_analysis_config, plots, process_run
from phenomjax.analysis.settings import PlotSettings
from phenomjax.analysis.synthetic import write_legacy_log
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.data import make_bits, zipf_weights
from phenomjax.runs import RunDir

REPO = Path(__file__).resolve().parents[1]


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
    assert "processed" in out and "memorized_bits" in out and "presentations_to_loss" in out
    comp = root / "cache/zipf_figs/comparative_visualizations"
    for lo, last in ((0, 4), (5, 9), (10, 99)):  # inclusive, as the legends say
        for ext in ("png", "pdf"):
            assert (comp / f"all_loss_accuracy_ranks_{lo}-{last}.{ext}").stat().st_size > 1000
    assert not list(comp.glob("*ranks_0-5*"))
    binned = pd.read_csv(root / "binned.csv")
    for c in ("step", "rank_lo", "rank_hi", "sequence_rank", "presentations", "loss",
              "accuracy", "n_sequences", "run", "label", "experiment"):  # fmt: skip
        assert c in binned.columns
    assert set(binned["label"]) == {"8 heads, 12 layers, learned, lr=0.001",
                                    "16 heads, 24 layers, learned, lr=0.0001"}  # fmt: skip
    summary = pd.read_parquet(root / "summary.parquet")
    want = {"presentations_to_loss", "memorized_bits", "log_loss_gap", "lag_ratio_0.75"}
    assert want <= set(summary)
    assert main(argv) == 0
    assert "(cache" in capsys.readouterr().out  # the second run is served from the cache


def test_rank_selection_draws_one_curve_per_selected_rank(project, capsys):
    root, cfg = project
    assert main(["analyze", "--config", str(cfg), "--experiment", "small", "--rank-selection",
                 "mid", "--no-show-plots"]) == 0  # fmt: skip
    figs = root / "cache/zipf_figs"
    for stem in ("loss_vs_presentations_line", "loss_vs_presentations_scatter",
                 "accuracy_vs_presentations"):  # fmt: skip
        assert (figs / f"small_small_mid_{stem}.png").is_file()
    assert (figs / "small_small_loss_heatmap_rank_position.pdf").is_file()  # K < 10000
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
    np.testing.assert_allclose(heat[heat.rank_lo == 10].drop(columns=["rank_lo", "rank_hi"])
                               .to_numpy().ravel(), want)  # fmt: skip


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
    assert (figs / "runs_tiny_all_loss_vs_presentations_line.png").is_file()
    assert (figs / "runs_tiny_loss_heatmap_rank_position.png").is_file()
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
    assert "fresh bits" in plots.floor_label(fresh_bits=True)


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
    assert (root / "cache/zipf_figs/small_small_selected_accuracy_vs_presentations.pdf").is_file()
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
    assert (root / "cache/zipf_figs/small_small_mine_loss_vs_presentations_line.png").is_file()


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
    table = out.split("memorized bits at the last evaluation")[1].split("presentations to reach")[0]
    assert "None" not in table and "NaN" not in table
    row = [ln for ln in table.splitlines() if ln.strip().startswith("small")][0]
    assert row.split()[-2:] == ["unknown", "unknown"]  # n_params, bits_per_param


@pytest.mark.parametrize("command", ["fit", "sweep", "analyze", "compare"])
def test_every_flag_has_help(command):
    import argparse
    import importlib

    from phenomjax.cli import COMMANDS

    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    missing = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert missing == [], missing


def test_sweep_progress_title_names_the_mode(monkeypatch):
    """The expected and stochastic sweeps of a fit show different progress titles."""
    import phenomjax.phenom.sweep as sw
    from phenomjax.data import DataConfig
    from phenomjax.phenom.train import FitConfig, ModelSection, PhenomOptimConfig, TrainSection

    titles = []
    real = sw.drive

    def spy(*args, **kwargs):
        titles.append(kwargs["desc"])
        return real(*args, **{**kwargs, "progress": False})

    monkeypatch.setattr(sw, "drive", spy)
    for mode in ("expected", "stochastic"):
        cfg = FitConfig(
            data=DataConfig(K=12, L=4, alpha=1.0, seed=0),
            model=ModelSection(w=1, d=2, init_scale=0.1),
            optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
            train=TrainSection(mode=mode, steps=4, batch=4, num_evals=2, max_chunk=4),
        )
        sw.sweep(cfg, lrs=[1e-2], out=None, progress=True)
    assert len(titles) == 2 and titles[0] != titles[1]
    assert "expected" in titles[0] and "stochastic" in titles[1]
