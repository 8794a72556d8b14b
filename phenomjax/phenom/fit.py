"""Fit the phenomenological model to a run's curves (docs/design.md §6, fitting to a run).

    phenomjax fit runs/small_cpu --out runs/small_cpu-fit

1. Read the run (a run directory or a legacy pickle) and bin its per-sequence curves by rank.
2. Rebuild its data: the same bits, make_bits(seed, K, L), for phenomjax runs; fresh bits with
   the same K, L and alpha for legacy logs, which do not store theirs (the report says which).
3. For each mode (expected, stochastic) run the vmapped sweep over lr x init scale (one program)
   and w x d (outer groups) with the run's batch for the run's number of steps, so every rank
   reaches the run's presentations (expected: n_m = t B p_m; stochastic with the run's seed
   draws exactly the transformer's batches: same sampler, same key stream).
4. Score every member (phenomjax.scoring: log-loss RMSE over common rank bins at matched
   presentations, with a fitted presentation-scale factor), keep the best live member.
5. Refit the best with more seeds (seed + 1, seed + 2, ...: a sweep seed sets bits, init and
   batches) and report the score's mean and spread over all seeds, the error per rank bin and
   the wall time; write the best (run seed) as a phenom run directory `OUT/best`.

Output folder: report.json, sweeps/<mode>/ (sweep folders), refit/ (the extra seeds), best/
(a phenom run directory). Rerunning with the same settings reuses complete sweeps and the best
run; changed settings recompute them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.binning import default_edges
from ..analysis.load import read_tables
from ..config import to_dict
from ..data import DataConfig
from ..errors import ConfigError, DataError
from ..runs import RunDir, atomic_write_json, jsonable
from .scoring import ScoreConfig, binned, member_binned, score_curves, score_members
from .sweep import read_sweep, sweep
from .train import FitConfig, ModelSection, PhenomOptimConfig, TrainSection, fit_phenom

DEFAULT_WS = (1, 4, 8)
DEFAULT_DS = (8,)
DEFAULT_LRS = (3e-5, 1e-4, 3e-4, 1e-3)
DEFAULT_SCALES = (0.01, 0.1)
MODES = ("expected", "stochastic")
SETTINGS = ["mode", "w", "d", "lr", "scale"]
DEFAULT_SCORE = ScoreConfig()


def read_empirical(run_path: str | Path, edges=None) -> tuple[pd.DataFrame, dict]:
    """(binned empirical curves, run metadata) of a run directory or legacy log."""
    evals, _, meta = read_tables(run_path, positions=False)
    e = default_edges(int(meta["K"])) if edges is None else np.asarray(edges, np.int64)
    meta["final_step"] = int(evals["step"].max())
    return binned(evals, e), meta


def base_config(meta: dict, *, mode: str, batch: int | None, num_evals: int, optimizer: str,
                param: str, embedding: str, seed: int) -> FitConfig:  # fmt: skip
    """The phenom FitConfig matching the run: its K, L, alpha, batch and final step."""
    b = batch or meta.get("batch")
    if not b:
        raise ConfigError(f"{meta['path']}: the run does not record its batch size; pass --batch")
    if meta["final_step"] < 1:
        raise DataError(f"{meta['path']}: its last evaluation is at step 0; nothing to fit")
    return FitConfig(
        data=DataConfig(K=int(meta["K"]), L=int(meta["L"]), alpha=float(meta["alpha"]), seed=seed),
        model=ModelSection(param=param, embedding=embedding),
        optimizer=PhenomOptimConfig(name=optimizer),
        train=TrainSection(
            mode=mode, steps=int(meta["final_step"]), batch=int(b), num_evals=num_evals,
            per_position=False,
        ),
    )  # fmt: skip


def _sweep_cached(cfg: FitConfig, out: Path, axes: dict, progress: bool) -> pd.DataFrame:
    """sweep() into `out`, or the complete sweep already there with the same config and axes."""
    want = jsonable({"base_config": to_dict(cfg), "axes": axes})
    meta = out / "sweep.json"
    n = int(np.prod([len(v) for v in axes.values()]))
    if meta.is_file() and (out / "sweep.parquet").is_file():
        have = json.loads(meta.read_text())
        table = pd.read_parquet(out / "sweep.parquet")
        if {k: have.get(k) for k in want} == want and len(table) == n:
            return table
    if out.exists():
        shutil.rmtree(out)  # ours, and stale or cut short: recompute
    return sweep(cfg, **{k + "s": v for k, v in axes.items()}, out=out, progress=progress)


# per-sequence sweep rows read at once while scoring (~30 bytes each): bounds memory at K = 1e5
SCORE_ROWS = 4_000_000


def _score_sweep(emp, out: Path, table, edges, score: ScoreConfig, evals: int) -> pd.DataFrame:
    ids = table["member"].astype(int).tolist()
    chunk = max(1, SCORE_ROWS // (int(edges[-1]) * (evals + 1)))
    mb = member_binned(lambda m: read_sweep(out, m)[1], ids, edges, chunk=chunk)
    return table.merge(score_members(emp, mb, score), on="member")


def fit_run(
    run_path: str | Path,
    out: str | Path,
    *,
    ws: Sequence[int] = DEFAULT_WS,
    ds: Sequence[int] = DEFAULT_DS,
    lrs: Sequence[float] = DEFAULT_LRS,
    scales: Sequence[float] = DEFAULT_SCALES,
    seeds: int = 3,
    modes: Sequence[str] = MODES,
    optimizer: str = "adam",
    param: str = "full",
    embedding: str = "random",
    batch: int | None = None,
    num_evals: int = 24,
    edges: Sequence[int] | None = None,
    score: ScoreConfig = DEFAULT_SCORE,
    progress: bool = True,
) -> dict:
    """Fit the phenomenological model to the run at `run_path`; write `out`; return the report."""
    t0 = time.perf_counter()
    run_path, out = Path(run_path), Path(out)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"modes: expected some of {list(MODES)}, got {list(modes)}")
    if seeds < 1:
        raise ConfigError(f"seeds: expected >= 1, got {seeds}")
    emp, meta = read_empirical(run_path, edges)
    e = default_edges(int(meta["K"])) if edges is None else np.asarray(edges, np.int64)
    legacy = not meta.get("bits_known")
    seed = int(meta.get("seed") or 0)
    bits = (
        f"fresh bits make_bits({seed}, K, L): a legacy log does not store its bits, so the fit "
        "sees other sequences with the same K, L, alpha (floors and scores are statistical)"
        if legacy
        else f"the run's own bits, make_bits({seed}, K={meta['K']}, L={meta['L']})"
    )
    opts = dict(batch=batch, num_evals=num_evals, optimizer=optimizer, param=param,
                embedding=embedding, seed=seed)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    scored = []
    for mode in modes:
        t = time.perf_counter()
        cfg = base_config(meta, mode=mode, **opts)
        axes = {"lr": [float(x) for x in lrs], "scale": [float(x) for x in scales],
                "seed": [seed], "w": [int(x) for x in ws], "d": [int(x) for x in ds],
                "param": [param]}  # fmt: skip
        folder = out / "sweeps" / mode
        table = _sweep_cached(cfg, folder, axes, progress)
        scored.append(_score_sweep(emp, folder, table, e, score, num_evals))
        times[f"sweep_{mode}_s"] = time.perf_counter() - t
    members = pd.concat(scored, ignore_index=True).sort_values("score", kind="stable")
    live = members[~members["diverged"] & np.isfinite(members["score"])]
    if live.empty:
        raise DataError(f"{run_path}: every sweep member diverged or matched no point; "
                        "lower the learning rates")  # fmt: skip
    best = live.iloc[0]

    # the best again with more seeds, and as a phenom run directory with the run's seed
    t = time.perf_counter()
    cfg = base_config(meta, mode=str(best["mode"]), **opts)
    m = dataclasses.replace(cfg.model, w=int(best["w"]), d=int(best["d"]),
                            init_scale=float(best["scale"]))  # fmt: skip
    best_cfg = dataclasses.replace(
        cfg, model=m, optimizer=dataclasses.replace(cfg.optimizer, lr=float(best["lr"]))
    )
    per_seed = [{"seed": seed, "score": float(best["score"]), "shift": float(best["shift"]),
                 "accuracy_rmse": float(best["accuracy_rmse"])}]  # fmt: skip
    if seeds > 1:
        axes = {"lr": [float(best["lr"])], "scale": [float(best["scale"])],
                "seed": [seed + i for i in range(1, seeds)], "w": [int(best["w"])],
                "d": [int(best["d"])], "param": [param]}  # fmt: skip
        refit = _sweep_cached(best_cfg, out / "refit", axes, progress)
        rs = _score_sweep(emp, out / "refit", refit, e, score, num_evals)
        per_seed += rs[["seed", "score", "shift", "accuracy_rmse"]].to_dict("records")
    run_dir = out / "best"
    run = RunDir(run_dir)
    same = (
        run.exists()
        and run.manifest().get("status") == "complete"
        and run.manifest().get("config") == jsonable(to_dict(best_cfg))
    )
    if not same:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        fit_phenom(best_cfg, run_dir, progress=progress)
    best_binned = binned(RunDir(run_dir).read_evals(), e)
    detail = score_curves(emp, best_binned, score)
    times["refit_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0

    scores = np.asarray([r["score"] for r in per_seed])
    report = {
        "run": str(run_path),
        "run_kind": meta["kind"],
        "run_label": meta.get("label"),
        "run_status": meta.get("status"),  # a run still "running" is fitted up to its last eval
        "K": int(meta["K"]), "L": int(meta["L"]), "alpha": float(meta["alpha"]),
        "batch": best_cfg.train.batch, "steps": best_cfg.train.steps,
        "bits": bits, "fresh_bits": legacy, "seed": seed,
        "grid": {"modes": list(modes), "w": list(ws), "d": list(ds), "lr": list(lrs),
                 "scale": list(scales), "optimizer": optimizer, "param": param,
                 "embedding": embedding, "members": len(members)},
        "scoring": {**dataclasses.asdict(score), "edges": e.tolist(),
                    "metric": "RMSE of log(loss) over common rank bins at matched presentations"
                    " (log-linear interpolation of the fit); shift = presentation-scale factor "
                    "s, exact minimiser over the log-spaced grid"},
        "best": {k: (str(best[k]) if k == "mode" else float(best[k])) for k in SETTINGS},
        "score": float(best["score"]),
        "score_mean": float(scores.mean()),
        "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
        "per_seed": per_seed,
        "shift": detail["shift"],
        "accuracy_rmse": detail["accuracy_rmse"],
        "score_unshifted": detail["score_unshifted"],
        "per_bin": detail["per_bin"],
        "top": members.head(10)[SETTINGS + ["score", "shift", "accuracy_rmse", "diverged"]]
        .to_dict("records"),
        "best_run": str(run_dir),
        "best_config": to_dict(best_cfg),
        "wall_time_s": times,
    }  # fmt: skip
    report = jsonable(report)
    stored = _stored_report(out / "report.json")
    if same and stored is not None and _fitted(stored) == _fitted(report):
        return stored  # all reused: keep the report (and timings) of the call that computed it
    atomic_write_json(out / "report.json", report)
    members.to_csv(out / "members.csv", index=False)
    return report


def _stored_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fitted(report: dict) -> str:
    """The report without its timings, as text (so NaN compares equal to NaN)."""
    return json.dumps({k: v for k, v in report.items() if k != "wall_time_s"}, sort_keys=True)


def format_report(r: dict) -> str:
    """The printed table: best settings, score +- spread, error per rank bin, wall time."""
    b = r["best"]
    lines = [
        f"fit of {r['run']} ({r['run_kind']}, K={r['K']}, L={r['L']}, batch {r['batch']}, "
        f"{r['steps']} steps; {r['grid']['members']} members)",
        f"  data: {r['bits']}",
        "  top members:",
        f"    {'mode':<11}{'w':>3}{'d':>4}{'lr':>9}{'scale':>7}{'score':>8}{'shift':>7}{'acc':>7}",
    ]
    for t in r["top"][:5]:
        lines.append(
            f"    {t['mode']:<11}{t['w']:>3}{t['d']:>4}{t['lr']:>9.2g}{t['scale']:>7.2g}"
            f"{t['score']:>8.4f}{t['shift']:>7.2f}{t['accuracy_rmse']:>7.3f}"
        )
    lines += [
        f"  best: {b['mode']} w={b['w']:g} d={b['d']:g} lr={b['lr']:g} scale={b['scale']:g}",
        f"  score (log-loss RMSE): {r['score_mean']:.4f} +- {r['score_std']:.4f} over "
        f"{len(r['per_seed'])} seeds; run seed {r['score']:.4f} at presentation scale "
        f"{r['shift']:.2f} (unshifted {r['score_unshifted']:.4f}); accuracy RMSE "
        f"{r['accuracy_rmse']:.4f}",
        f"    {'rank bin':<14}{'points':>7}{'logloss':>9}{'bias':>8}{'acc':>8}",
    ]
    for p in r["per_bin"]:
        lines.append(
            f"    {p['rank_lo']:>6}-{p['rank_hi'] - 1:<7}{p['n_points']:>7}"
            f"{p['log_loss_rmse']:>9.4f}{p['mean_residual']:>8.3f}{p['accuracy_rmse']:>8.4f}"
        )
    w = r["wall_time_s"]
    lines.append(
        f"  wall time {w['total_s']:.1f} s ("
        + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in w.items() if k != "total_s")
        + f"); best run {r['best_run']}"
    )
    return "\n".join(lines)
