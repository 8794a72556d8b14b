"""phenomjax: how transformers memorize Zipf-sampled random bit sequences, and a
phenomenological linear-attention model (sigmoid readout) fitted to the curves."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:  # one home for the version: pyproject.toml, read back from the installed metadata
    __version__ = version("phenomjax")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

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

_LAZY = {"load_run": "phenomjax.analysis", "bin_by_rank": "phenomjax.analysis"}


def __getattr__(name: str):
    # The analysis (pandas, pyarrow) loads on first use, so `import phenomjax` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'phenomjax' has no attribute {name!r}")
