"""`phenomjax demo`: train, analyse, fit and compare on the embedded default, in minutes on a CPU.

    phenomjax demo                 # everything under ./runs
    phenomjax demo --out /tmp/x    # elsewhere
    phenomjax demo --fresh         # recompute everything

Layout under --out (default ./runs):
    demo/            the transformer run directory (phenomjax/configs/demo.toml)
    demo-fit/        the phenomenological fit (report.json, sweeps/, refit/, best/)
    demo-figures/    analysis figures (loss, accuracy, heatmap), the overlay, and processed/
                     (the analysis cache of the run's binned tables)

A second run reuses what it can: a complete run directory with the same config is not
retrained (one cut short is resumed; one of another config is an error, never overwritten),
complete fit sweeps with the same grid are not swept again, the analysis tables come from the
content-keyed cache. --fresh deletes the three folders first. The fit grid is small on
purpose (phenomjax/configs/fit_demo.toml): the whole demo stays within ~5 minutes on 2 CPU
cores; `phenomjax fit` runs the full default grid (fit.toml).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .analysis import RANK_SELECTIONS, process_run
from .analysis.binning import bin_label
from .analysis.overlay import overlay_figure
from .analysis.plots import curves_from_bins, heatmap_figure, metric_figure, use_backend
from .analysis.settings import PlotSettings
from .config import load_config, to_dict
from .errors import RunDirError
from .phenom.fit import FitGridConfig, default_grid, fit_run, format_report, grid_config
from .runs import RunDir, jsonable
from .transformer.train import TrainConfig, embedded_config, train

# The demo's fit grid is phenomjax/configs/fit_demo.toml; as fit_run keywords for callers
# that spread it (fit_run(run, out, **DEMO_GRID)).
DEMO_GRID = {"config": default_grid("fit_demo")}


def ensure_trained(cfg: TrainConfig, out: Path, progress: bool) -> tuple[RunDir, str]:
    """The demo run: reused when complete with the same config, resumed when cut short."""
    run = RunDir(out)
    if run.exists():
        m = run.manifest()
        if m.get("config") != jsonable(to_dict(cfg)):
            raise RunDirError(
                f"{run.path}: holds a run of another config than the embedded demo; "
                "pass --fresh to replace it or --out to use another folder"
            )
        if m.get("status") == "complete":
            return run, "reused"
        if run.has_checkpoint():
            return train(cfg, out, resume=True, progress=progress), "resumed"
        shutil.rmtree(out)  # the demo's own run, cut short before its first checkpoint
    return train(cfg, out, progress=progress), "trained"


def analyse(run: RunDir, figures: Path) -> tuple[list[Path], object]:
    """The analysis package's figures and binned tables (through its cache)."""
    p = process_run(run.path, ranks=RANK_SELECTIONS["low"], cache_dir=figures / "processed")
    plot = PlotSettings()
    label = p.meta.get("label", run.path.name)
    curves = curves_from_bins(p.binned)
    paths = []
    for metric in ("loss", "accuracy"):
        d = metric_figure(curves, metric, plot=plot, title=f"demo run ({label}): {metric}",
                          out_dir=figures, name=f"demo-{metric}")  # fmt: skip
        paths += d.paths
    if p.positions is not None:
        paths += heatmap_figure(p.positions, plot=plot, title=f"demo run ({label})",
                                out_dir=figures, name="demo-heatmap").paths  # fmt: skip
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


