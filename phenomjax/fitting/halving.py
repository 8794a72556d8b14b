"""Successive halving inside the vmapped sweep (docs/design.md §6, "Fitting to a run").

    table = halving_sweep(base, axes, out, rungs=(0.1, 0.3), keep=0.34, edges=edges,
                          score=lambda binned, t: ...)

Members that are clearly worse after a tenth of the run need not run to its end. At each rung
(a fraction of the run's steps, snapped down to one of its evaluation steps) every member still
running is scored on its curve prefix by `score(binned curves up to t, t)` (the fit passes the
per-bin score of scoring.score_member against the reference restricted to the steps reached).
The best `keep` share of the sweep's members (at least one; a diverged member never survives)
runs on, and a group without survivors stops. A group with survivors runs on whole: its other
members ride along in the same vmapped batch (and are kept, not dropped), because compacting
the batch retraces and recompiles the group's programs at every rung, which on the demo run
cost more than the steps it saved (compact=True does it: each group then runs its survivors
only). The rows of a dropped member are those
of its state at its rung, with `dropped_at` = that step (-1: ran to the end); a sweep without
halving has no such column. `rungs_of(table)` recounts the rungs from that column, so a reused
sweep reports the same rungs as the one that computed it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.binning import binned
from ..data import log_spaced_steps
from ..distributed import gather
from ..phenom.sweep import (
    advance_members,
    evaluator,
    group_members,
    member_rows,
    open_sweep,
    take_members,
)
from ..runs import atomic_write_parquet
from .members import DROPPED
from .report import Rung
from .scoring import Reference, ScoreConfig, score_member


def rung_steps(steps: int, num_evals: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """The rungs' steps: each fraction of `steps` snapped down to an evaluation step (the
    members' state there is the one their curves end with); repeats and the last step dropped."""
    evals = [int(e) for e in log_spaced_steps(int(steps), int(num_evals)) if e > 0]
    out: list[int] = []
    for f in sorted(fractions):
        below = [e for e in evals if e <= f * steps]
        if below and below[-1] < steps and below[-1] not in out:
            out.append(below[-1])
    return tuple(out)


def survivors(scores: Sequence[float], keep: float) -> np.ndarray:
    """Indices (increasing) of the ceil(keep * n) members of least score, at least one; a
    non-finite score ranks last, ties keep the earlier member."""
    s = np.asarray(scores, np.float64)
    n = max(1, math.ceil(keep * len(s) - 1e-9)) if len(s) else 0
    order = np.argsort(np.where(np.isfinite(s), s, np.inf), kind="stable")
    return np.sort(order[:n])


def schedule(rungs: Sequence[float], keep: float, compact: bool = False) -> dict:
    """What sweep.json records of the halving (a fit's sweep cache compares it)."""
    return {"halving": {"rungs": [float(f) for f in rungs], "keep": float(keep),
                        "compact": bool(compact)}}  # fmt: skip


def prefix_score(ref: Reference, cfg: ScoreConfig) -> Callable[[pd.DataFrame, int], float]:
    """score(binned curves of one member up to step t, t): the per-bin score of
    scoring.score_member (band_score: no lag, which a prefix seldom reaches) against the
    reference restricted to the steps reached (the sweep runs at the run's batch and steps)."""
    cut: dict[int, Reference] = {}

    def score(curves: pd.DataFrame, t: int) -> float:
        if t not in cut:
            cut[t] = dataclasses.replace(ref, curves=ref.curves[ref.curves["step"] <= t])
        return score_member(curves, None, cut[t], cfg).total

    return score


def rungs_of(sweep_name: str, table: pd.DataFrame) -> tuple[Rung, ...]:
    """The rungs of a halving sweep's member table: at each step where members were dropped,
    how many were still running and how many stopped there."""
    if DROPPED not in table.columns:
        return ()
    at = table[DROPPED].to_numpy(np.int64)
    return tuple(Rung(sweep_name, int(r), int(((at < 0) | (at >= r)).sum()), int((at == r).sum()))
                 for r in np.unique(at[at >= 0]))  # fmt: skip


@dataclasses.dataclass
class _Group:
    """One group of a halving sweep while it runs: its members' state, ids and curve prefix."""

    cfg: Any
    model: Any
    gid: int
    vm: Any  # phenom.sweep's members (its state is the one at step 0)
    state: Any
    ids: np.ndarray
    last: dict
    curves: list  # binned tables of every evaluation so far (member column)


