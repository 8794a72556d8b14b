"""The capacity experiment (docs/design.md §9): transformer sizes x K trained to a plateau,
memorized bits per parameter against Morris et al.'s 3.6, presentations to memorize under
Zipf sampling, and the phenomenological model on the same axes (`phenomjax capacity`).

    cfg = load_config(CapacityConfig, "experiments/capacity_cpu.toml")
    result, paths = run_capacity(cfg, "runs/capacity", quick=True)
    result.fit["transformer"]["bits_per_param"]["slope"]
"""

from .config import CapacityConfig, PhenomSize, PlateauSection, Size
from .fits import power_law, slope_through_origin
from .ladder import Job, plan, run_job, run_ladder
from .outputs import CapacityResult, run_capacity, summarize, write_outputs
from .plateau import converged_step, loss_curve, plateaued, stop_rule
from .summary import capacity_by_size, fit_capacity, fit_presentations, presentations_to_memorize

__all__ = [
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
    "plan",
    "plateaued",
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
