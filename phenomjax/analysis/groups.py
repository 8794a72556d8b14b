"""Seed groups (docs/design.md §5): runs that differ only in seed, read as one experiment.

- `expand_runs` turns the paths a user names into runs: a group folder (what `phenomjax train
  --seeds` writes: seed-<s> subfolders, each a run directory) becomes its seed runs;
- `check_group` refuses runs that differ in more than their seeds; `load_group` reads them into
  one per-sequence table with `run` and `seed` columns;
- `seed_band` is the one summary over a group's runs: per key, `<v>_mean`, `<v>_std`, `<v>_lo`
  (min over seeds), `<v>_hi` (max) and `<v>_n`; ratios are summarized in log space;
- `lag_summary` is the one text of a lag ratio over seeds: the geometric mean with its
  [min, max] over seeds, the value alone for one seed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..runs.rundir import config_difference
from .load import read_tables

SEED_FOLDER = re.compile(r"seed-(\d+)")


def seed_runs(path: str | os.PathLike) -> list[Path]:
    """The seed runs of a group folder (its seed-<s> subfolders holding a manifest.json, by
    seed); [] when `path` is a run itself or not a group folder."""
    p = Path(path)
    if not p.is_dir() or (p / "manifest.json").exists():
        return []
    found = []
    for sub in p.iterdir():
        m = SEED_FOLDER.fullmatch(sub.name)
        if m and sub.is_dir() and (sub / "manifest.json").is_file():
            found.append((int(m.group(1)), sub))
    return [s for _, s in sorted(found)]


def expand_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The runs the paths name, in order: a group folder becomes its seed runs (`seed_runs`),
    anything else stays itself (a run directory or a legacy log, checked where it is read).

    >>> [p.as_posix() for p in expand_runs(["runs/seeds", "runs/other"])]  # doctest: +SKIP
    ['runs/seeds/seed-0', 'runs/seeds/seed-1', 'runs/other']
    """
    out: list[Path] = []
    for p in paths:
        out += seed_runs(p) or [Path(p)]
    return out


def _unseeded(config: Any) -> Any:
    """The config with every key naming a seed left out (what seed groups may differ in)."""
    if isinstance(config, dict):
        return {k: _unseeded(v) for k, v in config.items() if "seed" not in str(k).lower()}
    return config


def check_group(metas: Sequence[dict[str, Any]]) -> None:
    """A DataError naming the run and the field if the runs differ in more than their seeds."""
    if not metas:
        raise DataError("seed group: expected at least one run")
    ref = metas[0]
    where = ref.get("path", ref.get("name"))
    for m in metas[1:]:
        here = m.get("path", m.get("name"))
        for k in ("kind", "K", "L", "alpha"):
            if ref.get(k) != m.get(k):
                raise DataError(
                    f"{here}: {k} {m.get(k)!r} differs from {where}'s {ref.get(k)!r}; "
                    "a seed group differs only in seed"
                )
        d = config_difference(_unseeded(m.get("config") or {}), _unseeded(ref.get("config") or {}))
        if d is not None:
            d = d.replace("(run has", "(it has").replace(", config has", f", {where} has")
            raise DataError(f"{here}: {d}; a seed group differs only in seed")


def unique_names(names: Sequence[str]) -> list[str]:
    """The names made unique in order: a repeat gets _2, _3, ..."""
    out: list[str] = []
    for n in names:
        name, i = n, 1
        while name in out:
            i += 1
            name = f"{n}_{i}"
        out.append(name)
    return out


def load_group(
    paths: Sequence[str | os.PathLike], *, check: bool = True, steps_per_epoch: int = 0
) -> pd.DataFrame:
    """The per-sequence tables of runs that differ only in seed, one table with `run` (the run's
    folder or file name, made unique) and `seed` columns; attrs["runs"] holds their metadata.
    A group folder (`expand_runs`) stands for its seed runs.

    >>> table = load_group(["runs/demo-seeds"])  # doctest: +SKIP
    >>> lag_table(table)  # per run; group_lag(...) gives the band over seeds  # doctest: +SKIP
    """
    read = [read_tables(p, positions=False, steps_per_epoch=steps_per_epoch)
            for p in expand_runs(paths)]  # fmt: skip
    metas = [meta for _, _, meta in read]
    if check:
        check_group(metas)
    names = unique_names([m["name"] for m in metas])
    tables = []
    for (evals, _, meta), name in zip(read, names, strict=True):
        seed = meta.get("seed")
        tables.append(evals.assign(run=name, seed=seed if seed is not None else np.nan))
    out = pd.concat(tables, ignore_index=True)
    out.attrs = {"run": metas[0], "runs": metas}
    return out


