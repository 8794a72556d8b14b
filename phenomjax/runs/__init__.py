"""Runs: the run directory (docs/design.md §4), its atomic storage, checkpoints, the row log,
the folder lock and opening or resuming a run (`lifecycle.open_run`). What a run does between
opening and finishing is phenomjax.training, one floor up."""

from .checkpoint import arrays_to_pytree, pytree_to_arrays
from .log import RunLog
from .rundir import RunDir
from .storage import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    jsonable,
    safe_name,
)

__all__ = [
    "RunDir",
    "RunLog",
    "arrays_to_pytree",
    "pytree_to_arrays",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "jsonable",
    "safe_name",
]
