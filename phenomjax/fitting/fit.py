"""Fit the phenomenological model to a run or seed group (docs/design.md §6, fitting to a run).

    phenomjax fit runs/small_cpu --out runs/small_cpu-fit

read -> sweep -> score once -> pick -> refit:

1. Read the run(s) once (fitting.inputs): curves, floors, the reference members are scored
   against (on the training part only with a holdout).
2. Cost the grid (fitting.grid) and refuse it above the documented bound, before anything runs.
3. For each mode, one sweep folder of every [[optimizers]] entry (reused when complete with the
   same base config and axes: runs.reuse.ensure_sweep; the entries of one optimizer family
   share a compiled program, phenom.axes.groups): the run's K, L, alpha and batch for the run's
   number of steps, so every rank reaches the run's presentations (expected: n_m = t B p_m;
   stochastic, with the run's seed, draws exactly the transformer's batches).
4. Score every member once (fitting.scoring.score_member); the members table, sorted by total,
   is the ranking; the best is the first live member.
5. Refit the best on the next seeds (one sweep folder, refit/) and, side by side in a thread,
   write it as a phenom run directory, best/ (runs.reuse.ensure_run).
6. Verdicts, knobs, intervals over transformer seeds and the held-out part, from those scores.

Output folder (claimed as phenomjax's own; an input inside it is refused): sweeps/<mode>/,
refined/ (the refined optimum as a member), refit/, best/, members.csv, then report.json, which
records members.csv's sha256: a rerun reuses the stored report only when it is the same fit and
the digest matches.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.binning import binned
from ..analysis.lag import bin_lag, rank_crossings
from ..config import to_dict
from ..data import DataConfig
from ..errors import ConfigError, DataError
from ..phenom import variants
from ..phenom.sweep import auto_jobs, describe, read_sweep, sweep, sweep_axes, sweep_flops
from ..phenom.train import ModelSection, PhenomConfig, PhenomOptimConfig, TrainSection, train_phenom
from ..runs import atomic_write_bytes
from ..runs.reuse import check_outside, claim, ensure_run, ensure_sweep
from ..runs.validate import read_parquet
from ..version import __version__
from ..workers import Workers, check_jobs, shared_compilations
from .grid import (
    FitGridConfig,
    GridSection,
    check_cost,
    default_grid,
    entry_of,
    grid_cost,
    on_edge,
)
from .halving import halving_sweep, prefix_score, rungs_of, schedule
from .holdout import Holdout, heldout_lag, predict, seed_intervals, seed_reference
from .inputs import FitInput, RunPaths, read_input
from .members import REFINED, Member, live, member_of, members_table
from .refine import refine
from .report import Best, FitReport, Ranked, Refined, Rung, RunPart, SeedScore, Settings, Timings
from .scoring import MemberScore, ScoreConfig, build_reference, score_member, seed_band
from .verdict import any_member, bin_verdicts, knobs, reproduction, sign_knob

# per-sequence sweep rows read at once while scoring (~30 bytes each): bounds memory at K = 1e5
SCORE_ROWS = 4_000_000
METRIC = ("members ranked by total = root mean of band_score^2 and lag_score^2 "
          "(fitting.scoring); rmse = the pooled RMSE of log loss (secondary); shift = the "
          "presentation-scale factor s minimising band_score over a log-spaced grid")  # fmt: skip


# -- the phenom model's API: every PhenomConfig, sweep and train_phenom call is in these three -


def phenom_config(inp: FitInput, grid: GridSection, mode: str, best: Member | None = None):
    """The phenom config of a sweep's base (the run's K, L, alpha, seed, batch, steps) or, with
    `best`, of the best member as one run (refit and best/ train it)."""
    b = grid.batch or inp.meta.get("batch")
    if not b:
        raise ConfigError(f"{inp.paths[0]}: the run does not record its batch size; pass --batch")
    if inp.meta["final_step"] < 1:
        raise DataError(f"{inp.paths[0]}: its last evaluation is at step 0; nothing to fit")
    m = inp.meta
    cfg = PhenomConfig(
        data=DataConfig(K=int(m["K"]), L=int(m["L"]), alpha=float(m["alpha"]), seed=inp.seed),
        model=ModelSection(param="full", embedding=grid.embedding),
        optimizer=PhenomOptimConfig(name="adam"),
        train=TrainSection(mode=mode, steps=int(m["final_step"]), batch=int(b),
                           num_evals=grid.num_evals, per_position=False),
    )  # fmt: skip
    if best is None:
        return cfg
    knobs = {k: getattr(best, k) for k in ("variant",) + variants.knob_names()}
    model = dataclasses.replace(cfg.model, w=best.w, d=best.d, param=best.param,
                                init_scale=best.scale, **knobs)  # fmt: skip
    opt = dataclasses.replace(cfg.optimizer, name=best.optimizer, lr=best.lr, b1=best.b1,
                              b2=best.b2, weight_decay=best.weight_decay)  # fmt: skip
    return dataclasses.replace(cfg, model=model, optimizer=opt)


def sweep_axes_of(axes: dict) -> dict:
    """phenom.sweep's axes of a fit's `axes` ("optimizer" a list of settings: name, b1, b2,
    weight_decay, made optimizer configs; the rates are the lr axes)."""
    ax = dict(axes)
    opts = []
    for s in ax.pop("optimizer"):
        kw = {"name": s["name"], "lr": float(ax["lr"][0]), "weight_decay": s["weight_decay"]}
        kw.update({"b1": s["b1"]} if "b1" in s else {})
        kw.update({"b2": s["b2"]} if "b2" in s else {})
        opts.append(PhenomOptimConfig(**kw))
    ax["optimizer"] = opts
    return ax


def run_sweep(base, folder: Path, axes: dict, progress: bool, halving: dict | None = None,
              pool: Workers | None = None):  # fmt: skip
    """The sweep of `axes` (singular names; "optimizer" a list of settings: name, b1, b2,
    weight_decay) in `folder`, or the complete one already there with the same description.
    `halving`: fitting.halving.halving_sweep's rungs, keep, edges and score (None: every
    member runs to the end; only then do the workers of `pool`, if any, train its groups side
    by side)."""
    ax = sweep_axes_of(axes)
    full = sweep_axes(base, ax)  # the axes left out at the base config's value
    shared = ("scale", "seed", "w", "d", "param")
    rates = sum(len(lrs) for lrs in full["optimizer_lr"])
    n = rates * int(np.prod([len(full[k]) for k in shared])) * len(variants.combinations(full))
    if halving is None:
        run = lambda: sweep(base, ax, out=folder, progress=progress, pool=pool)  # noqa: E731
        note = None
    else:
        run = lambda: halving_sweep(base, ax, folder, progress=progress, **halving)  # noqa: E731
        note = schedule(halving["rungs"], halving["keep"])
    table, how = ensure_sweep(
        folder, describe(base, ax, note),
        sweep=run,
        read=lambda: read_parquet(folder / "sweep.parquet", str(folder / "sweep.parquet"),
                                  DataError, contract=False),
        complete=lambda t: len(t) == n,
    )  # fmt: skip
    if how == "replaced":
        warnings.warn(f"{folder}: replaced (it held a sweep of other settings)", stacklevel=2)
    return table


def train_best(cfg, folder: Path, progress: bool) -> None:
    """best/: the best member as a phenom run directory (reused when complete and the same)."""
    train = lambda resume: train_phenom(cfg, folder, resume=resume, progress=progress)  # noqa: E731
    _, how = ensure_run(folder, to_dict(cfg), kind="phenom", train=train, replace=True)
    if how == "replaced":
        warnings.warn(f"{folder}: replaced (it held the best of another grid)", stacklevel=2)


# -- read -> sweep -> score once -> pick -> refit ---------------------------------------------


def _member_tables(folder: Path, ids: list[int], inp: FitInput, num_evals: int, levels):
    """{member: (binned curves, bin_lag table)} of a sweep, a chunk of members at a time."""
    edges = inp.edges
    chunk = max(1, SCORE_ROWS // (int(edges[-1]) * (num_evals + 1)))
    out = {}
    for i in range(0, len(ids), chunk):
        rows = read_sweep(folder, ids[i : i + chunk])[1]
        b = binned(rows, edges, group="member")
        for m, g in rows.groupby("member", sort=True):
            cr = rank_crossings(g.drop(columns="member"), levels, floor=inp.floor)
            out[int(m)] = (b[b["member"] == m], bin_lag(cr, edges))
    return out


def _scored(folder: Path, table: pd.DataFrame, inp: FitInput, cfg: FitGridConfig) -> dict:
    """Every member of a sweep scored once: {member: (MemberScore, (binned, bin_lag))}."""
    ids = table["member"].astype(int).tolist()
    got = _member_tables(folder, ids, inp, cfg.grid.num_evals, cfg.score.levels)
    return {m: (score_member(b, lag, inp.ref, cfg.score), (b, lag)) for m, (b, lag) in got.items()}


@dataclasses.dataclass(frozen=True)
class _Swept:
    sweeps: tuple  # (folder name, sweep table) of every sweep, in order
    scores: dict  # (sweep, member) -> MemberScore
    tables: dict  # (sweep, member) -> (binned, bin_lag)
    per_mode: tuple[tuple[str, float], ...]
    rungs: tuple[Rung, ...]  # the halving's, every sweep's in turn

    @functools.cached_property
    def members(self) -> pd.DataFrame:
        """The ranking (members.csv)."""
        return members_table(list(self.sweeps), self.scores)

    def adding(self, name: str, table: pd.DataFrame, scored: dict) -> _Swept:
        """With one more sweep (`name`, its table and _scored members)."""
        return dataclasses.replace(
            self, sweeps=(*self.sweeps, (name, table)),
            scores={**self.scores, **{(name, m): sc for m, (sc, _) in scored.items()}},
            tables={**self.tables, **{(name, m): t for m, (_, t) in scored.items()}},
        )  # fmt: skip


def _halving(inp: FitInput, cfg: FitGridConfig) -> dict | None:
    """run_sweep's halving arguments of this grid (None: the exhaustive grid)."""
    G = cfg.grid
    if not G.halving:
        return None
    return {"rungs": G.halving_rungs, "keep": G.halving_keep, "edges": inp.edges,
            "score": prefix_score(inp.ref, cfg.score)}  # fmt: skip