def _start(group, ax, gid: int, first: int) -> _Group:
    vm = group_members(group, ax)
    if vm.S != 1:
        raise ValueError("halving_sweep: one seed per sweep (the member axis is flat)")
    return _Group(group.cfg, group.model, gid, vm, vm.state, first + np.arange(vm.H), {}, [])


def _evaluate(g: _Group, out: Path, edges: np.ndarray) -> Callable:
    def keep(rows: pd.DataFrame) -> None:  # binned at once: K rows a member never pile up
        g.curves.append(binned(rows, edges, group="member"))

    return evaluator(g.cfg, g.vm, g.ids, out, g.gid, g.last, on_rows=keep)


def _prefix_scores(g: _Group, t: int, score: Callable) -> list[float]:
    """Each member's score on its curves up to step t; a diverged member scores inf."""
    alive = np.asarray(gather(g.state["live"])).reshape(-1)
    b = pd.concat(g.curves, ignore_index=True)
    out = []
    for j, m in enumerate(g.ids):
        mine = b[b["member"] == m].drop(columns="member")
        out.append(float(score(mine, t)) if alive[j] else float("inf"))
    return out


def _compact(g: _Group, keep: np.ndarray) -> None:
    """Keep members `keep` (indices into the group's current members) running."""
    g.vm = take_members(g.vm._replace(state=g.state), keep)
    g.state, g.ids = g.vm.state, g.ids[keep]
    for k in ("loss", "acc"):
        g.last[k] = g.last[k][keep]


def _rows(g: _Group, which: np.ndarray, dropped_at: int) -> list[dict]:
    rows = member_rows(g.cfg, g.model, g.vm, g.state, g.last, g.ids)
    return [{**rows[j], DROPPED: dropped_at} for j in which]


def halving_sweep(base_cfg, axes: Mapping[str, Sequence], out: Path, *,
                  rungs: Sequence[float], keep: float, edges: np.ndarray,
                  score: Callable[[pd.DataFrame, int], float], compact: bool = False,
                  progress: bool = True) -> pd.DataFrame:  # fmt: skip
    """The sweep of `axes` (phenom.sweep's axes, one seed) in `out`, halved at `rungs` (module
    docstring); returns the member table (every member, in member order) and writes it to
    out/sweep.parquet last, the curves under out/curves and sweep.json first."""
    tr = base_cfg.train
    stops = rung_steps(tr.steps, tr.num_evals, rungs)
    ax, groups = open_sweep(base_cfg, axes, out, schedule(rungs, keep, compact))
    running, first = [], 0
    for gid, group in enumerate(groups):
        running.append(_start(group, ax, gid, first))
        first += running[-1].vm.H
    rows: list[dict] = []
    start = 0
    for stop in (*stops, tr.steps):
        for g in running:
            g.state, stopped = advance_members(g.cfg, g.model, g.vm, g.state, start=start,
                                               stop=stop, evaluate=_evaluate(g, out, edges),
                                               progress=progress)  # fmt: skip
            if stopped:
                warnings.warn(f"sweep group w={g.model.w} d={g.model.d}: every member "
                              "diverged; stopped early", stacklevel=2)  # fmt: skip
        start = stop
        if stop == tr.steps:
            break
        scores = [(g, j, s) for g in running for j, s in enumerate(_prefix_scores(g, stop, score))]
        kept = set(survivors([s for _, _, s in scores], keep).tolist())
        for g in list(running):
            mine = [i for i, (h, _, _) in enumerate(scores) if h is g]
            keep_j = np.asarray([scores[i][1] for i in mine if i in kept], np.int64)
            drop_j = np.asarray([scores[i][1] for i in mine if i not in kept], np.int64)
            if not len(keep_j):  # the whole group stops here
                rows += _rows(g, drop_j, stop)
                running.remove(g)
            elif len(drop_j) and compact:
                rows += _rows(g, drop_j, stop)
                _compact(g, keep_j)
    for g in running:
        rows += _rows(g, np.arange(len(g.ids)), -1)
    table = pd.DataFrame(sorted(rows, key=lambda r: r["member"]))
    atomic_write_parquet(out / "sweep.parquet", table)
    return table