def seed_band(
    table: pd.DataFrame,
    values: Sequence[str],
    by: Sequence[str],
    *,
    log: Sequence[str] = (),
    means: Sequence[str] = (),
) -> pd.DataFrame:
    """Over the runs of a group (a `run` column, one row per run and key): per `by` key and
    value column v, from its finite values over the runs, `<v>_mean`, `<v>_std` (sample std;
    NaN with one run), `<v>_lo` (min), `<v>_hi` (max) and `<v>_n` (how many runs have one),
    and n_runs. For the columns in `log` (ratios) the positive values are summarized in log
    space: `<v>_mean` is the geometric mean and `<v>_std` the sample std of ln v. The columns
    in `means` get their plain mean only, under their own name (e.g. presentations).

    >>> t = pd.DataFrame({"run": ["a", "b"], "bin": 0, "ratio": [1.0, 4.0]})
    >>> seed_band(t, ["ratio"], ["bin"], log=["ratio"])[["ratio_mean", "ratio_lo", "ratio_n"]]
       ratio_mean  ratio_lo  ratio_n
    0         2.0       1.0        2
    """
    if "run" not in table.columns:
        raise DataError("seed_band: table lacks column 'run'; expected one row per run and key")
    missing = [c for c in (*by, *values, *means) if c not in table.columns]
    if missing:
        raise DataError(f"seed_band: table lacks columns {missing}")
    keys = list(by)
    t = table[[*keys, "run"]].copy()
    for v in values:  # the values used (finite; positive where in log), and their logs
        x = table[v].to_numpy(np.float64)
        ok = np.isfinite(x) & (x > 0) if v in log else np.isfinite(x)
        t[v] = np.where(ok, x, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            t[f"__log_{v}"] = np.log(t[v]) if v in log else t[v]
    for c in means:
        t[c] = table[c].to_numpy()
    g = t.groupby(keys, sort=True)
    out = g[list(means)].mean() if means else g.size().to_frame("_n").drop(columns="_n")
    for v in values:
        x, n = g[f"__log_{v}"], g[v].count()
        mean = g[v].mean()  # one run: its value itself, not exp(log(value))
        out[f"{v}_mean"] = mean.where(n == 1, np.exp(x.mean())) if v in log else mean
        out[f"{v}_std"] = x.std(ddof=1)
        out[f"{v}_lo"], out[f"{v}_hi"], out[f"{v}_n"] = g[v].min(), g[v].max(), n
    out["n_runs"] = g["run"].nunique()
    return out.reset_index()


LAG_SUMMARY = "geo. mean [min, max] over {n} seeds"  # what a group's lag text shows


@dataclasses.dataclass(frozen=True)
class LagSummary:
    """A lag ratio over the seeds of a group: the geometric mean, the min and max over seeds,
    and how many seeds reached it (n). One seed is the value alone."""

    mean: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def lag_summary(ratios: Sequence[float] | np.ndarray) -> LagSummary:
    """The one summary of a lag ratio over seeds (docs/design.md §5): the geometric mean of the
    finite positive ratios with their [min, max]; LAG_SUMMARY says so in a table's heading.

    >>> str(lag_summary([0.5, 2.0, 1.0])), str(lag_summary([0.83])), str(lag_summary([]))
    ('1.00 [0.50, 2.00]', '0.83', '-')
    """
    x = np.asarray(ratios, dtype=np.float64).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    if len(x) == 0:
        return LagSummary(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x[0]) if len(x) == 1 else float(np.exp(np.log(x).mean()))
    return LagSummary(mean, float(x.min()), float(x.max()), len(x))


def band(
    curves: pd.DataFrame,
    keys: Sequence[str] = ("curve", "order", "step"),
    metrics: Sequence[str] = ("loss", "accuracy"),
) -> pd.DataFrame:
    """Per-run curves (a `run` column) -> one curve per key over the runs (`seed_band`): the
    metrics' band columns, the metric itself as its mean (what the figures draw), every other
    numeric column's mean (presentations: the runs of a group share their evaluation steps,
    so the band is taken at equal steps and x is the mean presentations), and n_runs."""
    keys = [k for k in keys if k in curves.columns]
    metrics = [m for m in metrics if m in curves.columns]
    rest = [c for c in curves.columns if c not in (*keys, *metrics, "run")
            and pd.api.types.is_numeric_dtype(curves[c])]  # fmt: skip
    out = seed_band(curves, metrics, keys, means=rest)
    for m in metrics:
        out[m] = out[f"{m}_mean"]
    return out
