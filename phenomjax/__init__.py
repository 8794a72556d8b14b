"""phenomjax: how transformers memorize Zipf-sampled random bit sequences, and a
phenomenological linear-attention model (sigmoid readout) fitted to the curves."""

from __future__ import annotations

__version__ = "0.1.0"

from .bayes import bayes_ceiling, bayes_floor, bayes_tables, per_sequence_floor
from .data import count_presentations, log_spaced_steps, make_bits, sample_ranks, zipf_weights
from .errors import (
    ConfigError,
    DataError,
    NonFiniteLossError,
    PhenomjaxError,
    RunDirError,
    UnsafePickleError,
)
from .rundir import RunDir

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
]
