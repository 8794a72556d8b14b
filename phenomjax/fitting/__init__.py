"""Fitting the phenomenological model to a run, and comparing the two (docs/design.md §6).

    >>> from phenomjax.fitting import fit_run, format_report  # doctest: +SKIP
    >>> report = fit_run("runs/demo", "runs/demo-fit")  # doctest: +SKIP
    >>> report.best.member.w, report.reproduction.reproduced  # doctest: +SKIP

Modules: grid (the fit grid config and its cost), inputs (the runs, read once), scoring
(`score_member` -> `MemberScore`, the `Reference`), verdict (per-bin verdicts and whether the
lag is reproduced), holdout, fit (`fit_run`), report (`FitReport`, `format_report`), overlay
(the compare figures). Names load from their module on first use, so reading a report and
drawing the overlay (`phenomjax compare`) import no JAX; only `fit` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fit import fit_run
    from .grid import FitGridConfig, GridSection, OptimizerEntry, default_grid, grid_cost
    from .inputs import run_paths
    from .overlay import overlay_figure, side_by_side
    from .report import FitReport, format_report
    from .scoring import MemberScore, Reference, ScoreConfig, build_reference, score_member

_LAZY = {
    "fit_run": "fit",
    "FitGridConfig": "grid",
    "GridSection": "grid",
    "OptimizerEntry": "grid",
    "default_grid": "grid",
    "grid_cost": "grid",
    "run_paths": "inputs",
    "overlay_figure": "overlay",
    "side_by_side": "overlay",
    "FitReport": "report",
    "format_report": "report",
    "MemberScore": "scoring",
    "Reference": "scoring",
    "ScoreConfig": "scoring",
    "build_reference": "scoring",
    "score_member": "scoring",
}
__all__ = [
    "FitGridConfig",
    "FitReport",
    "GridSection",
    "MemberScore",
    "OptimizerEntry",
    "Reference",
    "ScoreConfig",
    "build_reference",
    "default_grid",
    "fit_run",
    "format_report",
    "grid_cost",
    "overlay_figure",
    "run_paths",
    "score_member",
    "side_by_side",
]


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this hook
    return value
