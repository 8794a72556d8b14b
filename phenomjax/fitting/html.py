"""One self-contained HTML page of a fit (`phenomjax report FITDIR`, docs/design.md §1).

    phenomjax report runs/demo-seeds-fit       # writes runs/demo-seeds-fit/report.html

The page holds the overlay (the run's or seed group's curves with the fit over them), the lag
figure (the transformer's lag ratios with their seed band, the fit's beside them), the verdict
table per rank bin, the lag table, whether the lag is reproduced, the settings and the wall
time. It reads report.json (the lag figure is drawn from the report's own lag rows, so figure
and table are the same numbers) and the fitted run for the overlay. The figures are embedded
as base64 PNG and the style is inline: the page needs no network and no other file. Every text
from a report or a path is escaped. It is written atomically into the fit folder, and only
into a folder phenomjax owns (runs.reuse).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path

import pandas as pd

from ..analysis.lag_plots import band_figure
from ..analysis.settings import PlotSettings
from ..errors import DataError
from ..runs.reuse import ReuseError, owned
from ..runs.storage import atomic_write_bytes
from .overlay import overlay_axes, overlay_data
from .report import (
    METHOD_NAMES,
    NOT_REFINED,
    FitReport,
    best_line,
    edge_line,
    ratio_header,
    ratio_text,
    reproduction_lines,
)

NAME = "report.html"
STYLE = """body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;
padding:.2em .6em;text-align:right}th{background:#eee}td.t,th.t{text-align:left}
img{max-width:100%;border:1px solid #ddd}p.note{color:#555}"""
TRANSFORMER, FIT = "transformer", "fit (best member)"


def fitted_run(rep: FitReport, fit_dir: Path) -> Path:
    """The run or group the fit was of, where report.json says (relative paths from the working
    directory or beside the fit folder, as `phenomjax fit` writes it); a DataError otherwise."""
    rec = Path(rep.run.inputs[0])
    where = [rec] if rec.is_absolute() else [rec, fit_dir.parent / rec.name]
    for w in where:
        if os.path.exists(w):
            return w
    raise DataError(f"report {fit_dir}: the fitted run {rec} (report.json run.inputs) is not "
                    "found; pass it with --run RUN")  # fmt: skip


def _num(x: float, fmt: str = ".2f", none: str = "-") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and math.isfinite(x) else none


def _bin(lo: int, hi: int) -> str:
    return f"{lo}-{hi - 1}"


def lag_band_of(rep: FitReport) -> pd.DataFrame:
    """The report's lag rows in analysis.lag_plots.lag_band's columns: the transformer's
    geometric mean with its [min, max] over the seeds that reach each level, and the fit's
    ratio (one run); the top bin at ratio 1. Empty when no bin below the top one has a row."""
    rows = []
    checks = [(v, x) for v in rep.verdicts for x in v.levels]
    top = next((v for v in rep.verdicts if v.top), None)
    for level in sorted({x.level for _, x in checks}):
        if top is not None:
            for exp, n in ((TRANSFORMER, rep.run.n_seeds), (FIT, 1)):
                rows.append((exp, level, top.rank_lo, top.rank_hi, 1.0, 1.0, 1.0, n, n, 0))
    for v, x in checks:
        ok = math.isfinite(x.ratio_ref) and x.ratio_ref > 0
        rows.append((TRANSFORMER, x.level, v.rank_lo, v.rank_hi, x.ratio_ref, x.ratio_lo,
                     x.ratio_hi, x.n_seeds if ok else 0, rep.run.n_seeds,
                     int(x.ratio_ref == 0)))  # fmt: skip
        fit = x.ratio_fit if x.compared else math.nan
        good = math.isfinite(fit) and fit > 0
        rows.append((FIT, x.level, v.rank_lo, v.rank_hi, fit, fit, fit, int(good), 1,
                     int(fit == 0)))  # fmt: skip
    cols = ["experiment", "level", "rank_lo", "rank_hi", "lag_ratio_mean", "lag_ratio_lo",
            "lag_ratio_hi", "lag_ratio_n", "n_runs", "n_zero"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def png_uri(fig, dpi: int) -> str:
    """A matplotlib figure as a data: URI of its PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table, every cell escaped; the first `left` columns align left."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}{' class=t' if i < left else ''}>{html.escape(str(v))}</{tag}>"
                       for i, v in enumerate(values))  # fmt: skip

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', head)}</tr>{body}</table>"


def verdict_table(rep: FitReport) -> str:
    """Per rank bin: matched points, log-loss RMSE, sigma, z, within the band, the lag."""
    pts = {(b.rank_lo, b.rank_hi): b for b in rep.best.score.bins}
    rows = []
    for v in rep.verdicts:
        b = pts.get((v.rank_lo, v.rank_hi))
        rows.append([_bin(v.rank_lo, v.rank_hi), str(b.n_points) if b else "0",
                     _num(b.log_loss_rmse, ".4f") if b else "-", _num(b.sigma, ".3f") if b
                     else "-", _num(v.z, ".2f", "no points"),
                     "within" if v.within_band else "OUT", v.lag])  # fmt: skip
    head = ["rank bin", "points", "log-loss RMSE", "sigma", "z", "band", "lag"]
    return table(head, rows)


def lag_table(rep: FitReport) -> str:
    """Per (bin, level) the transformer reaches in some seed: its ratio, the fit's, z_lag."""
    rows = []
    for v in rep.verdicts:
        for x in v.levels:
            fit = _num(x.ratio_fit) if x.compared and math.isfinite(x.ratio_fit) else (
                "never reaches" if x.compared else "-")  # fmt: skip
            rows.append([_bin(v.rank_lo, v.rank_hi), f"{x.level:.2f}",
                         ratio_text(x.ratio_ref, x.ratio_lo, x.ratio_hi, x.n_seeds), fit,
                         _num(x.z_lag), x.status])  # fmt: skip
    if not rows:
        return "<p>No bin below the top one reaches a level in any seed.</p>"
    head = ["rank bin", "level", ratio_header(rep.run.n_seeds), "fit", "z_lag", "verdict"]
    return table(head, rows)


def _flat(prefix: str, value) -> list[list[str]]:
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _flat(f"{prefix}.{k}" if prefix else k, v)]
    return [[prefix, str(value)]]


def settings_table(rep: FitReport) -> str:
    """The fit's settings (the grid, the rank edges, the holdout, the cost, the ranking)."""
    d = rep.to_json()["settings"]
    run = rep.run
    rows = [["run.inputs", ", ".join(run.inputs)], ["run.runs", ", ".join(run.runs)],
            ["run", f"{run.kind}, K={run.K}, L={run.L}, alpha={run.alpha:g}, batch {run.batch}, "
             f"{run.steps} steps, seed {run.seed}, status {run.status}"],
            ["label", str(run.label)], ["data", run.bits], ["noise reference", run.noise],
            ["phenomjax", rep.version]]  # fmt: skip
    grid = _flat("", d.pop("grid"))  # the grid config's own keys: grid.w, score.shift, ...
    return table(["setting", "value"], rows + grid + _flat("", d), left=2)


def wall_table(rep: FitReport) -> str:
    t = rep.timings
    rows = [["total", f"{t.total_s:.1f}"], ["refit", f"{t.refit_s:.1f}"],
            ["refine", f"{t.refine_s:.1f}"], ["sweeps", f"{t.sweep_s:.1f}"]] + [
            [f"{m} sweep done at", f"{s:.1f}"] for m, s in t.per_mode]  # fmt: skip
    return table(["part", "seconds"], rows)


def refine_section(rep: FitReport) -> str:
    """The gradient refinement: each knob at its start and at the refined optimum, the
    surrogate, the gradient norm, the refined member's total against its start's, and the grid
    edges the best sits on."""
    e = html.escape
    edges = "".join(f"<li>{e(edge_line(x))}</li>" for x in rep.on_edge)
    f = rep.refined
    if f is None:
        return f"<ul>{edges}<li>{e(NOT_REFINED)}</li></ul>"
    m = f.member
    rows = [[e(k), _num(a, ".4g"), _num(b, ".4g")]
            for k, a, b in zip(f.knobs, f.before, f.after, strict=True)]  # fmt: skip
    rows += [["surrogate", _num(f.objective_before, ".4f"), _num(f.objective_after, ".4f")]]
    if f.total is not None:
        rows += [["total (scored as a member)", _num(f.start_total, ".4f"), _num(f.total, ".4f")]]
    note = (f"From the {e(f.mode)} member {e(m.optimizer)} w={m.w} d={m.d}: {f.steps} "
            f"{METHOD_NAMES[f.method]} steps on the log knobs; gradient norm at the refined "
            f"optimum {_num(f.grad_norm, '.3g')}.")  # fmt: skip
    if f.trace:
        note += f" Surrogate per step: {' '.join(_num(v, '.4f') for v in f.trace)}."
    return (f"<p>{note}</p>" + table(["", "start", "refined"], rows)
            + (f"<ul>{edges}</ul>" if edges else ""))  # fmt: skip


def render(rep: FitReport, title: str, overlay_uri: str, lag_uri: str | None) -> str:
    """The page's text: the figures (data: URIs), the tables, the settings, the wall time."""
    e = html.escape
    repro = "".join(f"<li>{e(line.strip())}</li>" for line in reproduction_lines(rep))
    lag_img = (f'<img alt="lag ratios" src="{lag_uri}">' if lag_uri else
               "<p>No lag figure: no bin below the top one reaches a level.</p>")  # fmt: skip
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>best member: {e(best_line(rep))}</p>",
        f'<p class="note">noise reference: {e(rep.run.noise)}. z = a bin\'s log-loss RMSE / its '
        "noise sigma; total = root mean of band² and lag² (ranks the members).</p>",
        "<h2>Overlay</h2>", f'<img alt="overlay of the fit on the run" src="{overlay_uri}">',
        "<h2>Lag</h2>", lag_img,
        "<h2>Verdict per rank bin</h2>", verdict_table(rep),
        "<h2>Lag ratios</h2>", lag_table(rep),
        f"<h2>Reproduced?</h2><ul>{repro}</ul>",
        "<h2>Refinement</h2>", refine_section(rep),
        "<h2>Settings</h2>", settings_table(rep),
        "<h2>Wall time (s)</h2>", wall_table(rep),
        "</body></html>",
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


def write_html(
    fit_dir: str | os.PathLike,
    run: str | os.PathLike | None = None,
    plot: PlotSettings | None = None,
) -> Path:
    """Write FIT/report.html (see the module docstring) and return its path. `run` is what the
    fit was of (default: where report.json says)."""
    fit_dir = Path(fit_dir)
    plot = plot or PlotSettings()
    if not (fit_dir / "report.json").is_file():
        raise DataError(f"{fit_dir}: not a fit folder (no report.json); expected the folder "
                        "`phenomjax fit RUN` wrote")  # fmt: skip
    rep = FitReport.load(fit_dir / "report.json")
    if not owned(fit_dir):
        raise ReuseError(f"{fit_dir}: not a folder phenomjax wrote; the report is written only "
                         "into a fit folder")  # fmt: skip
    run_path = Path(run) if run is not None else fitted_run(rep, fit_dir)
    data, elabel, flabel = overlay_data(run_path, fit_dir)
    overlay_uri = png_uri(overlay_axes(data, elabel, flabel, plot, bool(data.attrs.get(
        "fresh_bits"))), plot.dpi)  # fmt: skip
    band = lag_band_of(rep)
    lag_uri = None
    if len(band):
        drawn = band_figure(band, [TRANSFORMER, FIT], plot=plot, keep=True,
                            title=f"{elabel.split(':')[0]}: lag of rarer rank bins")  # fmt: skip
        lag_uri = png_uri(drawn.figure, plot.dpi)
    title = f"fit of {rep.run.inputs[0]}" + (f" ({rep.run.n_seeds} seeds)"
                                            if rep.run.n_seeds > 1 else "")  # fmt: skip
    path = fit_dir / NAME
    atomic_write_bytes(path, render(rep, title, overlay_uri, lag_uri).encode("utf-8"))
    return path
