"""The capacity command's outputs: the tables (capacity.csv, capacity_sizes.csv, runs.csv,
presentations.csv), the fits (capacity_fit.json) and the figures, all under one output folder
that phenomjax claims as its own (`runs.reuse.claim`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import capacity_plots
from ..runs import atomic_write, atomic_write_json
from ..runs.reuse import claim
from .config import CapacityConfig
from .ladder import Job
from .search import run_ladder
from .summary import capacity_by_size, fit_capacity, fit_presentations, presentations_to_memorize


@dataclasses.dataclass
class CapacityResult:
    table: pd.DataFrame  # capacity.csv: one row per (model, size, K), its last budget
    runs: pd.DataFrame  # runs.csv: every run (each budget, the lr sweep, Zipf, phenom)
    sizes: pd.DataFrame  # capacity_sizes.csv: one row per (model, size)
    fit: dict[str, Any]  # capacity_fit.json: bits per parameter per model, with intervals
    presentations: pd.DataFrame  # presentations.csv: per Zipf run and rank bin
    presentations_fit: pd.DataFrame  # power law of presentations against params per bin


def summarize(
    table: pd.DataFrame, runs_table: pd.DataFrame, cfg: CapacityConfig, runs: Path
) -> CapacityResult:
    """Sizes, fits and presentations from the capacity and runs tables (runs under `runs`)."""
    sizes = capacity_by_size(table, cfg.ladder.alpha, cfg.bracket, cfg.saturation.data_limited)
    fit = {m: fit_capacity(sizes, m) for m in sizes["model"].unique()}
    zipf = runs_table[runs_table["role"] == "zipf"]
    pres = pd.DataFrame()
    if len(zipf):
        level = cfg.zipf.levels[0]
        pres = presentations_to_memorize([runs / r for r in zipf["run"]], level, cfg.zipf.edges)
    return CapacityResult(table, runs_table, sizes, fit, pres, fit_presentations(pres))


def _finite(obj: Any) -> Any:
    """NaN and inf as null, so the JSON is strict (a fit with too few points has no interval)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _csv(path: Path, df: pd.DataFrame) -> Path:
    atomic_write(path, lambda p: df.to_csv(p, index=False))
    return path


def write_outputs(result: CapacityResult, out: str | Path, cfg: CapacityConfig) -> list[Path]:
    """Write the tables, the fits and the figures (PNG and PDF) into `out`; their paths."""
    out = Path(out)
    paths = [
        _csv(out / "capacity.csv", result.table),
        _csv(out / "capacity_sizes.csv", result.sizes),
        _csv(out / "runs.csv", result.runs),
    ]
    atomic_write_json(out / "capacity_fit.json", _finite(result.fit))
    paths.append(out / "capacity_fit.json")
    paths += capacity_plots.memorized_figure(result.table, out, alpha=cfg.ladder.alpha)
    tf = result.fit.get("transformer", {})
    paths += capacity_plots.capacity_figure(result.sizes, tf, out)
    if len(result.presentations):
        paths.append(_csv(out / "presentations.csv", result.presentations))
        paths.append(_csv(out / "presentations_fit.csv", result.presentations_fit))
        paths += capacity_plots.presentations_figure(
            result.presentations, result.presentations_fit, out
        )
    return paths


def run_capacity(
    cfg: CapacityConfig,
    out: str | Path,
    *,
    quick: bool = False,
    progress: bool = False,
    on_run: Callable[[Job, str, dict[str, Any]], None] | None = None,
    jobs: int = 1,
) -> tuple[CapacityResult, list[Path]]:
    """The whole experiment: claim `out`, run (or reuse) the search under out/runs with `jobs`
    worker processes, summarize, write. on_run(job, what, row) is called after each run (for
    printing)."""
    claim(out, "phenomjax capacity")
    claim(Path(out) / "runs", "phenomjax capacity runs")
    table, runs_table = run_ladder(
        cfg, out, quick=quick, progress=progress, on_run=on_run, jobs=jobs
    )
    result = summarize(table, runs_table, cfg, Path(out) / "runs")
    return result, write_outputs(result, out, cfg)
