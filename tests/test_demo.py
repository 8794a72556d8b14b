"""`phenomjax demo`: end to end on the tiny embedded config (fast), reuse on a second run,
--fresh, and the real demo under the 5-minute budget (slow)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from phenomjax.analysis.binning import default_edges
from phenomjax.analysis.lag import rank_crossings
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.data import make_bits, zipf_weights
from phenomjax.demo import demo, format_summary
from phenomjax.errors import RunDirError
from phenomjax.fitting import FitReport
from phenomjax.fitting.grid import FitGridConfig, GridSection, OptimizerEntry
from phenomjax.phenom.sweep import read_sweep
from phenomjax.runs import RunDir

TINY_GRID = FitGridConfig(
    grid=GridSection(mode=("expected", "stochastic"), w=(1,), d=(2,), scale=(0.1,),
                     refit_seeds=3, num_evals=8),
    optimizers=(OptimizerEntry(lr=(1e-2, 3e-2)),),
)  # fmt: skip
FIGURES = ("demo_loss.png", "demo_accuracy.png", "demo_heatmap.png", "demo_overlay.png",
           "demo_overlay.pdf", "demo_overlay.csv")  # fmt: skip


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, demo(out, config="tiny", grid=TINY_GRID, progress=False)


def test_demo_end_to_end_on_tiny(first, capsys):
    out, s = first
    assert s.how == "trained"
    for name in FIGURES:
        assert (out / "tiny-figures" / name).stat().st_size > 1000, name
    data = pd.read_csv(out / "tiny-figures" / "demo_overlay.csv")
    assert set(data.source) == {"empirical", "fit"}
    assert (out / "tiny-fit" / "report.json").is_file()
    # the summary's numbers against independent computations from the files the demo wrote
    ev = RunDir(out / "tiny").read_evals()
    m = RunDir(out / "tiny").manifest()
    last = ev[ev.step == ev.step.max()].sort_values("rank")
    floor, _ = per_sequence_floor(make_bits(m["seed"], m["K"], m["L"]), zipf_weights(m["K"]))
    assert s.top_loss == pytest.approx(last.loss.to_numpy()[:5].mean(), rel=1e-5)
    assert s.top_floor == pytest.approx(floor[:5].mean(), rel=1e-5)
    per_seq = (m["L"] - 1) * (1 - last.loss.to_numpy(np.float64) / np.log(2))
    assert s.memorized_bits == pytest.approx(np.clip(per_seq, 0, None).sum(), rel=1e-4)
    report = FitReport.load(out / "tiny-fit" / "report.json")
    assert report.same_fit(s.report) and len(report.best.per_seed) == 3
    assert s.top_bin == "ranks 0-4" and s.overlay == out / "tiny-figures" / "demo_overlay.png"
    assert set(s.wall_time_s) == {"train_s", "analyse_s", "fit_s", "compare_s", "total_s"}
    text = format_summary(s)
    assert s.html == out / "tiny-fit" / "report.html" and f"report:   {s.html}" in text
    figures = 2 if any(v.levels for v in report.verdicts) else 1  # the lag figure, if a lag
    assert s.html.read_text().count('src="data:image/png;base64,') == figures
    rmse = f"log-loss RMSE {report.best.score.rmse:.4f}"
    assert rmse in text and "spread over a bin's ranks (one run)" in text  # the one RMSE


def test_stochastic_fit_sees_the_transformers_batches(first):
    """Same seed, sampler and key stream: the stochastic sweep counts the run's presentations."""
    out, _ = first
    _, curves = read_sweep(out / "tiny-fit" / "sweeps" / "stochastic", [0])
    ev = RunDir(out / "tiny").read_evals()
    last = int(ev.step.max())
    a = curves[curves.step == last].sort_values("rank").presentations.to_numpy()
    b = ev[ev.step == last].sort_values("rank").presentations.to_numpy()
    np.testing.assert_array_equal(a, b)


def test_demo_second_run_reuses_everything(first, capsys):
    out, s = first
    stamp = (out / "tiny" / "evals.parquet").stat().st_mtime_ns
    sweeps = (out / "tiny-fit" / "sweeps" / "expected" / "sweep.parquet").stat().st_mtime_ns
    report = (out / "tiny-fit" / "report.json").read_bytes()
    again = demo(out, config="tiny", grid=TINY_GRID, progress=False)
    assert (out / "tiny-fit" / "report.json").read_bytes() == report  # reuse rewrites nothing
    assert again.how == "reused" and again.cached_analysis and again.report.outcome == "reused"
    assert (out / "tiny" / "evals.parquet").stat().st_mtime_ns == stamp
    assert (out / "tiny-fit" / "sweeps" / "expected" / "sweep.parquet").stat().st_mtime_ns == sweeps
    assert again.report.same_fit(s.report)  # NaN lag scores: compared as text
    assert capsys.readouterr().out == ""  # the library reports through emit, never prints
    assert "[demo] summary" in format_summary(again)


