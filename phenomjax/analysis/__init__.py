"""The analysis pipeline (docs/design.md §4-5): legacy pickles and run directories -> tidy
tables, rank bins, a content-keyed parquet cache, figures and summaries, and the historical CLI.

    >>> from phenomjax.analysis import load_run, bin_by_rank  # doctest: +SKIP
    >>> binned = bin_by_rank(load_run("runs/small"))  # doctest: +SKIP
    >>> group_lag(lag_table(load_group(["runs/seeds"])))  # a group folder  # doctest: +SKIP

Names load from their module on first use, so a command imports only what it runs (the
`analyze --help` of the CLI imports no pandas); nothing here imports JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .binning import RANK_SELECTIONS, bin_by_rank, default_edges, select_ranks
    from .cache import Processed, process_run
    from .groups import expand_runs, lag_summary, load_group, seed_band
    from .lag import bin_lag, group_lag, lag_table, loss_gap, matched_loss, rank_crossings
    from .legacy import load_pickle
    from .load import load_run, read_tables, run_info
    from .settings import AnalysisConfig, load_analysis_config
    from .summaries import memorized_bits

_LAZY = {
    "RANK_SELECTIONS": "binning",
    "bin_by_rank": "binning",
    "default_edges": "binning",
    "select_ranks": "binning",
    "Processed": "cache",
    "process_run": "cache",
    "expand_runs": "groups",
    "lag_summary": "groups",
    "load_group": "groups",
    "seed_band": "groups",
    "bin_lag": "lag",
    "group_lag": "lag",
    "lag_table": "lag",
    "loss_gap": "lag",
    "matched_loss": "lag",
    "rank_crossings": "lag",
    "load_pickle": "legacy",
    "load_run": "load",
    "read_tables": "load",
    "run_info": "load",
    "AnalysisConfig": "settings",
    "load_analysis_config": "settings",
    "memorized_bits": "summaries",
}
_SUBMODULES = ("binning", "cache", "figfiles", "figstyle", "groups", "lag", "lag_plots", "legacy",
               "load", "pipeline", "plots", "settings", "summaries", "text")  # fmt: skip

__all__ = [
    "RANK_SELECTIONS",
    "AnalysisConfig",
    "Processed",
    "bin_by_rank",
    "bin_lag",
    "default_edges",
    "expand_runs",
    "group_lag",
    "lag_summary",
    "lag_table",
    "load_analysis_config",
    "load_group",
    "load_pickle",
    "load_run",
    "loss_gap",
    "matched_loss",
    "memorized_bits",
    "process_run",
    "rank_crossings",
    "read_tables",
    "run_info",
    "seed_band",
    "select_ranks",
]


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif name in _SUBMODULES:  # `phenomjax.analysis.plots` after a bare `import phenomjax.analysis`
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