def _sweep_grid(inp: FitInput, cfg: FitGridConfig, out: Path, progress: bool,
                jobs: int | None = 1) -> _Swept:  # fmt: skip
    """Every mode swept (one folder each, of every [[optimizers]] entry; both modes' groups
    on `jobs` workers sharing one compilation cache) and every member scored once."""
    G, per_mode, rungs = cfg.grid, [], []
    swept = _Swept((), {}, {}, (), ())
    halving = _halving(inp, cfg)
    settings = [(s, e.lr) for e in cfg.optimizers for s in e.settings()]
    axes = {"lr": [float(x) for x in cfg.optimizers[0].lr],
            "optimizer_lr": [[float(x) for x in lrs] for _, lrs in settings],
            "scale": [float(x) for x in G.scale], "seed": [inp.seed],
            "w": [int(x) for x in G.w], "d": [int(x) for x in G.d], "param": list(G.param),
            "optimizer": [s for s, _ in settings],
            **{k: list(getattr(G, k)) for k in ("variant",) + variants.knob_names()}}  # fmt: skip
    bases = {mode: phenom_config(inp, G, mode) for mode in G.mode}
    if halving is not None:  # a halving sweep runs in this process
        jobs = 1
    elif jobs is None:  # both modes' groups weighed together: they share the workers
        ax = sweep_axes_of(axes)
        jobs = auto_jobs(sum(sweep_flops(b, ax) for b in bases.values()))
    t0 = time.perf_counter()

    def one(mode: str):  # the modes side by side on the workers, costliest group first
        folder = out / "sweeps" / mode
        table = run_sweep(bases[mode], folder, axes, progress, halving, pool=pool)
        # scored here, while the other mode's last groups still train (a core is free then)
        scored = _scored(folder, table, inp, cfg)
        return mode, folder, table, scored, time.perf_counter() - t0

    with shared_compilations() as cache, Workers(jobs, cache=cache) as pool:
        done = pool.map(one, list(G.mode))  # a draw compiled once for every worker
    for mode, folder, table, scored, seconds in done:
        rungs += rungs_of(folder.name, table)
        swept = swept.adding(folder.name, table, scored)
        per_mode.append((mode, seconds))
    return dataclasses.replace(swept, per_mode=tuple(per_mode), rungs=tuple(rungs))


