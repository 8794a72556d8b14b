"""`phenomjax demo`: train, analyse, fit and compare on the embedded default, in minutes on a CPU.

    phenomjax demo                 # everything under ./runs
    phenomjax demo --out /tmp/x    # elsewhere
    phenomjax demo --fresh         # recompute everything

Layout under --out (default ./runs):
    demo/            the transformer run directory (phenomjax/configs/demo.toml)
    demo-fit/        the phenomenological fit (report.json, members.csv, sweeps/, refit/, best/)
                     and report.html, the fit on one self-contained page (`phenomjax report`)
    demo-figures/    demo_loss, demo_accuracy, demo_heatmap and demo_overlay (.png, .pdf; the
                     overlay's drawn data as demo_overlay.csv), and processed/ (the analysis
                     cache of the run's binned tables)

A second run reuses what it can (runs.reuse): a complete run directory with the same config is
not retrained (one cut short is resumed; one of another config is an error naming the field,
never overwritten), complete fit sweeps with the same grid are not swept again, the analysis
tables come from the content-keyed cache. --fresh removes the run and the fit folders first
(only the files phenomjax wrote there; anything else makes it an error) and rebuilds the
analysis tables. The fit grid is small on purpose (phenomjax/configs/fit_demo.toml): the whole
demo stays within ~5 minutes on 2 CPU cores; `phenomjax fit` runs the full default grid.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .analysis import RANK_SELECTIONS, process_run
from .analysis.binning import bin_label
from .analysis.plots import curves_from_bins, heatmap_figure, metric_figure, use_backend
from .analysis.settings import PlotSettings
from .config import load_config, to_dict
from .configs import packaged
from .fitting.fit import fit_run
from .fitting.grid import FitGridConfig, default_grid
from .fitting.html import write_html
from .fitting.overlay import overlay_figure
from .fitting.report import (
    FitReport,
    best_line,
    format_report,
    lag_lines,
    reproduction_lines,
)
from .runs import RunDir
from .runs.reuse import claim, ensure_run, remove_owned
from .transformer.train import TrainConfig, train


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    """What the demo did and found; `format_summary` prints it."""

    how: str  # the run: trained, reused, resumed
    cached_analysis: bool
    run: Path
    fit: Path
    figures: tuple[Path, ...]
    overlay: Path
    html: Path  # the fit's report page
    report: FitReport
    top_bin: str
    top_loss: float  # nats, at the last evaluation
    top_floor: float
    memorized_bits: float | None
    n_params: int | None
    wall_time_s: dict[str, float]


def analyse(run: RunDir, figures: Path, fresh: bool) -> tuple[list[Path], object]:
    """The analysis package's figures and binned tables (through its cache)."""
    p = process_run(run.path, ranks=RANK_SELECTIONS["low"], cache_dir=figures / "processed",
                    force=fresh)  # fmt: skip
    plot = PlotSettings()
    label = p.meta.get("label", run.path.name)
    curves = curves_from_bins(p.binned)
    paths = []
    for metric in ("loss", "accuracy"):
        d = metric_figure(curves, metric, plot=plot, title=f"demo run ({label}): {metric}",
                          out_dir=figures, name=f"demo_{metric}")  # fmt: skip
        paths += d.paths
    if p.positions is not None:
        paths += heatmap_figure(p.positions, plot=plot, title=f"demo run ({label})",
                                out_dir=figures, name="demo_heatmap").paths  # fmt: skip
    return paths, p


def binned_table(p) -> str:
    last = p.binned[p.binned["step"] == p.binned["step"].max()]
    lines = [f"  {'rank bin':<16}{'presentations':>14}{'loss':>8}{'floor':>8}{'accuracy':>9}"
             f"{'ceiling':>8}"]  # fmt: skip
    for _, r in last.iterrows():
        lines.append(
            f"  {bin_label(int(r.rank_lo), int(r.rank_hi)):<16}{r.presentations:>14.1f}"
            f"{r.loss:>8.4f}{r.get('floor', np.nan):>8.4f}{r.accuracy:>9.3f}"
            f"{r.get('ceiling', np.nan):>8.3f}"
        )
    return "\n".join(lines)