def demo(
    out: str | Path = "runs",
    *,
    fresh: bool = False,
    progress: bool = True,
    config: str = "demo",
    grid: FitGridConfig | dict | None = None,
    emit: Callable[[str], None] = lambda text: None,
) -> dict:
    """Run the demo; returns its summary (`format_summary` gives the text the command prints).

    `config` names an embedded training config (tests use "tiny"), `grid` replaces fit_demo.toml
    (a FitGridConfig, or fit_run's old keywords applied on top of fit_demo.toml).
    `emit(text)` receives each stage's report as it finishes (the command prints them).
    """
    t0 = time.perf_counter()
    use_backend(False)
    out = Path(out)
    run_dir, fit_dir, figures = out / config, out / f"{config}-fit", out / f"{config}-figures"
    if fresh:
        for d in (run_dir, fit_dir, figures):
            if d.exists():
                shutil.rmtree(d)
    times = {}
    cfg = load_config(TrainConfig, embedded_config(config), [])
    t = time.perf_counter()
    run, how = ensure_trained(cfg, run_dir, progress)
    times["train_s"] = time.perf_counter() - t
    emit(f"[demo] run {run.path}: {how} ({times['train_s']:.1f} s)")

    t = time.perf_counter()
    paths, p = analyse(run, figures)
    times["analyse_s"] = time.perf_counter() - t
    how_analysed = "cached" if p.cached else "computed"
    emit(
        f"[demo] analysis ({how_analysed}, {times['analyse_s']:.1f} s): rank bins at the last "
        "evaluation\n" + binned_table(p)
    )

    t = time.perf_counter()
    base = default_grid("fit_demo")
    if isinstance(grid, dict):
        grid = grid_config(base, **grid)
    report = fit_run(run.path, fit_dir, grid or base, progress=progress)
    times["fit_s"] = time.perf_counter() - t
    emit(format_report(report))

    t = time.perf_counter()
    ov = overlay_figure(run.path, fit_dir, figures, name="overlay")
    times["compare_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0

    last = p.binned[p.binned["step"] == p.binned["step"].max()]
    top = last[last["rank_lo"] == 0].iloc[0]
    summary = {
        "how": how,
        "cached_analysis": p.cached,
        "run": str(run.path),
        "fit": str(fit_dir),
        "figures": [str(x) for x in paths + ov.paths],
        "overlay": str(figures / "overlay.png"),
        "score_mean": report["score_mean"],
        "lag": report["lag"],
        "verdicts": report["verdicts"],
        "reproduces_lag": report["reproduces_lag"],
        "sign_knob": report["sign_knob"],
        "noise": report["noise"],
        "score_std": report["score_std"],
        "best": (b := report["best"]),
        "shift": report["shift"],
        "top_bin": bin_label(int(top.rank_lo), int(top.rank_hi)),
        "top_loss": float(top.loss),
        "top_floor": float(top.get("floor", np.nan)),
        "memorized_bits": p.meta.get("memorized", {}).get("memorized_bits"),
        "wall_time_s": times,
    }
    summary["n_params"] = run.manifest().get("n_params")
    bound = " (at its bound)" if report["shift_at_bound"] else ""
    summary["fit_line"] = (
        f"{b['mode']} {b['optimizer']} {b['param']} w={b['w']:g} d={b['d']:g} lr={b['lr']:g} "
        f"scale={b['scale']:g}, "
        f"presentations x {report['shift']:.2f}{bound}"
        f"; band {report['band_score']:.2f}, lag {report['lag_score']:.2f} (seed-band units); "
        f"log-loss RMSE {report['score_mean']:.4f} +- "
        f"{report['score_std']:.4f} over {len(report['per_seed'])} seeds, accuracy RMSE "
        f"{report['accuracy_rmse']:.4f}"
    )
    return summary


def lag_lines(summary: dict) -> str:
    """The lag table (transformer vs fit, per bin and level) and the per-bin verdicts."""
    head = f"  {'rank bin':<16}{'level':>6}{'transformer lag [range]':>26}{'fit':>8}{'z':>6}"
    lines = [f"  noise reference: {summary['noise']}", head]
    for x in summary["lag"]:
        lines.append(
            f"  {bin_label(x['rank_lo'], x['rank_hi']):<16}{x['level']:>6.2f}"
            f"{x['ratio_ref']:>12.2f} [{x['ratio_ref_lo']:.2f}, {x['ratio_ref_hi']:.2f}]"
            f"{x['ratio_fit']:>9.2f}{x['z_lag']:>6.1f}"
        )
    for v in summary["verdicts"]:
        band = "within the seed band" if v["within_band"] else "outside the seed band"
        lines.append(
            f"  {bin_label(v['rank_lo'], v['rank_hi']):<16}z {v['z']:.1f}: {band}; lag {v['lag']}"
        )
    lines.append(f"  lag reproduced: {'yes' if summary['reproduces_lag'] else 'no'}; "
                 f"sign set by: {summary['sign_knob']}")  # fmt: skip
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """The demo's closing lines, as the command prints them."""
    t = summary["wall_time_s"]
    return (
        "\n[demo] summary\n"
        f"  run:      {summary['run']} ({summary['n_params']} parameters, {summary['how']})\n"
        f"  figures:  {Path(summary['overlay']).parent}/ (demo-loss, demo-accuracy, demo-heatmap, "
        "overlay: .png/.pdf; overlay.csv holds the drawn data)\n"
        f"  overlay:  {summary['overlay']}\n"
        f"  fit:      {summary['fit_line']}\n"
        f"  {summary['top_bin']}: final loss {summary['top_loss']:.4f} nats vs Bayes floor "
        f"{summary['top_floor']:.4f} (ratio {summary['top_loss'] / summary['top_floor']:.2f})\n"
        f"  memorized bits: {summary['memorized_bits']:.0f}\n"
        f"{lag_lines(summary)}\n"
        f"  wall time: {t['total_s']:.1f} s (train {t['train_s']:.1f}, analyse "
        f"{t['analyse_s']:.1f}, fit {t['fit_s']:.1f}, compare {t['compare_s']:.1f})"
    )
