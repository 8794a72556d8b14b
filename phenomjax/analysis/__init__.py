"""The analysis pipeline (DESIGN 4-5): legacy pickles and run directories -> tidy tables,
rank bins, a content-keyed parquet cache, figures and summaries, and the historical CLI.

    >>> from phenomjax.analysis import load_run, bin_by_rank  # doctest: +SKIP
    >>> binned = bin_by_rank(load_run("runs/small"))  # doctest: +SKIP
"""

from __future__ import annotations

from .binning import RANK_SELECTIONS, bin_by_rank, default_edges, select_ranks
from .cache import Processed, process_run
from .legacy import load_pickle
from .load import load_run, read_tables, run_info
from .settings import AnalysisConfig, load_analysis_config

__all__ = [
    "RANK_SELECTIONS",
    "AnalysisConfig",
    "Processed",
    "bin_by_rank",
    "default_edges",
    "load_analysis_config",
    "load_pickle",
    "load_run",
    "process_run",
    "read_tables",
    "run_info",
    "select_ranks",
]
