"""The capacity search (docs/design.md §9): per transformer size, a small lr sweep, then the
adaptive K bracket (bracket.py), each K trained to saturation (saturation.py); then the Zipf
runs and the phenomenological rungs on the union of the sizes' K.

Two tables come out: runs.csv (every run: each budget, each lr of the sweep) and capacity.csv
(one row per (model, size, K): its last budget, whether it converged, and for a transformer K
that did not, the extrapolated memorized bits with their interval).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..runs import RunDir
from ..workers import Workers
from .bracket import estimate_K, first_K, next_K
from .config import CapacityConfig, apply_quick
from .ladder import (
    MODELS,
    Job,
    chain_jobs,
    param_counts,
    phenom_job,
    run_job,
    run_row,
    size_model,
    transformer_job,
    zipf_job,
)
from .saturation import converged, extrapolate, finished, gain

OnRun = Callable[[Job, str, dict[str, Any]], None]
INT_COLUMNS = ("n_layer", "n_head", "head_dim", "w", "d", "exposures")


def _cost(job: Job) -> float:
    """What orders waiting runs (workers.py): K x layers x width^2, the work of one exposure
    of every sequence. The budget is left out, so all budgets of a chain rank alike."""
    if job.model != "transformer":
        return 0.0
    m = job.cfg.model
    return float(job.data.K * m.n_layer * (m.n_head * m.head_dim) ** 2)


def _train(
    job: Job, runs: Path, cfg, log: list, progress: bool, on_run: OnRun | None, workers: Workers
):
    what = workers.run(run_job, job, runs, progress=progress and workers.n == 1, cost=_cost(job))
    row, bits = run_row(job, RunDir(runs / job.name), cfg.plateau)
    log.append(row)
    if on_run is not None:
        on_run(job, what, row)
    return row, bits


def saturate(cfg, size, K: int, lr: float, runs: Path, log: list, **kw) -> dict[str, Any]:
    """Train (size, K, lr) at doubling budgets until converged or max_exposures; the last
    budget's row with converged, gain_last_doubling, extrapolated, bits_estimate, bits_lo,
    bits_hi and n_budgets."""
    sat = cfg.saturation
    done, totals, per_seq = [], [], []
    row: dict[str, Any] = {}
    chain = chain_jobs(cfg, size, K, lr)
    with kw["workers"].hold(_cost(chain[0])):  # one worker for the chain, its budgets in turn
        for job in chain:
            row, bits = _train(job, runs, cfg, log, **kw)
            done.append(job.exposures)
            totals.append(row["memorized_bits"])
            per_seq.append(bits)
            if row["status"] != "complete" or finished(done, totals, sat, row["bits_ceiling"]):
                break
    conv = converged(done, totals, sat, row["bits_ceiling"])
    out = {
        **row,
        "converged": conv,
        "gain_last_doubling": gain(totals[-2], totals[-1]) if len(totals) > 1 else math.nan,
        "extrapolated": False,
        "bits_estimate": totals[-1] if conv else math.nan,
        "bits_lo": math.nan,
        "bits_hi": math.nan,
        "n_budgets": len(done),
    }
    if not conv and len(done) >= 3 and row["status"] == "complete":
        f = extrapolate(done, np.stack(per_seq), ceiling=row["bits_ceiling"],
                        resamples=sat.resamples, seed=cfg.ladder.seed)  # fmt: skip
        out.update(extrapolated=True, bits_estimate=f["bits"], bits_lo=f["lo"], bits_hi=f["hi"])
    return out


def best_lr(cfg, size, K: int, runs: Path, log: list, **kw) -> float:
    """The rate of the sweep with the most memorized bits at (K, the first budget); ties to the
    smaller rate."""
    e = cfg.saturation.first_exposures

    def sweep(lr: float) -> dict[str, Any]:
        return _train(transformer_job(cfg, size, K, lr, e, "lr_sweep"), runs, cfg, log, **kw)[0]

    rows = kw["workers"].map(sweep, sorted(cfg.saturation.lrs))
    ok = [r for r in rows if r["status"] == "complete"] or rows
    return max(ok, key=lambda r: (r["memorized_bits"], -r["lr"]))["lr"]


def search_size(cfg: CapacityConfig, size, runs: Path, log: list, **kw) -> list[dict[str, Any]]:
    """The bracket of one size: capacity.csv rows, one per K, each with params_core and the
    size's chosen lr."""
    params, core = param_counts(size_model(cfg, size), cfg.ladder.L)
    Ks = first_K(params, cfg.ladder.L, cfg.bracket)
    lr = best_lr(cfg, size, estimate_K(params, cfg.ladder.L, cfg.bracket), runs, log, **kw)
    chains = kw["workers"].map(lambda K: saturate(cfg, size, K, lr, runs, log, **kw), Ks)
    rows = dict(zip(Ks, chains, strict=True))
    while (K := next_K({k: r["memorized_bits"] for k, r in rows.items()}, cfg.bracket)) is not None:
        rows[K] = saturate(cfg, size, K, lr, runs, log, **kw)
    return [{**rows[K], "params_core": core} for K in sorted(rows)]


