"""Runs: the run directory (docs/design.md §4), its atomic storage, checkpoints, the row log,
and the one loop that drives every kind of run (transformer training, phenomenological fits,
sweeps)."""

from .checkpoint import arrays_to_pytree, pytree_to_arrays
from .log import RunLog
from .loop import drive
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
    "drive",
    "arrays_to_pytree",
    "pytree_to_arrays",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "jsonable",
    "safe_name",
]
