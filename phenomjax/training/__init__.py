"""Training: what every run does between opening its run directory and finishing it.

- `step`: the state layout (`new_state`), the optimizer update (`apply_optimizer`) and the one
  jitted advance (`make_advance`): one pure step, jitted once, many steps per dispatch;
- `loop`: the host loop (`drive`) over a `Schedule`, with the progress bar outside jit;
- `runner`: `drive_run`, the loop's hooks for a run directory (rows, checkpoints, status).

The transformer (phenomjax.transformer.train), the phenomenological model
(phenomjax.phenom.train) and the sweeps (phenomjax.phenom.sweep) build on it; it stands on
phenomjax.runs (the directory side) and never imports a model.
"""

from .loop import Schedule, chunk_length, drive
from .runner import Evaluation, drive_run
from .step import State, apply_optimizer, make_advance, new_state, seedless

__all__ = [
    "Evaluation",
    "Schedule",
    "State",
    "apply_optimizer",
    "chunk_length",
    "drive",
    "drive_run",
    "make_advance",
    "new_state",
    "seedless",
]