def _pick(members: pd.DataFrame, inp: FitInput) -> Member:
    """The best-ranked member that did not diverge and has a finite total."""
    ok = live(members)
    ok = ok[np.isfinite(ok["total"])]
    if ok.empty:
        raise DataError(f"{inp.paths[0]}: every sweep member diverged or matched no point; "
                        "lower the learning rates")  # fmt: skip
    return member_of(ok.iloc[0])


def _refined(inp: FitInput, cfg: FitGridConfig, swept: _Swept) -> Refined | None:
    """The best member refined by gradient in its own mode (None when off, or when no member
    has a finite total); not yet scored (its total is _candidate's)."""
    ok = live(swept.members)
    ok = ok[np.isfinite(ok["total"])]
    if cfg.grid.refine_steps < 1 or ok.empty:
        return None
    m = member_of(ok.iloc[0])
    shift = swept.scores[(m.sweep, m.member)].shift
    base = phenom_config(inp, cfg.grid, m.mode, m)
    return refine(base, m, shift if np.isfinite(shift) else 1.0, inp.ref, inp.edges,
                  steps=cfg.grid.refine_steps, method=cfg.grid.refine_method,
                  lr=cfg.grid.refine_lr, patience=cfg.grid.refine_patience, floor=inp.floor,
                  score=cfg.score)  # fmt: skip


