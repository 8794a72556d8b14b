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
import itertools
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.binning import default_edges
from ..analysis.groups import load_group
from ..analysis.lag import bin_lag, rank_crossings
from ..analysis.load import read_tables
from ..bayes import per_sequence_floor
from ..config import load_config, to_dict
from ..data import DataConfig, make_bits, zipf_weights
from ..errors import ConfigError, DataError
from ..optim import OPTIMIZERS
from ..runs import RunDir, atomic_write_bytes, atomic_write_json, jsonable
from .holdout import heldout_lag, predict, seed_intervals, seed_reference, split_evals
from .modes import MODES
from .scoring import (
    Reference,
    ScoreConfig,
    binned,
    build_reference,
    lag_agreement,
    member_tables,
    score_curves,
    score_members_lag,
    total_score,
)
from .sweep import read_sweep, sweep
from .train import FitConfig, ModelSection, PhenomOptimConfig, TrainSection, fit_phenom

SETTINGS = [
    "mode",
    "optimizer",
    "b1",
    "b2",
    "weight_decay",
    "param",
    "w",
    "d",
    "lr",
    "scale",
    "forget",
    "readout_scale",
]


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer of the family and its swept hyperparameters (learning rates are vmapped,
    the rest are outer loops). Fields an optimizer does not use are left out of its product."""

    name: str = "adam"  # sgd, momentum, adam, adamw (any of phenomjax.optim.OPTIMIZERS)
    lr: tuple[float, ...] = (3e-5, 1e-4, 3e-4, 1e-3)
    b1: tuple[float, ...] = (0.9,)  # adam-type b1, or the momentum coefficient
    b2: tuple[float, ...] = (0.999,)  # adam-type b2
    weight_decay: tuple[float, ...] = (0.0,)  # decoupled decay (adamw, lion)

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"name: expected one of {list(OPTIMIZERS)}, got {self.name!r}")
        for f in ("lr", "b1", "b2", "weight_decay"):
            v = getattr(self, f)
            if not v:
                raise ConfigError(f"{f}: expected a non-empty list")
            if f == "lr" and not all(np.isfinite(x) and x > 0 for x in v):
                raise ConfigError(f"lr: expected finite values > 0, got {list(v)}")
            if f != "lr" and not all(0 <= x for x in v):
                raise ConfigError(f"{f}: expected values >= 0, got {list(v)}")

    def configs(self) -> list[PhenomOptimConfig]:
        """The outer-loop optimizer configs (lr is the first rate; sweeps vmap the rest)."""
        uses = {"b1": self.name in ("momentum", "adam", "adamw", "lion"),
                "b2": self.name in ("adam", "adamw", "lion"),
                "weight_decay": self.name in ("adamw", "lion")}  # fmt: skip
        axes = [getattr(self, f) if uses[f] else (None,) for f in ("b1", "b2", "weight_decay")]
        out = []
        for b1, b2, wd in itertools.product(*axes):
            kw = {"name": self.name, "lr": self.lr[0], "weight_decay": wd or 0.0}
            if b1 is not None:
                kw["momentum"] = b1
            if b2 is not None:
                kw["b2"] = b2
            out.append(PhenomOptimConfig(**kw))
        return out


@dataclasses.dataclass(frozen=True)
class GridSection:
    modes: tuple[str, ...] = MODES  # expected and/or stochastic
    w: tuple[int, ...] = (1, 4, 8)  # windows
    d: tuple[int, ...] = (8,)  # widths
    param: tuple[str, ...] = ("full",)  # full, shared, relative
    embedding: str = "random"  # random, learned, spin
    scale: tuple[float, ...] = (0.01, 0.1)  # initial scales (vmapped)
    forget: tuple[float, ...] = (0.0,)  # variant: per-step shrink of A (0: the model as stated)
    readout_scale: tuple[float, ...] = (0.0,)  # variant: initial B scale (0: as stated, = scale)
    seeds: int = 3  # seeds of the best's refit (the run's seed and the next ones)
    num_evals: int = 24  # log-spaced evaluations of every member
    batch: int = 0  # 0: the run's batch

    def validate(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ConfigError(f"modes: expected some of {list(MODES)}, got {list(self.modes)}")
        if self.seeds < 1:
            raise ConfigError(f"seeds: expected >= 1, got {self.seeds}")
        if self.num_evals < 1:
            raise ConfigError(f"num_evals: expected >= 1, got {self.num_evals}")
        for f in ("w", "d", "param", "scale", "forget", "readout_scale"):
            if not getattr(self, f):
                raise ConfigError(f"{f}: expected a non-empty list")
        if not all(0 <= x < 1 for x in self.forget):
            raise ConfigError(f"forget: expected numbers in [0, 1), got {list(self.forget)}")
        if not all(x >= 0 for x in self.readout_scale):
            raise ConfigError(
                f"readout_scale: expected numbers >= 0, got {list(self.readout_scale)}"
            )


@dataclasses.dataclass(frozen=True)
class FitGridConfig:
    """The fit grid (phenomjax/configs/fit.toml; the demo's is fit_demo.toml)."""

    grid: GridSection = GridSection()
    optimizers: tuple[OptimizerEntry, ...] = (OptimizerEntry(),)
    score: ScoreConfig = ScoreConfig()

    def validate(self) -> None:
        if not self.optimizers:
            raise ConfigError("optimizers: expected at least one [[optimizers]] entry")


# the old keyword arguments of fit_run, as overrides of the config
LEGACY = {"ws": "w", "ds": "d", "scales": "scale", "seeds": "seeds", "modes": "modes",
          "num_evals": "num_evals", "batch": "batch", "embedding": "embedding"}  # fmt: skip


def grid_config(base: FitGridConfig | None = None, **kw) -> FitGridConfig:
    """`base` (default: the shipped fit.toml) with the old fit_run keywords applied: ws, ds,
    lrs, scales, seeds, modes, num_evals, batch, embedding, optimizer, param, score, edges."""
    cfg = base or default_grid()
    g = {LEGACY[k]: (tuple(v) if isinstance(v, (list, tuple)) else v)
         for k, v in kw.items() if k in LEGACY and v is not None}  # fmt: skip
    if kw.get("param"):
        g["param"] = (kw["param"],) if isinstance(kw["param"], str) else tuple(kw["param"])
    grid = dataclasses.replace(cfg.grid, batch=g.pop("batch", cfg.grid.batch) or 0, **g)
    opts = cfg.optimizers
    if kw.get("optimizer") or kw.get("lrs"):
        name = kw.get("optimizer") or opts[0].name
        opts = (dataclasses.replace(opts[0], name=name, lr=tuple(kw.get("lrs") or opts[0].lr)),)
    out = dataclasses.replace(cfg, grid=grid, optimizers=opts, score=kw.get("score") or cfg.score)
    for part in (out.grid, *out.optimizers, out.score, out):
        part.validate()
    return out


def default_grid(name: str = "fit") -> FitGridConfig:
    """A shipped grid: phenomjax/configs/<name>.toml."""
    path = Path(str(resources.files("phenomjax") / "configs" / f"{name}.toml"))
    return load_config(FitGridConfig, path)


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


def _variant_axes(forget, readout_scale) -> dict:
    """The variant's sweep axes (docs/design.md §6), present only when swept, so a grid of the
    stated model keeps the axes (and the cached sweeps) it always had."""
    forget = [float(x) for x in forget]
    readout = [float(x) for x in readout_scale]
    return {**({"forget": forget} if forget != [0.0] else {}),
            **({"readout_scale": readout} if readout != [0.0] else {})}  # fmt: skip


def _sweep_cached(cfg: FitConfig, out: Path, axes: dict, optimizers, progress: bool):
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
    ax = {k + "s": v for k, v in axes.items() if k != "optimizer"}
    return sweep(cfg, **ax, optimizers=optimizers, out=out, progress=progress)


# per-sequence sweep rows read at once while scoring (~30 bytes each): bounds memory at K = 1e5
SCORE_ROWS = 4_000_000


def run_paths(runs: str | Path | Sequence[str | Path]) -> list[Path]:
    """The runs of one experiment: a run, several runs of a seed group, or a group folder
    (a folder whose `seed-<s>` subfolders are the runs, as `phenomjax train --seeds` writes)."""
    items = [runs] if isinstance(runs, (str, Path)) else list(runs)
    out: list[Path] = []
    for r in map(Path, items):
        subs = (
            sorted(r.glob("seed-*")) if r.is_dir() and not (r / "manifest.json").is_file() else []
        )
        out += [x for x in subs if (x / "manifest.json").is_file()] or [r]
    if not out:
        raise ConfigError("fit: expected at least one run")
    return out


def _floor(meta: dict) -> np.ndarray:
    """Per-rank Bayes floor of a run's bits (legacy logs: fresh bits with the same K, L)."""
    bits = make_bits(int(meta.get("seed") or 0), int(meta["K"]), int(meta["L"]))
    return per_sequence_floor(bits, zipf_weights(int(meta["K"]), float(meta["alpha"])))[0]


def _score_sweep(ref, out: Path, table, edges, score: ScoreConfig, floor, evals: int):
    """(members scored, their binned tables, their bin_lag tables)."""
    ids = table["member"].astype(int).tolist()
    chunk = max(1, SCORE_ROWS // (int(edges[-1]) * (evals + 1)))
    mb, ml = member_tables(lambda m: read_sweep(out, m)[1], ids, edges, floor, score.levels, chunk)
    return table.merge(score_members_lag(mb, ml, ref, score), on="member"), mb, ml


def _knobs(members: pd.DataFrame, top_lo: int) -> list[dict]:
    """Per knob value: how many live members lag (bin 5-9 or the second bin slower than the top
    bin at the middle level) and their median lag ratio: which knob decides the sign."""
    col = next((c for c in members.columns if c.startswith("lag_") and c != f"lag_{top_lo}"), None)
    live = members[~members["diverged"]]
    if col is None or live.empty:
        return []
    rows = []
    for knob in (
        "optimizer",
        "weight_decay",
        "param",
        "w",
        "d",
        "mode",
        "scale",
        "lr",
        "forget",
        "readout_scale",
    ):
        for v, g in live.groupby(knob, sort=True):
            r = g[col].to_numpy(np.float64)
            fin = r[np.isfinite(r)]
            rows.append({"knob": knob, "value": v, "members": len(g), "reached": len(fin),
                         "lagging": int((fin > 1).sum()),
                         "median_ratio": float(np.median(fin)) if len(fin) else float("nan"),
                         "bin": col[4:]})  # fmt: skip
    return rows


def _sign_knob(knobs: list[dict]) -> str:
    """Names the knob whose values split members into lagging and leading ones, if any."""
    found = []
    for knob in dict.fromkeys(k["knob"] for k in knobs):
        vals = [k for k in knobs if k["knob"] == knob and k["reached"]]
        signs = {k["value"]: k["lagging"] / k["reached"] for k in vals}
        if len(signs) > 1 and max(signs.values()) > 0.5 > min(signs.values()):
            found.append(f"{knob} ({', '.join(f'{v}: {f:.0%} lag' for v, f in signs.items())})")
    return "; ".join(found) if found else "none: no swept knob flips the sign of the lag"


# the per-seed columns of the best's scores (the run's seed first, then the refit's)
PER_SEED = ["seed", "score", "band_score", "lag_score", "total", "shift"]


@dataclasses.dataclass(frozen=True)
class _Runs:
    """A run or seed group as read for fitting: what the sweeps, the refit, the held-out
    prediction and the report all need, read once."""

    paths: list[Path]
    meta: dict  # the first run's, with final_step the group's last evaluation step
    names: list  # the group's run names (one name for a single run)
    floors: dict  # run name -> per-rank Bayes floor of its bits
    ev: pd.DataFrame  # every evaluation (a group's keeps its "run" column)
    fl: dict  # the floors as build_reference takes them (key None for a single run)
    ev_fit: pd.DataFrame  # the evaluations the members are ranked on (all, without a holdout)
    edges: np.ndarray  # the rank edges the members are ranked on
    edges_all: np.ndarray  # every rank edge (the same as edges without a holdout)
    ref: Reference  # the reference built on ev_fit
    split: tuple | None  # with a holdout: (how, held-out evaluations, their edges, description)

    @property
    def seed(self) -> int:
        """The first run's seed: the grid's sweeps use it, the refit the next ones (legacy: 0)."""
        return int(self.meta.get("seed") or 0)

    @property
    def floor(self) -> np.ndarray:
        """The first run's per-rank floor, the one the members' lag crossings are taken over."""
        return self.floors[self.names[0]]


def _read_runs(paths: list[Path], edges, holdout: str | None, score: ScoreConfig) -> _Runs:
    """Load the runs, warn about unfinished ones, and build the reference the members are
    ranked against: on the training part only when `holdout` splits the curves."""
    group = load_group(paths)
    metas = group.attrs["runs"]
    meta = dict(metas[0])
    meta["final_step"] = int(group["step"].max())
    unfinished = [f"{p} ({m.get('status')})" for p, m in zip(paths, metas, strict=True)
                  if m.get("status") not in (None, "complete")]  # fmt: skip
    if unfinished:  # legacy logs record no status (None)
        warnings.warn(
            f"fitting unfinished runs up to their last evaluation: {', '.join(unfinished)}",
            stacklevel=3,  # fit_run's caller
        )
    e_all = default_edges(int(meta["K"])) if edges is None else np.asarray(edges, np.int64)
    names = list(group["run"].unique())
    floors = {n: _floor(m) for n, m in zip(names, metas, strict=True)}
    ev = group if len(names) > 1 else group.drop(columns="run")
    fl = floors if len(names) > 1 else {None: floors[names[0]]}
    ev_fit, e, split = ev, e_all, None
    if holdout:
        ev_fit, ev_out, e, e_out, split_text = split_evals(ev, holdout, e_all)
        split = (holdout, ev_out, e_out, split_text)
    ref = build_reference(ev_fit, fl, e, score)
    return _Runs(paths, meta, names, floors, ev, fl, ev_fit, e, e_all, ref, split)


def _mode_config(runs: _Runs, G: GridSection, mode: str) -> FitConfig:
    """The run's FitConfig in `mode` with the grid's batch, evaluations and embedding: the
    base of every sweep and of the best."""
    return base_config(
        runs.meta,
        mode=mode,
        batch=G.batch or None,
        num_evals=G.num_evals,
        optimizer="adam",
        param="full",
        embedding=G.embedding,
        seed=runs.seed,
    )


def _sweep_grid(runs: _Runs, cfg: FitGridConfig, out: Path, progress: bool):
    """Sweep and score every mode x optimizer entry, one sweep folder each: (the members sorted
    by total, per folder their (binned, lag) tables, the lag tables, the sweep time per mode)."""
    G = cfg.grid
    scored, lags, tables, times = [], [], {}, {}
    for mode in G.modes:
        t = time.perf_counter()
        base = _mode_config(runs, G, mode)
        for i, entry in enumerate(cfg.optimizers):
            axes = {
                "lr": [float(x) for x in entry.lr],
                "scale": [float(x) for x in G.scale],
                "seed": [runs.seed],
                "w": [int(x) for x in G.w],
                "d": [int(x) for x in G.d],
                "param": list(G.param),
                "optimizer": [to_dict(o) for o in entry.configs()],
                **_variant_axes(G.forget, G.readout_scale),
            }
            folder = out / "sweeps" / f"{mode}-{i}-{entry.name}"  # fmt: skip
            table = _sweep_cached(base, folder, axes, entry.configs(), progress)
            table = table.assign(member=table["member"].astype(int), sweep=folder.name)
            sc, mb, ml = _score_sweep(
                runs.ref, folder, table, runs.edges, cfg.score, runs.floor, G.num_evals
            )
            scored.append(sc)
            tables[folder.name] = (mb, ml)
            lags.append(ml.assign(sweep=folder.name))
        times[f"sweep_{mode}_s"] = time.perf_counter() - t
    members = pd.concat(scored, ignore_index=True).sort_values("total", kind="stable")
    return members, tables, lags, times


def _best_member(members: pd.DataFrame, path: Path) -> pd.Series:
    """The best-ranked member that did not diverge and has a finite total."""
    live = members[~members["diverged"] & np.isfinite(members["total"])]
    if live.empty:
        raise DataError(f"{path}: every sweep member diverged or matched no point; "
                        "lower the learning rates")  # fmt: skip
    return live.iloc[0]


def _best_config(runs: _Runs, G: GridSection, best: pd.Series) -> FitConfig:
    """The best member's settings as one phenom run's FitConfig (refit and `best` train it)."""
    base = _mode_config(runs, G, str(best["mode"]))
    m = dataclasses.replace(base.model, w=int(best["w"]), d=int(best["d"]),
                            param=str(best["param"]), init_scale=float(best["scale"]),
                            forget=float(best["forget"]),
                            readout_scale=float(best["readout_scale"]))  # fmt: skip
    opt = dataclasses.replace(base.optimizer, name=str(best["optimizer"]), lr=float(best["lr"]),
                              momentum=float(best["b1"]), b2=float(best["b2"]),
                              weight_decay=float(best["weight_decay"]))  # fmt: skip
    return dataclasses.replace(base, model=m, optimizer=opt)


def _refit_seeds(
    runs: _Runs, cfg: FitGridConfig, best: pd.Series, best_cfg: FitConfig, out: Path, progress: bool
) -> list[dict]:
    """The best's scores per seed: the run's seed (its grid row), then seed + 1, ... up to the
    grid's seeds, refitted as one sweep in `out`: the spread the report gives over seeds."""
    per_seed = [{k: best[k] for k in PER_SEED}]
    if cfg.grid.seeds > 1:
        m, opt = best_cfg.model, best_cfg.optimizer
        axes = {"lr": [opt.lr], "scale": [m.init_scale],
                "seed": [runs.seed + i for i in range(1, cfg.grid.seeds)], "w": [m.w], "d": [m.d],
                "param": [m.param], "optimizer": [to_dict(opt)]}  # fmt: skip
        refit = _sweep_cached(best_cfg, out, axes, [opt], progress)
        rs, _, _ = _score_sweep(
            runs.ref, out, refit, runs.edges, cfg.score, runs.floor, cfg.grid.num_evals
        )
        per_seed += rs[PER_SEED].to_dict("records")
    return per_seed


def _ensure_best_run(best_cfg: FitConfig, run_dir: Path, progress: bool) -> bool:
    """Train the best as a phenom run in `run_dir` unless a complete one with the same config is
    there; True when reused (then a stored report of the same fit is kept as it is)."""
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
    return same


def _seed_intervals(runs: _Runs, members, tables: dict, score: ScoreConfig) -> dict | None:
    """For a seed group, the best member against each transformer seed alone (None for one run:
    no seeds to take an interval over)."""
    if len(runs.names) < 2:
        return None
    seed_refs = {}
    for n in runs.names:
        one = runs.ev_fit[runs.ev_fit["run"] == n].drop(columns="run")
        one_ref = build_reference(one, {None: runs.floors[n]}, runs.edges, score)
        seed_refs[n] = seed_reference(one_ref, runs.ref)
    return seed_intervals(members, tables.__getitem__, seed_refs, score)


def _heldout(runs: _Runs, best_evals: pd.DataFrame, shift: float, score: ScoreConfig):
    """The best's error on the held-out part at the shift fitted on the training part (None
    without a holdout): the out-of-sample check of the fit."""
    if runs.split is None:
        return None
    how, ev_out, e_out, split_text = runs.split
    ref_out = build_reference(ev_out, runs.fl, e_out, score)
    ref_all = build_reference(runs.ev, runs.fl, runs.edges_all, score)
    best_binned = binned(best_evals, runs.edges_all)
    full_lag = bin_lag(rank_crossings(best_evals, score.levels, floor=runs.floor), runs.edges_all)
    return {"split": how, "description": split_text,
            "fit_edges": runs.edges.tolist(), "heldout_edges": e_out.tolist(),
            "shift": shift,
            "in_sample": predict(best_binned, shift, runs.ref, score),
            "out_of_sample": predict(best_binned, shift, ref_out, score),
            "lag_out_of_sample": heldout_lag(full_lag, ref_all, runs.ref, score)}  # fmt: skip


def _lag_summary(runs: _Runs, members, lags, per_bin, lag_rows, score: ScoreConfig) -> dict:
    """The report's answers on the lag: per bin, whether the best reproduces it, whether any
    member does (the evidence when the best does not), and which knob sets its sign."""
    verdicts = _verdicts(per_bin, lag_rows, runs.ref, score)
    knobs = _knobs(members, int(runs.edges[0]))
    reproduces = bool(lag_rows) and all(r["sign_agrees"] and r["z_lag"] <= score.within
                                         for r in lag_rows)  # fmt: skip
    any_member = _any_reproduces(members, lags, runs.ref, score)
    return {
        "verdicts": verdicts,
        "reproduces_lag": reproduces,
        "any_member_reproduces_lag": any_member,
        "sign_knob": _sign_knob(knobs),
        "knobs": knobs,
    }


def _seed_stats(per_seed: list[dict]) -> dict:
    """<score>_mean and <score>_std over the refit's seeds (the spread the best is judged by)."""
    arr = {k: np.asarray([r[k] for r in per_seed], np.float64) for k in PER_SEED[1:]}
    # lag_score is NaN for every seed when the transformer has no bin to compare: no warning
    arr = {k: v if np.isfinite(v).any() else np.zeros(0) for k, v in arr.items()}
    return {
        **{f"{k}_mean": float(np.nanmean(v)) if len(v) else float("nan") for k, v in arr.items()},
        **{
            f"{k}_std": float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0
            for k, v in arr.items()
        },
    }


def _best_section(
    best: pd.Series, per_seed: list[dict], detail: dict, lag_score: float, lag_rows: list[dict]
) -> dict:
    """The report's part on the best member: its settings, its scores at the run's seed and
    over seeds, per rank bin (`detail`, of the best run) and per lag."""
    return {
        "best": {k: (best[k] if isinstance(best[k], str) else float(best[k])) for k in SETTINGS},
        "score": float(best["score"]),
        "band_score": detail["band_score"],
        "lag_score": lag_score,
        "total": total_score(detail["band_score"], lag_score),
        **_seed_stats(per_seed),
        "per_seed": per_seed,
        "shift": detail["shift"],
        "shift_at_bound": bool(detail["shift_at_bound"]),
        "accuracy_rmse": detail["accuracy_rmse"],
        "score_unshifted": detail["score_unshifted"],
        "per_bin": detail["per_bin"],
        "lag": lag_rows,
    }


def _report(
    runs: _Runs,
    cfg: FitGridConfig,
    members: pd.DataFrame,
    best_cfg: FitConfig,
    body: dict,
    run_dir: Path,
    times: dict,
) -> dict:
    """The JSON report: the run and its bits, the grid and the scoring, then `body` (the best,
    the lag verdicts, intervals, held-out part), the top members, the best run, the timings."""
    meta, paths, seed = runs.meta, runs.paths, runs.seed
    legacy_bits = not meta.get("bits_known")
    bits = (
        f"fresh bits make_bits({seed}, K, L): a legacy log does not store its bits, so the fit "
        "sees other sequences with the same K, L, alpha (floors and scores are statistical)"
        if legacy_bits
        else f"the run's own bits, make_bits({seed}, K={meta['K']}, L={meta['L']})"
    )
    report = {
        "run": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        "runs": [str(p) for p in paths],
        "run_kind": meta["kind"],
        "run_label": meta.get("label"),
        "run_status": meta.get("status"),  # a run still "running" is fitted up to its last eval
        "K": int(meta["K"]), "L": int(meta["L"]), "alpha": float(meta["alpha"]),
        "batch": best_cfg.train.batch, "steps": best_cfg.train.steps,
        "bits": bits, "fresh_bits": legacy_bits, "seed": seed,
        "noise": runs.ref.noise, "n_runs": runs.ref.n_runs,
        "grid": {**to_dict(cfg), "members": len(members)},
        "scoring": {**dataclasses.asdict(cfg.score), "edges": runs.edges.tolist(),
                    "metric": "members ranked by total = root mean of band_score^2 and "
                    "lag_score^2 (phenomjax.phenom.scoring); score is the pooled RMSE of "
                    "log(loss) (secondary); shift = presentation-scale factor s, minimising "
                    "band_score over a log-spaced grid"},
        **body,
        "top": members.head(10)[SETTINGS + ["total", "band_score", "lag_score", "score", "shift",
                                            "diverged"] + [c for c in members if c.startswith(
                                                "lag_") and c != "lag_score"]]
        .to_dict("records"),
        "best_run": str(run_dir),
        "best_config": to_dict(best_cfg),
        "wall_time_s": times,
    }  # fmt: skip
    return jsonable(report)


def fit_run(
    run_path: str | Path | Sequence[str | Path],
    out: str | Path,
    config: FitGridConfig | None = None,
    *,
    edges: Sequence[int] | None = None,
    progress: bool = True,
    holdout: str | None = None,
    **legacy,
) -> dict:
    """Fit the phenomenological model to a run or seed group; write `out`; return the report.

    `config` is the fit grid (default phenomjax/configs/fit.toml); the old keywords (ws, ds,
    lrs, scales, seeds, modes, optimizer, param, batch, num_evals, score) override it.
    `holdout` ("steps" or "bins", phenomjax.phenom.holdout) ranks the members on one part of the
    run's curves and reports the best's error on the rest (report["holdout"]); the scores and
    verdicts of the report are then those of the training part.
    """
    t0 = time.perf_counter()
    cfg = grid_config(config, **legacy)
    score = cfg.score
    paths, out = run_paths(run_path), Path(out)
    runs = _read_runs(paths, edges, holdout, score)
    out.mkdir(parents=True, exist_ok=True)
    members, tables, lags, times = _sweep_grid(runs, cfg, out, progress)
    best = _best_member(members, paths[0])

    t = time.perf_counter()
    best_cfg = _best_config(runs, cfg.grid, best)
    per_seed = _refit_seeds(runs, cfg, best, best_cfg, out / "refit", progress)
    run_dir = out / "best"
    same = _ensure_best_run(best_cfg, run_dir, progress)
    best_evals = RunDir(run_dir).read_evals()
    detail = score_curves(runs.ref.curves, binned(best_evals, runs.edges), score, runs.ref.sigma)
    best_lag = bin_lag(rank_crossings(best_evals, score.levels, floor=runs.floor), runs.edges)
    lag_score, lag_rows = lag_agreement(best_lag, runs.ref, score)
    times["refit_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0
    body = {
        **_best_section(best, per_seed, detail, lag_score, lag_rows),
        **_lag_summary(runs, members, lags, detail["per_bin"], lag_rows, score),
        "intervals": _seed_intervals(runs, members, tables, score),
        "holdout": _heldout(runs, best_evals, detail["shift"], score),
    }
    report = _report(runs, cfg, members, best_cfg, body, run_dir, times)
    stored = _stored_report(out / "report.json")
    if same and stored is not None and _fitted(stored) == _fitted(report):
        return stored  # all reused: keep the report (and timings) of the call that computed it
    atomic_write_json(out / "report.json", report)
    atomic_write_bytes(out / "members.csv", members.to_csv(index=False).encode())
    return report


def _verdicts(per_bin: list[dict], lag_rows: list[dict], ref, score: ScoreConfig) -> list[dict]:
    out = []
    for p in per_bin:
        key = (p["rank_lo"], p["rank_hi"])
        lr = [r for r in lag_rows if (r["rank_lo"], r["rank_hi"]) == key]
        if lr:
            ok = all(r["sign_agrees"] and r["z_lag"] <= score.within for r in lr)
            censored = not all(np.isfinite(r["ratio_fit"]) for r in lr)
            wrong = not all(r["sign_agrees"] for r in lr)
            lag = "agrees" if ok else (
                "the fit bin never reaches a level the transformer reaches" if censored
                else "wrong sign" if wrong else "too far")  # fmt: skip
        elif p["rank_lo"] == min(q["rank_lo"] for q in per_bin):
            lag = "top bin (reference)"
        else:
            lag = "not compared: the transformer bin does not reach the levels in every seed"
        z = p.get("z", np.nan)
        within = bool(np.isfinite(z) and z <= score.within)
        out.append({"rank_lo": p["rank_lo"], "rank_hi": p["rank_hi"], "z": z,
                    "within_band": within, "lag": lag})  # fmt: skip
    return out


def _any_reproduces(members, lags, ref, score: ScoreConfig) -> dict:
    """Whether any live member's lag agrees with the reference in every compared (bin, level):
    the evidence when the best does not."""
    live = members[~members["diverged"]]
    ml = pd.concat(lags, ignore_index=True) if lags else pd.DataFrame()
    n = 0
    best = None
    for r in live.itertuples():
        g = ml[(ml["sweep"] == r.sweep) & (ml["member"] == r.member)]
        ls, rows = lag_agreement(g, ref, score)
        if rows and all(x["sign_agrees"] and x["z_lag"] <= score.within for x in rows):
            n += 1
        if np.isfinite(ls) and (best is None or ls < best[0]):
            best = (ls, r.optimizer, r.param, int(r.w), int(r.d), float(r.lr))
    return {"members": len(live), "reproducing": n,
            "best_lag_score": None if best is None else best[0],
            "best_lag_member": None if best is None else
            dict(zip(("optimizer", "param", "w", "d", "lr"), best[1:], strict=True))}  # fmt: skip


def _stored_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fitted(report: dict) -> str:
    """The report without its timings, as text (so NaN compares equal to NaN)."""
    return json.dumps({k: v for k, v in report.items() if k != "wall_time_s"}, sort_keys=True)


def format_report(r: dict) -> str:
    """The printed table: best settings, scores, per-bin verdicts, lag table, the sign knob."""
    b = r["best"]
    runs = r["runs"]
    lines = [
        f"fit of {runs[0]}{f' (+{len(runs) - 1} seeds)' if len(runs) > 1 else ''} "
        f"({r['run_kind']}, K={r['K']}, L={r['L']}, batch {r['batch']}, {r['steps']} steps; "
        f"{r['grid']['members']} members)",
        f"  data: {r['bits']}",
        *(
            [f"  run status: {r['run_status']} (fitted up to its last evaluation)"]
            if r.get("run_status") not in (None, "complete")
            else []
        ),  # fmt: skip
        f"  noise reference: {r['noise']}",
        "  top members (total = band and lag in seed-band units; score = pooled RMSE):",
        f"    {'mode':<11}{'opt':<9}{'wd':>5}{'param':>9}{'w':>3}{'d':>4}{'lr':>9}{'scale':>7}"
        f"{'total':>7}{'band':>7}{'lag':>7}{'rmse':>7}{'shift':>6}",
    ]
    for t in r["top"][:5]:
        lines.append(
            f"    {t['mode']:<11}{t['optimizer']:<9}{t['weight_decay']:>5.2g}{t['param']:>9}"
            f"{t['w']:>3}{t['d']:>4}{t['lr']:>9.2g}{t['scale']:>7.2g}{t['total']:>7.2f}"
            f"{t['band_score']:>7.2f}{t['lag_score']:>7.2f}{t['score']:>7.3f}{t['shift']:>6.2f}"
        )
    bound = "  AT ITS BOUND: a warning, not a result" if r["shift_at_bound"] else ""
    lines += [
        f"  best: {b['mode']} {b['optimizer']} (b1 {b['b1']:g}, b2 {b['b2']:g}, wd "
        f"{b['weight_decay']:g}) {b['param']} w={b['w']:g} d={b['d']:g} lr={b['lr']:g} "
        f"scale={b['scale']:g}",
        f"  total {r['total_mean']:.2f} +- {r['total_std']:.2f} over {len(r['per_seed'])} seeds "
        f"(band {r['band_score']:.2f}, lag {r['lag_score']:.2f}; pooled log-loss RMSE "
        f"{r['score']:.4f}); presentation shift {r['shift']:.2f}{bound}",
        f"    {'rank bin':<14}{'points':>7}{'logloss':>9}{'sigma':>7}{'z':>7}  band    lag",
    ]
    for p, v in zip(r["per_bin"], r["verdicts"], strict=True):
        lines.append(
            f"    {p['rank_lo']:>6}-{p['rank_hi'] - 1:<7}{p['n_points']:>7}"
            f"{p['log_loss_rmse']:>9.4f}{p['sigma']:>7.3f}{p['z']:>7.2f}  "
            f"{'within' if v['within_band'] else 'OUT':<8}{v['lag']}"
        )
    if r["lag"]:
        lines.append(f"    {'lag ratio':<14}{'level':>6}{'transformer [seed range]':>28}"
                     f"{'fit':>8}{'z':>7}")  # fmt: skip
        for x in r["lag"]:
            lines.append(
                f"    {x['rank_lo']:>6}-{x['rank_hi'] - 1:<7}{x['level']:>6.2f}"
                f"{x['ratio_ref']:>12.2f} [{x['ratio_ref_lo']:.2f}, {x['ratio_ref_hi']:.2f}]"
                f"{'':>4}{x['ratio_fit']:>8.2f}{x['z_lag']:>7.2f}"
            )
    a = r["any_member_reproduces_lag"]
    lines += [
        f"  lag reproduced by the best: {'yes' if r['reproduces_lag'] else 'no'}; by "
        f"{a['reproducing']} of {a['members']} members",
        f"  knob that sets the sign of the lag: {r['sign_knob']}",
    ]
    lines += _holdout_lines(r)
    w = r["wall_time_s"]
    lines.append(
        f"  wall time {w['total_s']:.1f} s ("
        + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in w.items() if k != "total_s")
        + f"); best run {r['best_run']}"
    )
    return "\n".join(lines)


def _holdout_lines(r: dict) -> list[str]:
    """The parameter intervals over seeds and the held-out table, when the report has them."""
    lines = []
    iv = r.get("intervals")
    if iv and iv["per_seed"]:
        same = "same setting" if iv["same_setting"] else "settings differ between seeds"
        lines.append(
            f"  best member per transformer seed ({len(iv['per_seed'])} seeds, {same}): "
            + ", ".join(f"{k} [{iv[k][0]:.3g}, {iv[k][1]:.3g}]" for k in ("lr", "scale", "shift"))
        )
    h = r.get("holdout")
    if h:
        lines += [
            f"  held out ({h['split']}): {h['description']}; shift fixed at {h['shift']:.2f}",
            f"    {'rank bin':<14}{'points':>7}{'logloss':>9}{'sigma':>7}{'z':>7}",
        ]
        for p in h["out_of_sample"]:
            lines.append(
                f"    {p['rank_lo']:>6}-{p['rank_hi'] - 1:<7}{p['n_points']:>7}"
                f"{p['log_loss_rmse']:>9.4f}{p['sigma']:>7.3f}{p['z']:>7.2f}"
            )
        for x in h["lag_out_of_sample"]:
            lines.append(
                f"    lag {x['rank_lo']}-{x['rank_hi'] - 1} at {x['level']:.2f}: transformer "
                f"{x['ratio_ref']:.2f}, fit {x['ratio_fit']:.2f}, z {x['z_lag']:.2f} (held out)"
            )
    return lines
