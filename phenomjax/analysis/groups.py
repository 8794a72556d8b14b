"""Seed groups (docs/design.md §5): runs that differ only in seed, read as one experiment.

`load_group` reads several run directories (or legacy logs) into one per-sequence table with
`run` and `seed` columns, after checking that their configs agree once every seed is set
aside; `band` turns per-run curves into one curve per bin with its mean and band over seeds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .load import read_tables

BAND_METRICS = ("loss", "accuracy")


def _unseeded(config: Any) -> Any:
    """The config with every key naming a seed left out (what seed groups may differ in)."""
    if isinstance(config, dict):
        return {k: _unseeded(v) for k, v in config.items() if "seed" not in str(k).lower()}
    return config


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d is not None:
                return d
        return None
    return None if a == b else f"{where or 'config'}: {a!r} vs {b!r}"


def check_group(metas: Sequence[dict[str, Any]]) -> None:
    """A DataError naming the run and the field if the runs differ in more than their seeds."""
    if not metas:
        raise DataError("seed group: expected at least one run")
    ref = metas[0]
    for m in metas[1:]:
        for k in ("kind", "K", "L", "alpha"):
            if ref.get(k) != m.get(k):
                raise DataError(
                    f"{m.get('path', m.get('name'))}: {k} {m.get(k)!r} differs from "
                    f"{ref.get('path', ref.get('name'))}'s {ref.get(k)!r}; a seed group "
                    "differs only in seed"
                )
        d = _first_difference(_unseeded(ref.get("config") or {}), _unseeded(m.get("config") or {}))
        if d is not None:
            raise DataError(
                f"{m.get('path', m.get('name'))}: {d} (against {ref.get('path', ref.get('name'))});"
                " a seed group differs only in seed"
            )


def load_group(
    paths: Sequence[str | os.PathLike], *, check: bool = True, steps_per_epoch: int = 0
) -> pd.DataFrame:
    """The per-sequence tables of runs that differ only in seed, one table with `run` (the run's
    folder or file name, made unique) and `seed` columns; attrs["runs"] holds their metadata.

    >>> table = load_group(["runs/demo-s0", "runs/demo-s1"])  # doctest: +SKIP
    >>> lag_table(table)  # per run; group_lag(...) gives the mean and band  # doctest: +SKIP
    """
    tables, metas, names = [], [], []
    for p in paths:
        evals, _, meta = read_tables(p, positions=False, steps_per_epoch=steps_per_epoch)
        name, i = meta["name"], 1
        while name in names:
            i += 1
            name = f"{meta['name']}_{i}"
        names.append(name)
        metas.append(meta)
        seed = meta.get("seed")
        tables.append(evals.assign(run=name, seed=seed if seed is not None else np.nan))
    if check:
        check_group(metas)
    out = pd.concat(tables, ignore_index=True)
    out.attrs = {"run": metas[0], "runs": metas}
    return out


def band(curves: pd.DataFrame, keys: Sequence[str] = ("curve", "order", "step")) -> pd.DataFrame:
    """Per-run curves (a `run` column) -> one curve per key over the runs: the mean of every
    numeric column, and for loss and accuracy their sample std (NaN with one run), min and max
    (columns <metric>_std, <metric>_lo, <metric>_hi), and n_runs. Runs of one group share
    their evaluation steps, so the band is taken at equal steps; x is the mean presentations."""
    if "run" not in curves.columns:
        raise DataError("band: table lacks column 'run'")
    keys = [k for k in keys if k in curves.columns]
    num = [
        c
        for c in curves.columns
        if c not in keys and c != "run" and pd.api.types.is_numeric_dtype(curves[c])
    ]
    g = curves.groupby(keys, sort=False)
    out = g[num].mean()
    for m in BAND_METRICS:
        if m in curves.columns:
            out[f"{m}_std"] = g[m].std(ddof=1)
            out[f"{m}_lo"] = g[m].min()
            out[f"{m}_hi"] = g[m].max()
    out["n_runs"] = g["run"].nunique()
    return out.reset_index()
