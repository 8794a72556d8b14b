"""The capacity experiment (docs/design.md §9): per transformer size an adaptive bracket of K
around its peak of memorized bits, each K trained to saturation (or extrapolated), memorized
bits per parameter (two parameter counts) against Morris et al.'s 3.6, presentations to
memorize under Zipf sampling, and the phenomenological model on the same K (`phenomjax
capacity`).

    cfg = load_config(CapacityConfig, "experiments/capacity_cpu.toml")
    result, paths = run_capacity(cfg, "runs/capacity", quick=True)
    result.fit["transformer"]["bits_per_param"]["slope"]
"""

from .bracket import bracketed, first_K, next_K
from .config import (
    BracketSection,
    CapacityConfig,
    PhenomSize,
    PlateauSection,
    SaturationSection,
    Size,
    apply_quick,
)
from .fits import power_law, slope_through_origin, t_quantile
from .ladder import Job, param_counts, run_job
from .outputs import CapacityResult, run_capacity, summarize, write_outputs
from .plateau import converged_step, loss_curve, plateaued, stop_rule
from .saturation import budgets, converged, extrapolate, gain
from .search import plan, run_ladder, saturate, search_size
from .summary import capacity_by_size, fit_capacity, fit_presentations, presentations_to_memorize

__all__ = [
    "BracketSection",
    "SaturationSection",
    "apply_quick",
    "bracketed",
    "budgets",
    "converged",
    "extrapolate",
    "first_K",
    "gain",
    "next_K",
    "param_counts",
    "saturate",
    "search_size",
    "t_quantile",
    "CapacityConfig",
    "CapacityResult",
    "Job",
    "PhenomSize",
    "PlateauSection",
    "Size",
    "capacity_by_size",
    "converged_step",
    "fit_capacity",
    "fit_presentations",
    "loss_curve",
    "plateaued",
    "plan",
    "power_law",
    "presentations_to_memorize",
    "run_capacity",
    "run_job",
    "run_ladder",
    "slope_through_origin",
    "stop_rule",
    "summarize",
    "write_outputs",
]
