"""The capacity command's outputs: the tables (capacity.csv, capacity_sizes.csv,
presentations.csv), the fits (capacity_fit.json) and the figures, all under one folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import capacity_plots
from ..runs import atomic_write, atomic_write_json
from .config import CapacityConfig
from .ladder import Job, run_ladder
from .summary import capacity_by_size, fit_capacity, fit_presentations, presentations_to_memorize


@dataclasses.dataclass
class CapacityResult:
    table: pd.DataFrame  # capacity.csv: one row per run
    sizes: pd.DataFrame  # capacity_sizes.csv: one row per (model, size)
    fit: dict[str, Any]  # capacity_fit.json: bits per parameter per model, with intervals
    presentations: pd.DataFrame  # presentations.csv: per Zipf run and rank bin
    presentations_fit: pd.DataFrame  # power law of presentations against params per bin


def summarize(table: pd.DataFrame, cfg: CapacityConfig, runs: Path) -> CapacityResult:
    """Sizes, fits and presentations from a capacity table whose runs live under `runs`."""
    sizes = capacity_by_size(table, cfg.ladder.alpha)
    fit = {m: fit_capacity(sizes, m) for m in sizes["model"].unique()}
    zipf = table[(table["model"] == "transformer") & ~np.isclose(table["alpha"], cfg.ladder.alpha)]
    pres = pd.DataFrame()
    if len(zipf):
        level = cfg.zipf.levels[0]
        pres = presentations_to_memorize([runs / r for r in zipf["run"]], level, cfg.zipf.edges)
    return CapacityResult(table, sizes, fit, pres, fit_presentations(pres))


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
    on_run: Callable[[int, int, Job, str, dict[str, Any]], None] | None = None,
) -> tuple[CapacityResult, list[Path]]:
    """The whole experiment: run (or reuse) the ladder under out/runs, summarize, write."""
    table = run_ladder(cfg, out, quick=quick, progress=progress, on_run=on_run)
    result = summarize(table, cfg, Path(out) / "runs")
    return result, write_outputs(result, out, cfg)
