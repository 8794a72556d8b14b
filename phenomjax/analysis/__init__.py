"""The analysis pipeline (DESIGN 4-5): legacy pickles and run directories -> tidy tables,
rank bins, a content-keyed parquet cache, figures and summaries, and the historical CLI.

    >>> from phenomjax.analysis import load_run, bin_by_rank  # doctest: +SKIP
    >>> binned = bin_by_rank(load_run("runs/small"))  # doctest: +SKIP
    >>> group_lag(lag_table(load_group(["runs/s0", "runs/s1"])))  # doctest: +SKIP
"""

from __future__ import annotations

from .binning import RANK_SELECTIONS, bin_by_rank, default_edges, select_ranks
from .cache import Processed, process_run
from .groups import load_group
from .lag import bin_lag, group_lag, lag_table, loss_gap, matched_loss, rank_crossings
from .legacy import load_pickle
from .load import load_run, read_tables, run_info
from .settings import AnalysisConfig, load_analysis_config
from .summaries import memorized_bits

__all__ = [
    "RANK_SELECTIONS",
    "AnalysisConfig",
    "Processed",
    "bin_by_rank",
    "bin_lag",
    "default_edges",
    "group_lag",
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
    "select_ranks",
]
