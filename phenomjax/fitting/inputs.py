"""What a fit reads (docs/design.md §6, "Fitting to a run"): a run, several runs of a seed
group, or a group folder, read once into a `FitInput` that the sweeps, the scoring, the refit,
the held-out prediction and the report share.

Bits: a phenomjax run's own, make_bits(seed, K, L); a legacy log does not store its bits, so
its floors (and the members' data) are those of fresh bits with the same K, L and alpha.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.binning import default_edges
from ..analysis.groups import load_group
from ..bayes import per_sequence_floor
from ..data import make_bits, zipf_weights
from ..errors import ConfigError
from .holdout import split_evals
from .scoring import Reference, ScoreConfig, build_reference

RunPaths = str | os.PathLike | Sequence[str | os.PathLike]


def run_paths(runs: RunPaths) -> list[Path]:
    """The runs of one experiment: a run, several runs of a seed group, or a group folder
    (a folder whose `seed-<s>` subfolders are the runs, as `phenomjax train --seeds` writes)."""
    items = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    out: list[Path] = []
    for r in map(Path, items):
        subs = (
            sorted(r.glob("seed-*")) if r.is_dir() and not (r / "manifest.json").is_file() else []
        )
        out += [x for x in subs if (x / "manifest.json").is_file()] or [r]
    if not out:
        raise ConfigError("fit: expected at least one run")
    return out


def floor_of(meta: dict) -> np.ndarray:
    """Per-rank Bayes floor of a run's bits (legacy logs: fresh bits with the same K, L)."""
    bits = make_bits(int(meta.get("seed") or 0), int(meta["K"]), int(meta["L"]))
    return per_sequence_floor(bits, zipf_weights(int(meta["K"]), float(meta["alpha"])))[0]


@dataclasses.dataclass(frozen=True)
class Split:
    """A holdout: the held-out evaluations and their rank edges (fitting.holdout)."""

    how: str
    evals: pd.DataFrame
    edges: np.ndarray
    description: str


@dataclasses.dataclass(frozen=True)
class FitInput:
    """A run or seed group as read for fitting, read once."""

    inputs: tuple[str, ...]  # as the caller gave them (a group folder stays one input)
    paths: tuple[Path, ...]  # the runs
    meta: dict  # the first run's, with final_step the group's last evaluation step
    names: tuple[str, ...]  # the group's run names (one name for a single run)
    floors: dict  # run name -> per-rank Bayes floor of its bits
    evals: pd.DataFrame  # every evaluation (a group's keeps its "run" column)
    fit_evals: pd.DataFrame  # the evaluations members are ranked on (all, without a holdout)
    edges: np.ndarray  # the rank edges members are ranked on
    all_edges: np.ndarray  # every rank edge (the same as edges without a holdout)
    ref: Reference  # the reference built on fit_evals
    split: Split | None

    @property
    def seed(self) -> int:
        """The first run's seed: the grid's sweeps use it, the refit the next ones (legacy: 0)."""
        return int(self.meta.get("seed") or 0)

    @property
    def floor(self) -> np.ndarray:
        """The first run's per-rank floor, the one the members' lag crossings are taken over."""
        return self.floors[self.names[0]]

    @property
    def ref_floors(self) -> dict:
        """The floors as build_reference takes them (key None for a single run)."""
        return self.floors if len(self.names) > 1 else {None: self.floor}

    def reference(self, evals: pd.DataFrame, edges: np.ndarray, score: ScoreConfig) -> Reference:
        """The reference of some of these evaluations (a holdout part, one seed)."""
        floors = self.ref_floors if "run" in evals.columns else {None: self.floor}
        return build_reference(evals, floors, edges, score)


def read_input(runs: RunPaths, score: ScoreConfig, holdout: str | None = None) -> FitInput:
    """Load the runs, warn about unfinished ones, and build the reference the members are
    ranked against: on the training part only when `holdout` splits the curves."""
    given = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    paths = run_paths(given)
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
    all_edges = default_edges(int(meta["K"]))
    names = tuple(group["run"].unique())
    floors = {n: floor_of(m) for n, m in zip(names, metas, strict=True)}
    ev = group if len(names) > 1 else group.drop(columns="run")
    fl = floors if len(names) > 1 else {None: floors[names[0]]}
    fit_ev, edges, split = ev, all_edges, None
    if holdout:
        fit_ev, ev_out, edges, e_out, text = split_evals(ev, holdout, all_edges)
        split = Split(holdout, ev_out, e_out, text)
    ref = build_reference(fit_ev, fl, edges, score)
    return FitInput(tuple(str(g) for g in given), tuple(paths), meta, names, floors, ev, fit_ev,
                    edges, all_edges, ref, split)  # fmt: skip