@pytest.mark.slow  # a whole second demo; test_fresh_never_removes_what_it_did_not_write stays
def test_demo_fresh_recomputes(first):
    out, _ = first
    before = pd.read_parquet(out / "tiny" / "evals.parquet")
    stamp = (out / "tiny" / "evals.parquet").stat().st_mtime_ns
    g = dataclasses.replace(TINY_GRID.grid, mode=("expected",), refit_seeds=1)
    again = demo(out, config="tiny", grid=dataclasses.replace(TINY_GRID, grid=g), progress=False,
                 fresh=True)  # fmt: skip
    assert again.how == "trained" and not again.cached_analysis
    assert (out / "tiny" / "evals.parquet").stat().st_mtime_ns != stamp
    assert not (out / "tiny-fit" / "sweeps" / "stochastic").exists()  # the old fit was removed
    # retrained from scratch to the same numbers (one seed: deterministic on CPU)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "tiny" / "evals.parquet"), before)


def test_demo_refuses_a_run_of_another_config(first, tmp_path, capsys):
    out, _ = first
    other = tmp_path / "tiny"
    shutil.copytree(out / "tiny", other)
    m = json.loads((other / "manifest.json").read_text())
    m["config"]["train"]["steps"] += 1
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(RunDirError, match=f"{other}: holds a run of another config: train.steps"):
        demo(tmp_path, config="tiny", grid=TINY_GRID, progress=False)
    assert json.loads((other / "manifest.json").read_text()) == m  # left as it was


def test_fresh_never_removes_what_the_demo_did_not_write(first, tmp_path):
    out, _ = first
    shutil.copytree(out / "tiny", tmp_path / "tiny")
    (tmp_path / "tiny" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="notes.txt"):
        demo(tmp_path, config="tiny", grid=TINY_GRID, progress=False, fresh=True)
    assert (tmp_path / "tiny" / "notes.txt").read_text() == "mine"
    assert RunDir(tmp_path / "tiny").exists()  # nothing was deleted


@pytest.mark.slow
def test_real_demo_within_five_minutes(tmp_path, capsys):
    t = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    wall = time.perf_counter() - t
    text = capsys.readouterr().out
    assert "Bayes floor" in text and (tmp_path / "demo-figures" / "demo_overlay.png").is_file()
    assert "lag reproduced by the best" in text and "one run" in text and "lag ratio" in text
    assert wall < 300, f"demo took {wall:.0f} s"
    # the demo's regime: at least 4 of its 6 rank bins end below half their initial excess loss
    # (median rank of the bin), so the lag table compares bins that learn
    run = RunDir(tmp_path / "demo")
    m = run.manifest()
    ev = run.read_evals()
    floor = per_sequence_floor(make_bits(m["seed"], m["K"], m["L"]), zipf_weights(m["K"], 1.0))[0]
    cr = rank_crossings(ev, [0.5], floor=floor)
    edges = default_edges(m["K"])
    b = np.searchsorted(edges, cr["rank"].to_numpy(), side="right") - 1
    med = [np.median(cr["final_excess"].to_numpy()[b == k]) for k in range(len(edges) - 1)]
    assert len(med) == 6 and sum(x < 0.5 for x in med) >= 4, med


def test_results_page_reads_the_demo_and_names_what_is_missing(first):
    """scripts/results.py: its numbers are the demo's own (rank bins, memorized bits, the fit's
    lag lines), and a section without its runs names the command that makes them."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "results.py"
    spec = importlib.util.spec_from_file_location("results_script", path)
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    out, s = first
    text = "\n".join(results.demo_section(out, name="tiny"))
    assert f"Memorized bits: {s.memorized_bits:.0f}" in text
    assert "| ranks 0-4 |" in text and f"{s.top_loss:.4g}" in text
    assert "lag reproduced by the best:" in text
    missing = "\n".join(results.capacity_section(out))
    assert "Not measured in this build" in missing and "phenomjax capacity" in missing