def _train(cfg: TrainConfig, out: Path, progress: bool) -> tuple[RunDir, str]:
    """The demo run: reused when finished with the same config, resumed when cut short."""
    go = lambda resume: train(cfg, out, resume=resume, progress=progress)  # noqa: E731
    return ensure_run(out, to_dict(cfg), kind="transformer", train=go)


def demo(
    out: str | Path = "runs",
    *,
    fresh: bool = False,
    progress: bool = True,
    config: str = "demo",
    grid: FitGridConfig | None = None,
    emit: Callable[[str], None] = lambda text: None,
) -> DemoSummary:
    """Run the demo; returns its summary (`format_summary` gives the text the command prints).

    `config` names an embedded training config (tests use "tiny"), `grid` replaces
    fit_demo.toml. `emit(text)` receives each stage's report as it finishes.
    """
    t0 = time.perf_counter()
    use_backend(False)
    out = Path(out)
    run_dir, fit_dir, figures = out / config, out / f"{config}-fit", out / f"{config}-figures"
    if fresh:
        for d in (run_dir, fit_dir):
            remove_owned(d)
    times = {}
    cfg = load_config(TrainConfig, packaged(config), [])
    t = time.perf_counter()
    run, how = _train(cfg, run_dir, progress)
    times["train_s"] = time.perf_counter() - t
    emit(f"[demo] run {run.path}: {how} ({times['train_s']:.1f} s)")

    t = time.perf_counter()
    claim(figures, "the demo's figures")
    paths, p = analyse(run, figures, fresh)
    times["analyse_s"] = time.perf_counter() - t
    emit(f"[demo] analysis ({'cached' if p.cached else 'computed'}, {times['analyse_s']:.1f} s): "
         "rank bins at the last evaluation\n" + binned_table(p))  # fmt: skip

    t = time.perf_counter()
    report = fit_run(run.path, fit_dir, grid or default_grid("fit_demo"), progress=progress)
    times["fit_s"] = time.perf_counter() - t
    emit(format_report(report))

    t = time.perf_counter()
    ov = overlay_figure(run.path, fit_dir, figures, name="demo_overlay")
    page = write_html(fit_dir, run.path)
    times["compare_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0
    last = p.binned[p.binned["step"] == p.binned["step"].max()]
    top = last[last["rank_lo"] == 0].iloc[0]
    return DemoSummary(
        how=how, cached_analysis=bool(p.cached), run=run.path, fit=fit_dir,
        figures=tuple(paths + ov.paths), overlay=figures / "demo_overlay.png", html=page,
        report=report,
        top_bin=bin_label(int(top.rank_lo), int(top.rank_hi)), top_loss=float(top.loss),
        top_floor=float(top.get("floor", np.nan)),
        memorized_bits=p.meta.get("memorized", {}).get("memorized_bits"),
        n_params=run.manifest().get("n_params"), wall_time_s=times,
    )  # fmt: skip


def format_summary(s: DemoSummary) -> str:
    """The demo's closing lines, as the command prints them."""
    t, r = s.wall_time_s, s.report
    bits = "unknown" if s.memorized_bits is None else f"{s.memorized_bits:.0f}"
    return "\n".join([
        "\n[demo] summary",
        f"  run:      {s.run} ({s.n_params} parameters, {s.how})",
        f"  figures:  {s.overlay.parent}/ (demo_loss, demo_accuracy, demo_heatmap, demo_overlay: "
        ".png/.pdf; demo_overlay.csv holds the drawn data)",
        f"  overlay:  {s.overlay}",
        f"  report:   {s.html} (the fit on one page: figures, tables, settings)",
        f"  fit:      {best_line(r)}",
        f"  {s.top_bin}: final loss {s.top_loss:.4f} nats vs Bayes floor {s.top_floor:.4f} "
        f"(ratio {s.top_loss / s.top_floor:.2f})",
        f"  memorized bits: {bits}",
        f"  noise reference: {r.run.noise}",
        *lag_lines(r, "  "),
        *reproduction_lines(r),  # the per-bin table is in the fit's report, printed above
        f"  wall time: {t['total_s']:.1f} s (train {t['train_s']:.1f}, analyse "
        f"{t['analyse_s']:.1f}, fit {t['fit_s']:.1f}, compare {t['compare_s']:.1f})",
    ])  # fmt: skip