def _phenom_rows(cfg, sizes, Ks, runs: Path, log: list, **kw) -> list[dict[str, Any]]:
    def one(sK):
        row, _ = _train(phenom_job(cfg, *sK), runs, cfg, log, **kw)
        est = row["memorized_bits"] if row["converged"] else math.nan
        return {**row, "extrapolated": False, "bits_estimate": est, "n_budgets": 1,
                "params_core": row["params"]}  # fmt: skip

    return kw["workers"].map(one, [(s, K) for s in sizes for K in Ks])


def plan(cfg: CapacityConfig, *, quick: bool = False) -> list[Job]:
    """The runs the search starts with (it adds budgets and K as memorized bits come in): per
    size the lr sweep at K0 and the first budget of each first K at the sweep's first rate, the
    Zipf runs, and the phenomenological rungs at those K. For sizing and costing a search."""
    q = cfg.quick
    if quick:
        cfg = apply_quick(cfg)
    sizes = cfg.ladder.sizes[: q.sizes] if quick else cfg.ladder.sizes
    e, lr0, L = cfg.saturation.first_exposures, min(cfg.saturation.lrs), cfg.ladder.L
    jobs, Ks = [], set()
    for s in sizes:
        params, _ = param_counts(size_model(cfg, s), L)
        k0, first = estimate_K(params, L, cfg.bracket), first_K(params, L, cfg.bracket)
        jobs += [transformer_job(cfg, s, k0, lr, e, "lr_sweep") for lr in cfg.saturation.lrs]
        jobs += [transformer_job(cfg, s, K, lr0, e) for K in first]
        Ks |= set(first)
    if cfg.zipf.K and (q.zipf or not quick):
        jobs += [zipf_job(cfg, s, K, lr0) for s in sizes for K in cfg.zipf.K]
    psizes = cfg.phenom.sizes[: q.phenom_sizes] if quick else cfg.phenom.sizes
    return jobs + [phenom_job(cfg, s, K) for s in psizes for K in sorted(Ks)]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in INT_COLUMNS:
        if c in df.columns:
            df[c] = df[c].astype("Int64")  # blanks, not 1.0
    return df


def _log_order(row: dict[str, Any]) -> tuple:
    """runs.csv's order, whatever order concurrent runs finished in: model, size, role, K,
    rate, budget."""
    size = tuple(
        -1 if row.get(k) is None else row[k] for k in ("n_layer", "n_head", "head_dim", "w", "d")
    )
    role = ("lr_sweep", "bracket", "zipf", "phenom").index(row["role"])
    return (MODELS.index(row["model"]), size, role, row["K"], row["lr"], row["exposures"] or 0)


def run_ladder(
    cfg: CapacityConfig,
    out: str | Path,
    *,
    quick: bool = False,
    progress: bool = False,
    on_run: OnRun | None = None,
    jobs: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Search every size (the first quick.sizes with --quick, under its overrides), then the
    Zipf runs and the phenomenological rungs on the union of the sizes' K: (capacity table,
    runs table). `jobs` worker processes train independent runs side by side (workers.py);
    progress bars only with one."""
    runs = Path(out) / "runs"
    q = cfg.quick
    if quick:
        cfg = apply_quick(cfg)
    sizes = cfg.ladder.sizes[: q.sizes] if quick else cfg.ladder.sizes
    log: list[dict[str, Any]] = []
    with Workers(jobs) as workers:
        kw = {"progress": progress, "on_run": on_run, "workers": workers}
        found = workers.map(lambda s: search_size(cfg, s, runs, log, **kw), sizes)
        rows = [r for f in found for r in f]
        lrs = {s: f[0]["lr"] for s, f in zip(sizes, found, strict=True)}
        if cfg.zipf.K and (q.zipf or not quick):
            pairs = [(s, K) for s in sizes for K in cfg.zipf.K]
            workers.map(
                lambda sK: _train(zipf_job(cfg, *sK, lrs[sK[0]]), runs, cfg, log, **kw), pairs
            )
        psizes = cfg.phenom.sizes[: q.phenom_sizes] if quick else cfg.phenom.sizes
        Ks = sorted({int(r["K"]) for r in rows})
        rows += _phenom_rows(cfg, psizes, Ks, runs, log, **kw)
    return _frame(rows), _frame(sorted(log, key=_log_order))