def _candidate(inp: FitInput, cfg: FitGridConfig, swept: _Swept, out: Path,
               progress: bool) -> tuple[Refined | None, _Swept]:  # fmt: skip
    """The refined optimum trained as one more member (out/refined/, a sweep of one) and scored
    like every member, so that the ranking, and the best, include it: the refinement's
    surrogate is smooth but not the score, so only the score decides."""
    refined = _refined(inp, cfg, swept)
    if refined is None:
        return None, swept
    m, after = refined.member, dict(zip(refined.knobs, refined.after, strict=True))
    at = dataclasses.replace(m, **{k: v for k, v in after.items() if k != "shift"})
    folder = out / REFINED
    table = _member_sweep(inp, cfg, at, [m.seed], folder, progress)
    swept = swept.adding(REFINED, table, _scored(folder, table, inp, cfg))
    refined = dataclasses.replace(refined, total=swept.scores[(REFINED, 0)].total,
                                  start_total=swept.scores[(m.sweep, m.member)].total)  # fmt: skip
    return refined, swept


def _member_sweep(inp: FitInput, cfg: FitGridConfig, m: Member, seeds, folder: Path,
                  progress: bool) -> pd.DataFrame:  # fmt: skip
    """One member's settings (its mode, variant and knobs in the base config) swept over
    `seeds` in `folder`: the refined optimum, the refit's further seeds."""
    setting = {"name": m.optimizer, "b1": m.b1, "b2": m.b2, "weight_decay": m.weight_decay}
    axes = {"lr": [m.lr], "scale": [m.scale], "seed": [int(x) for x in seeds], "w": [m.w],
            "d": [m.d], "param": [m.param], "optimizer": [setting]}  # fmt: skip
    return run_sweep(phenom_config(inp, cfg.grid, m.mode, m), folder, axes, progress)


def _folder(out: Path, sweep: str) -> Path:
    """Where a member's sweep is: the refined member's own folder, or a grid sweep's."""
    return out / REFINED if sweep == REFINED else out / "sweeps" / sweep


def _edges(cfg: FitGridConfig, best: Member) -> tuple[str, ...]:
    """The grid edges the best sits on (along its optimizer entry's rates); none for the
    refined member, which is off the grid by construction."""
    if best.sweep == REFINED:
        return ()
    return on_edge(cfg, entry_of(cfg, best), best.lr, best.scale)


def _seed_score(seed: int, s: MemberScore) -> SeedScore:
    return SeedScore(seed, s.rmse, s.band_score, s.lag_score, s.total, s.shift)


