"""phenomjax: how transformers memorize Zipf-sampled random bit sequences, and a
phenomenological linear-attention model (sigmoid readout) fitted to the curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    ConfigError,
    DataError,
    NonFiniteLossError,
    PhenomjaxError,
    RunDirError,
    UnsafePickleError,
)
from .version import __version__

if TYPE_CHECKING:
    from .analysis.binning import bin_by_rank
    from .analysis.load import load_run
    from .bayes import bayes_ceiling, bayes_floor, bayes_tables, per_sequence_floor
    from .data import count_presentations, log_spaced_steps, make_bits, sample_ranks, zipf_weights
    from .runs.rundir import RunDir

__all__ = [
    "__version__",
    "bayes_ceiling",
    "bayes_floor",
    "bayes_tables",
    "per_sequence_floor",
    "count_presentations",
    "log_spaced_steps",
    "make_bits",
    "sample_ranks",
    "zipf_weights",
    "ConfigError",
    "DataError",
    "NonFiniteLossError",
    "PhenomjaxError",
    "RunDirError",
    "UnsafePickleError",
    "RunDir",
    "load_run",
    "bin_by_rank",
]

# Everything but the errors loads on first use: `phenomjax --help` imports neither NumPy nor
# pandas, and no name here imports JAX (the floors and the bits are NumPy; the on-device
# sampling imports JAX when called).
_LAZY = {
    "bayes_ceiling": "phenomjax.bayes",
    "bayes_floor": "phenomjax.bayes",
    "bayes_tables": "phenomjax.bayes",
    "per_sequence_floor": "phenomjax.bayes",
    "count_presentations": "phenomjax.data",
    "log_spaced_steps": "phenomjax.data",
    "make_bits": "phenomjax.data",
    "sample_ranks": "phenomjax.data",
    "zipf_weights": "phenomjax.data",
    "RunDir": "phenomjax.runs.rundir",
    "load_run": "phenomjax.analysis.load",
    "bin_by_rank": "phenomjax.analysis.binning",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'phenomjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
