"""The analysis of `phenomjax analyze` (docs/design.md §5): inputs -> processed runs -> figures
and tables, with nothing printed (progress goes to an `emit` callback; the CLI prints).

What is analysed is a list of members, each a curve set with its own name, label and figures:
a run, or a seed group (several runs differing only in seed, drawn as their mean with a
min-max band and summarized over seeds). A group folder (`phenomjax train --seeds` writes one:
seed-<s> subfolders) is a group by itself; `group=NAME` makes every run named one group.

Figures are `<stem>_<quantity>.png` (and .pdf, and the drawn rows as .csv) in one figures
folder: the stem is the experiment's name when one member is analysed, else the member's, and
figures across members (lag, comparative) carry the experiment's name.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..runs.reuse import claim
from ..runs.storage import atomic_write, safe_name
from . import lag, plots, summaries
from .binning import RANK_SELECTIONS, bin_label
from .cache import Processed, process_run
from .groups import band, check_group, seed_runs, unique_names
from .load import check_path
from .settings import AnalysisConfig

METRIC_FIGURES = (("loss", "line", "loss"), ("loss", "scatter", "loss_scatter"),
                  ("accuracy", "line", "accuracy"))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Request:
    """What to analyse and draw (the CLI's flags, resolved against the config)."""

    paths: Sequence[Path]  # runs, legacy logs or group folders
    experiment: str  # the name figures across members and the tables carry
    selection_name: str = "selected"  # a rank selection, or "all" (rank bins)
    selection_given: bool = False  # named by the user (then also honoured by comparative)
    group: str | None = None  # every run one seed group of this name
    comparative: bool = False  # per rank bin (or selected rank), one curve per member
    figures: Path | None = None  # folder of the figures; None: none written
    cache: Path | None = None  # processed-table cache
    force: bool = False  # rebuild cached tables
    keep: bool = False  # keep figures open (to be shown)


@dataclasses.dataclass
class Member:
    """A run or a seed group, as figures and tables name and summarize it."""

    name: str  # unique, a file name
    label: str  # what its config is, unique among the members
    runs: list[Processed]
    run_names: list[str]  # the `run` column of its rows
    group: bool

    @property
    def legend(self) -> str:
        """The label, and for a group how many seeds it has."""
        return f"{self.label} ({len(self.runs)} seeds)" if self.group else self.label


@dataclasses.dataclass
class Analysis:
    experiment: str
    members: list[Member]
    binned: pd.DataFrame  # every run's bins: run, member, label, experiment columns
    lags: pd.DataFrame  # per run lag.bin_lag, with run and member
    gaps: pd.DataFrame  # per run lag.loss_gap, with run and member
    thresholds: pd.DataFrame  # per run summaries.thresholds
    runs: pd.DataFrame  # per run summaries.run_summary
    floor_known: bool
    figures: list[Path] = dataclasses.field(default_factory=list)


def selection(cfg: AnalysisConfig, name: str) -> list[int] | None:
    """The ranks of a rank selection (the config's or the built-in ones); None for "all"."""
    sels = {**RANK_SELECTIONS, **cfg.rank_selections}
    if name == "all":
        return None
    if name not in sels:
        raise ConfigError(
            f"--rank-selection {name!r}: expected one of {sorted(sels) + ['all']} "
            f"(rank selections of {cfg.source})"
        )
    return list(sels[name])


def _inputs(req: Request) -> list[tuple[str | None, list[Path], bool]]:
    """(member name or None for the run's own, its runs, whether a group) per member; every
    run checked to exist before anything is read."""
    parts = [(p, seed_runs(p)) for p in req.paths]
    for p, seeds in parts:
        for r in seeds or [p]:
            check_path(r)
    if req.group:
        return [(req.group, [r for p, s in parts for r in (s or [p])], True)]
    return [(Path(p).name if s else None, s or [Path(p)], bool(s)) for p, s in parts]


def _members(cfg: AnalysisConfig, req: Request, inputs: list, emit: Callable[[str], None]):
    """Every member of `inputs` (`_inputs`) processed, named and labelled uniquely."""
    ranks = sorted({r for s in (*RANK_SELECTIONS.values(), *cfg.rank_selections.values())
                    for r in s})  # fmt: skip
    s = cfg.summary
    out = []
    for name, paths, group in inputs:
        runs = []
        for p in paths:
            t0 = time.perf_counter()
            r = process_run(p, edges=cfg.edges, ranks=ranks, levels=s.lag_levels,
                            steps_per_epoch=cfg.legacy.steps_per_epoch, cache_dir=req.cache,
                            per_decade=s.matched_per_decade, force=req.force)  # fmt: skip
            how = "cache" if r.cached else "processed"
            emit(f"  {p}: {r.meta['label']} ({how}, {time.perf_counter() - t0:.2f} s)")
            runs.append(r)
        if group:
            check_group([r.meta for r in runs])
        out.append(Member(name or runs[0].meta["name"], runs[0].meta["label"], runs, [], group))
    names = unique_names([safe_name(m.name, what="experiment, group or run name") for m in out])
    labels = [m.label for m in out]
    for m, n in zip(out, names, strict=True):
        m.name = n
        m.label = m.label if labels.count(m.label) == 1 else f"{m.label} [{n}]"
        seeds = unique_names([r.meta["name"] for r in m.runs])
        m.run_names = [f"{n}/{s}" for s in seeds] if m.group else [n]
    return out


def _curves(m: Member, sel: list[int] | None) -> pd.DataFrame:
    """A member's curves for the metric figures: per rank, per block of ranks (a group with a
    long selection) or per bin; a group's as the mean with its band over seeds."""
    blocks = m.group and sel is not None and len(sel) > plots.QUALITATIVE_MAX
    parts = []
    for name, r in zip(m.run_names, m.runs, strict=True):
        if sel is None:
            c = plots.curves_from_bins(r.binned)
        else:
            c = (plots.curves_from_blocks if blocks else plots.curves_from_ranks)(r.ranks, sel)
        parts.append(c.assign(run=name))
    curves = pd.concat(parts, ignore_index=True)
    out = band(curves) if m.group else curves
    out.attrs = dict(m.runs[0].binned.attrs)
    return out


def _member_figures(m: Member, req: Request, cfg: AnalysisConfig, stem: str) -> list[Path]:
    sel = selection(cfg, req.selection_name)
    curves = _curves(m, sel)
    if len(curves) == 0:
        return []
    what = "rank bins" if sel is None else f"{req.selection_name} ranks"
    if m.group and sel is not None and len(sel) > plots.QUALITATIVE_MAX:
        what += " in blocks of consecutive ranks"
    written = []
    for metric, style, quantity in METRIC_FIGURES:
        d = plots.metric_figure(
            curves, metric, plot=cfg.plot, title=f"{req.experiment}: {m.legend}, {what}",
            style=style, out_dir=req.figures, name=f"{stem}_{quantity}_{req.selection_name}",
            keep=req.keep,
        )  # fmt: skip
        written += d.paths
    pos = [(n, r.positions) for n, r in zip(m.run_names, m.runs, strict=True)
           if r.positions is not None]  # fmt: skip
    if pos:
        table = pd.concat([p.assign(run=n) for n, p in pos], ignore_index=True)
        if len(pos) > 1:  # a group: the mean over its seeds at every cell
            keys = ["rank_lo", "rank_hi", "step", "position"]
            table = table.groupby(keys, sort=True).mean(numeric_only=True).reset_index()
        seeds = f", mean over {len(pos)} seeds" if len(pos) > 1 else ""
        d = plots.heatmap_figure(table, plot=cfg.plot, title=f"{req.experiment}: {m.label}{seeds}",
                                 out_dir=req.figures, name=f"{stem}_loss_heatmap",
                                 keep=req.keep)  # fmt: skip
        written += d.paths
    return written


def _comparative_rows(m: Member, sel: list[int] | None) -> pd.DataFrame:
    """A member's rows for the comparative figures: its bins, or its selected ranks as bins
    of one rank; a group's banded over seeds; `run` is the member's name."""
    parts = []
    for name, r in zip(m.run_names, m.runs, strict=True):
        if sel is None:
            t = r.binned
        else:
            t = r.ranks[r.ranks["rank"].isin(sel)]
            t = t.assign(rank_lo=t["rank"], rank_hi=t["rank"] + 1).drop(columns="rank")
        parts.append(t.assign(run=name))
    rows = pd.concat(parts, ignore_index=True)
    if m.group:
        rows = band(rows, keys=("rank_lo", "rank_hi", "step"))
    return rows.assign(run=m.name)


def _comparative(members: list[Member], req: Request, cfg: AnalysisConfig) -> list[Path]:
    sel = selection(cfg, req.selection_name) if req.selection_given else None
    rows = pd.concat([_comparative_rows(m, sel) for m in members], ignore_index=True)
    rows.attrs = dict(members[0].runs[0].binned.attrs)
    labels = {m.name: m.legend for m in members}
    bins = rows[["rank_lo", "rank_hi"]].drop_duplicates().sort_values("rank_lo")
    if cfg.plot.max_comparative_bins:
        bins = bins.head(cfg.plot.max_comparative_bins)
    written = []
    for lo, hi in bins.itertuples(index=False):
        quantity = "comparative_" + bin_label(int(lo), int(hi)).replace(" ", "_")
        d = plots.comparative_figure(
            rows, int(lo), int(hi), labels, plot=cfg.plot, title=req.experiment,
            out_dir=req.figures, name=f"{req.experiment}_{quantity}", keep=req.keep,
        )  # fmt: skip
        written += d.paths
    return written


def _tables(members: list[Member], cfg: AnalysisConfig, experiment: str) -> dict:
    edges = list(cfg.edges) or None
    pairs = [(m, n, r) for m in members for n, r in zip(m.run_names, m.runs, strict=True)]
    binned = pd.concat(
        [r.binned.assign(run=n, member=m.name, label=m.legend, experiment=experiment)
         for m, n, r in pairs], ignore_index=True,
    )  # fmt: skip
    lags = pd.concat([lag.bin_lag(r.crossings, edges, r.meta["K"]).assign(run=n, member=m.name)
                      for m, n, r in pairs], ignore_index=True)  # fmt: skip
    gaps = pd.concat([lag.loss_gap(r.matched).assign(run=n, member=m.name)
                      for m, n, r in pairs], ignore_index=True)  # fmt: skip
    s = cfg.summary
    thr = summaries.thresholds(binned.drop(columns=["member", "label", "experiment"]),
                               s.reach_level, s.loss_threshold or None,
                               s.accuracy_threshold or None)  # fmt: skip
    runs = summaries.run_summary([{**r.meta, "name": n} for _, n, r in pairs])
    floor = all(r.meta.get("floor_known", True) for _, _, r in pairs)
    return {"binned": binned, "lags": lags, "gaps": gaps, "thresholds": thr, "runs": runs,
            "floor_known": floor}  # fmt: skip


def analyze(
    cfg: AnalysisConfig, req: Request, emit: Callable[[str], None] = lambda _: None
) -> Analysis:
    """Process every run of `req` (through the cache), draw its figures, build its tables."""
    plots.use_backend(req.keep)
    experiment = safe_name(req.experiment, what="experiment name")
    req = dataclasses.replace(req, experiment=experiment)
    selection(cfg, req.selection_name)  # a bad name fails before any work
    inputs = _inputs(req)  # every input exists before anything is printed
    if req.figures is not None:  # an output folder of someone else's is refused before any work
        claim(req.figures, "figures")
    groups = [name for name, _, group in inputs if group]
    emit(f"experiment {experiment}: {sum(len(p) for _, p, _ in inputs)} run(s)"
         + (f", seed group(s) {', '.join(groups)}" if groups else ""))  # fmt: skip
    members = _members(cfg, req, inputs, emit)
    result = Analysis(experiment, members, **_tables(members, cfg, experiment))
    if req.comparative:
        result.figures += _comparative(members, req, cfg)
    else:
        for m in members:
            stem = experiment if len(members) == 1 else m.name
            result.figures += _member_figures(m, req, cfg, stem)
    lags = result.lags.assign(experiment=[_member_label(members, k) for k in result.lags.member])
    d = plots.lag_figure(lags, plot=cfg.plot, title=f"{experiment}: lag of rarer rank bins",
                         out_dir=req.figures, name=f"{experiment}_lag", keep=req.keep)  # fmt: skip
    result.figures += d.paths
    return result


def _member_label(members: list[Member], name: str) -> str:
    return next(m.label for m in members if m.name == name)


def summary_table(a: Analysis) -> pd.DataFrame:
    """One row per run and rank bin: thresholds, the lag per level, the log-loss gap, the run's
    memorized bits (what --export-summary writes)."""
    wide = a.lags.pivot_table(
        index=["run", "rank_lo", "rank_hi"], columns="level",
        values=["median_presentations", "lag_ratio", "n_reached"],
    )  # fmt: skip
    wide.columns = [f"{v}_{lv:g}" for v, lv in wide.columns]
    keys = ["run", "rank_lo", "rank_hi"]
    return (a.thresholds.merge(wide.reset_index(), on=keys, how="left")
            .merge(a.gaps[[*keys, "log_loss_gap"]], on=keys, how="left")
            .merge(a.runs, on="run", how="left"))  # fmt: skip


def write_table(df: pd.DataFrame, path: Path, flag: str) -> None:
    """Write a table atomically as CSV or parquet, by the path's extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        atomic_write(path, lambda p: df.to_csv(p, index=False))
    elif suffix in (".parquet", ".pq"):
        atomic_write(path, lambda p: df.to_parquet(p, index=False))
    else:
        raise ConfigError(f"{flag} {path}: expected a .csv or .parquet path")