def _refit(inp: FitInput, cfg: FitGridConfig, best: Member, score: MemberScore, out: Path,
           progress: bool) -> tuple[SeedScore, ...]:  # fmt: skip
    """The best's scores per seed: the run's seed (its grid score), then seed + 1, ... up to
    refit_seeds, refitted as one sweep in `out` and scored once each."""
    per = [_seed_score(inp.seed, score)]
    n = cfg.grid.refit_seeds
    if n > 1:
        table = _member_sweep(inp, cfg, best, [inp.seed + i for i in range(1, n)], out, progress)
        got = _scored(out, table, inp, cfg)
        for m, seed in zip(table["member"].astype(int), table["seed"].astype(int), strict=True):
            per.append(_seed_score(int(seed), got[int(m)][0]))
    return tuple(per)


def _holdout(inp: FitInput, folder: Path, best: Member, shift: float, score: ScoreConfig):
    """The best's error on the held-out part at the shift fitted on the training part (None
    without a holdout), read from the best member's own sweep curves on every rank edge."""
    if inp.split is None:
        return None
    sp = inp.split
    rows = read_sweep(folder, [best.member])[1].drop(columns="member")
    curves = binned(rows, inp.all_edges)
    lag = bin_lag(rank_crossings(rows, score.levels, floor=inp.floor), inp.all_edges)
    full = inp.reference(inp.evals, inp.all_edges, score)
    return Holdout(sp.how, sp.description, tuple(int(e) for e in inp.edges),
                   tuple(int(e) for e in sp.edges), shift,
                   predict(curves, shift, inp.ref, score),
                   predict(curves, shift, inp.reference(sp.evals, sp.edges, score), score),
                   heldout_lag(lag, full, inp.ref, score))  # fmt: skip


def _intervals(inp: FitInput, swept: _Swept, score: ScoreConfig):
    """For a seed group, the best member against each transformer seed alone (None for one run:
    no seeds to take an interval over)."""
    if len(inp.names) < 2:
        return None
    refs = {}
    for n in inp.names:
        one = inp.fit_evals[inp.fit_evals["run"] == n].drop(columns="run")
        one_ref = build_reference(one, {None: inp.floors[n]}, inp.edges, score)
        refs[n] = seed_reference(one_ref, inp.ref)
    return seed_intervals(swept.members, lambda s, m: swept.tables[(s, m)], refs, score)


def _run_part(inp: FitInput, base) -> RunPart:
    m = inp.meta
    fresh = not m.get("bits_known")
    bits = (
        f"fresh bits make_bits({inp.seed}, K, L): a legacy log does not store its bits, so the "
        "fit sees other sequences with the same K, L, alpha (floors and scores are statistical)"
        if fresh
        else f"the run's own bits, make_bits({inp.seed}, K={m['K']}, L={m['L']})"
    )
    return RunPart(inputs=inp.inputs, runs=tuple(str(p) for p in inp.paths), kind=m["kind"],
                   label=m.get("label"), status=m.get("status"), K=int(m["K"]), L=int(m["L"]),
                   alpha=float(m["alpha"]), batch=base.train.batch, steps=base.train.steps,
                   seed=inp.seed, bits=bits, fresh_bits=fresh, noise=inp.ref.noise,
                   n_seeds=inp.ref.n_runs)  # fmt: skip


def _best_part(best: Member, score: MemberScore, per_seed, run: Path, cfg) -> Best:
    totals = pd.DataFrame({"run": range(len(per_seed)), "k": 0,
                           "total": [p.total for p in per_seed]})  # fmt: skip
    band = seed_band(totals, ["total"], ["k"])
    get = (lambda c: float(band[c].iloc[0])) if len(band) else (lambda c: float("nan"))  # noqa: E731
    return Best(best, score, tuple(per_seed), get("total_mean"), get("total_std"),
                get("total_lo"), get("total_hi"), int(get("total_n")) if len(band) else 0,
                str(run), to_dict(cfg))  # fmt: skip


def _ranked(members: pd.DataFrame, n: int = 10) -> tuple[Ranked, ...]:
    return tuple(Ranked(member_of(r), float(r.total), float(r.band_score), float(r.lag_score),
                        float(r.rmse), float(r.shift), bool(r.diverged))
                 for r in members.head(n).itertuples())  # fmt: skip


def _commit(out: Path, report: FitReport, members: pd.DataFrame) -> FitReport:
    """members.csv first, report.json (naming its sha256) last; an equal stored report whose
    members.csv still has the recorded digest is kept as it is ("reused")."""
    csv = members.to_csv(index=False).encode()
    report = dataclasses.replace(report, members_sha256=hashlib.sha256(csv).hexdigest())
    try:
        stored = FitReport.load(out / "report.json")
        on_disk = hashlib.sha256((out / "members.csv").read_bytes()).hexdigest()
    except (DataError, OSError):
        stored = on_disk = None
    if stored is not None and stored.same_fit(report) and on_disk == stored.members_sha256:
        return dataclasses.replace(stored, outcome="reused")  # and the timings that computed it
    atomic_write_bytes(out / "members.csv", csv)
    report.save(out / "report.json")
    return report


def fit_run(
    runs: RunPaths,
    out: str | Path,
    config: FitGridConfig | None = None,
    *,
    progress: bool = True,
    holdout: str | None = None,
    jobs: int | None = None,
) -> FitReport:
    """Fit the phenomenological model to a run or seed group; write `out`; return the report.

    `config` is the fit grid (default phenomjax/configs/fit.toml). `holdout` ("steps" or
    "bins", fitting.holdout) ranks the members on one part of the run's curves and reports the
    best's error on the rest; the scores and verdicts are then those of the training part.
    `jobs` worker processes train a sweep's groups side by side (phenomjax.workers; None: one
    per core of this machine when a sweep's work pays for them); the numbers are those of one
    process.
    """
    t0 = time.perf_counter()
    cfg = config if config is not None else default_grid()
    for part in (cfg.grid, *cfg.optimizers, cfg.score, cfg):
        part.validate()
    if jobs is not None:  # one line before anything is read or written
        check_jobs(jobs)
    inp = read_input(runs, cfg.score, holdout)
    out = Path(out)
    check_outside(inp.paths, out)
    cost = grid_cost(cfg, int(inp.meta["K"]))
    check_cost(cost, f"fit of {inp.paths[0]}")
    claim(out, "a fit")
    t = time.perf_counter()
    swept = _sweep_grid(inp, cfg, out, progress, jobs)
    sweep_s = time.perf_counter() - t
    t = time.perf_counter()
    refined, swept = _candidate(inp, cfg, swept, out, progress)
    refine_s = time.perf_counter() - t
    t = time.perf_counter()
    best = _pick(swept.members, inp)
    score = swept.scores[(best.sweep, best.member)]
    best_cfg = phenom_config(inp, cfg.grid, best.mode, best)
    # the refit's seeds and best/ side by side: two programs of one member, each on a core
    # (XLA runs and compiles them without the GIL); the refit's bar would overwrite best/'s
    with cf.ThreadPoolExecutor(1) as thread:
        refit = thread.submit(_refit, inp, cfg, best, score, out / "refit", False)
        train_best(best_cfg, out / "best", progress)
        per_seed = refit.result()
    refit_s = time.perf_counter() - t
    rows = knobs(swept.members, int(inp.edges[0]))
    report = FitReport(
        version=__version__,
        run=_run_part(inp, best_cfg),
        settings=Settings(cfg, tuple(int(e) for e in inp.edges), holdout, cost, METRIC),
        best=_best_part(best, score, per_seed, out / "best", best_cfg),
        verdicts=bin_verdicts(score, inp.ref, cfg.score),
        reproduction=reproduction(score, best, cfg.score),
        any_member=any_member(swept.members, swept.scores, cfg.score),
        knobs=rows,
        sign_knob=sign_knob(rows),
        top=_ranked(swept.members),
        intervals=_intervals(inp, swept, cfg.score),
        holdout=_holdout(inp, _folder(out, best.sweep), best, score.shift, cfg.score),
        timings=Timings(
            sweep_s,
            refit_s,
            time.perf_counter() - t0,
            swept.per_mode,
            refine_s,
        ),  # fmt: skip
        halving=swept.rungs,
        on_edge=_edges(cfg, best),
        refined=refined,
        members_sha256="",
    )
    return _commit(out, report, swept.members)
