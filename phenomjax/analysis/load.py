"""`load_run`: a run directory or a legacy pickle -> the tidy table of DESIGN 4.

Columns: step, rank, presentations, loss (nats), accuracy (fraction) [, position] [, epoch];
for phenomjax runs, whose bits are make_bits(seed, K, L), also the rank's Bayes floor, its
excess loss (loss - floor) and the accuracy ceiling. Run metadata (kind, K, L, alpha, config,
n_params, label, ...) rides along in `table.attrs["run"]` and comes from `run_info(path)`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import DataError, RunDirError
from ..runs.validate import check_dir, check_kind
from .legacy import legacy_tables, load_pickle

if TYPE_CHECKING:  # imported where a run directory is read: a legacy log needs none of runs/
    from ..runs.rundir import RunDir


def is_run_dir(path: Path) -> bool:
    """A folder holding manifest.json (of whatever type: the reader refuses a FIFO there)."""
    try:
        return path.is_dir() and os.path.lexists(path / "manifest.json")
    except OSError:  # an unreadable folder: _check_path names it
        return False


def _check_path(path: Path) -> None:
    """A run is a readable folder with manifest.json or a regular file (a legacy log): devices,
    FIFOs and /proc files are refused here, before the cache hashes them or a reader blocks."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: not found; expected a run directory or a legacy .pkl log")
    if path.is_dir():
        check_dir(path)
        if not is_run_dir(path):
            raise RunDirError(f"{path}: a folder without manifest.json is not a run directory")
    else:
        check_kind(path, DataError)


def check_path(path: str | os.PathLike) -> None:
    """Raise the one-line error `load_run` would if `path` cannot be a run (before reading)."""
    _check_path(Path(path))


@functools.lru_cache(maxsize=8)
def bayes_reference(seed: int, K: int, L: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-position Bayes floor and ceiling, each (K, L-1), once per (seed, K, L, alpha)."""
    from ..bayes import bayes_tables
    from ..data import make_bits, zipf_weights

    t = bayes_tables(make_bits(seed, K, L), zipf_weights(K, alpha))
    return t.loss.astype(np.float32), t.accuracy.astype(np.float32)


def _find(config: Any, names: tuple[str, ...]) -> Any:
    """First value under any of `names` anywhere in a nested config dict."""
    if isinstance(config, dict):
        for n in names:
            if n in config and not isinstance(config[n], dict):
                return config[n]
        for v in config.values():
            found = _find(v, names)
            if found is not None:
                return found
    return None


def run_label(meta: dict[str, Any]) -> str:
    """A legend entry from the run's config: heads, layers, positions, learning rate."""
    cfg = meta.get("config") or {}
    heads = _find(cfg, ("n_head", "num_heads", "heads", "n_heads"))
    layers = _find(cfg, ("n_layer", "num_layers", "layers", "n_layers"))
    pos = _find(cfg, ("positions", "position_embedding"))
    if pos is None and meta.get("kind") == "legacy":
        rope = cfg.get("rope_embedding") or "rope" in str(cfg.get("wandb_group_name", ""))
        pos = "RoPE" if rope else "learned"
    lr = _find(cfg, ("lr", "learning_rate"))
    parts = []
    if heads is not None:
        parts.append(f"{heads} heads")
    if layers is not None:
        parts.append(f"{layers} layers")
    if pos is not None:
        parts.append("RoPE" if str(pos).lower() == "rope" else str(pos))
    if lr is not None:
        try:
            parts.append(f"lr={float(lr):g}")
        except (TypeError, ValueError):  # a label, not a number we compute with
            parts.append(f"lr={lr}")
    if meta.get("kind") == "phenom":
        for key in ("w", "window", "d"):
            v = _find(cfg, (key,))
            if v is not None:
                parts.append(f"{key}={v}")
    return ", ".join(parts) if parts else str(meta.get("name", "run"))


def _rundir_meta(run: RunDir) -> dict[str, Any]:
    """The manifest fields the analysis computes with, each checked (validate.check_manifest)."""
    from ..runs.validate import check_manifest

    return {**check_manifest(run.manifest(), run.manifest_path), "path": str(run.path)}


def check_floor_fits(meta: dict[str, Any], path: Path) -> None:
    """Refuse, before make_bits allocates, a run whose Bayes floor (K x L bits and tables) does
    not fit the memory this process may use (docs/design.md §8)."""
    from ..host import floor_bytes
    from ..runs.validate import memory_limit

    need, have = floor_bytes(meta["K"], meta["L"]), memory_limit()
    if meta.get("bits_known") and need > have:
        raise RunDirError(
            f"{path / 'manifest.json'}: K, L: the Bayes floor of K = {meta['K']}, L = "
            f"{meta['L']} needs about {need / 2**30:.3g} GiB, more than the "
            f"{have / 2**30:.3g} GiB this process may use"
        )


def run_info(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of a run without reading its tables (a legacy log is read whole)."""
    path = Path(path)
    _check_path(path)
    if is_run_dir(path):
        from ..runs.rundir import RunDir

        meta = _rundir_meta(RunDir(path))
    else:
        meta = legacy_tables(load_pickle(path), path)[2]
    return _finish_meta(meta, path)


def _finish_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    meta["name"] = path.stem if path.is_file() else path.name
    meta["label"] = run_label(meta)
    meta["bits_known"] = meta["kind"] in ("transformer", "phenom") and meta.get("seed") is not None
    return meta


def add_floor(table: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """Add floor, excess_loss and ceiling where the bits are known (phenomjax runs)."""
    if not meta.get("bits_known"):
        return table
    fl, ce = bayes_reference(int(meta["seed"]), meta["K"], meta["L"], float(meta["alpha"]))
    r = table["rank"].to_numpy()
    if "position" in table.columns:
        j = table["position"].to_numpy().astype(np.int64) - 1
        floor, ceil = fl[r, j], ce[r, j]
    else:
        floor, ceil = fl.mean(axis=1)[r], ce.mean(axis=1)[r]
    table = table.assign(floor=floor, ceiling=ceil)
    table["excess_loss"] = table["loss"] - table["floor"]
    return table


def read_tables(
    path: str | os.PathLike,
    *,
    positions: bool = True,
    steps_per_epoch: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    """(per-sequence table, per-position table or None, metadata), floors added, one read."""
    path = Path(path)
    _check_path(path)
    if is_run_dir(path):
        from ..runs.rundir import RunDir
        from ..runs.validate import check_columns

        run = RunDir(path)
        meta = _finish_meta(_rundir_meta(run), path)
        check_floor_fits(meta, path)
        evals = run.read_evals()
        check_columns(evals, str(run.evals_path), meta["K"], meta["L"])
        pos = run.read_positions() if positions else None
        if pos is not None:
            check_columns(pos, str(run.positions_path), meta["K"], meta["L"])
    else:
        evals, pos, meta = legacy_tables(load_pickle(path), path, steps_override=steps_per_epoch)
        meta = _finish_meta(meta, path)
    if len(evals) == 0:
        raise DataError(f"{path}: holds no evaluation yet")
    try:
        evals = add_floor(evals, meta)
        if pos is not None and positions:
            pos = add_floor(pos, meta)
    except MemoryError:
        raise DataError(
            f"{path}: out of memory computing the Bayes floor of K = {meta['K']}, "
            f"L = {meta['L']} (manifest.json: K, L)"
        ) from None
    evals.attrs["run"] = meta
    if pos is not None and positions:
        pos.attrs["run"] = meta
    return evals, pos if positions else None, meta


def load_run(
    path: str | os.PathLike,
    *,
    per_position: bool = False,
    steps_per_epoch: int = 0,
) -> pd.DataFrame:
    """The tidy table of a run directory or a legacy pickle (see the module docstring).

    per_position: the (eval, sequence, position) table; a DataError if the run has none.
    steps_per_epoch: legacy logs only; 0 derives it (see phenomjax.analysis.legacy).

    >>> table = load_run("runs/small")  # doctest: +SKIP
    >>> table.attrs["run"]["label"]  # doctest: +SKIP
    '8 heads, 12 layers, learned, lr=0.001'
    """
    evals, pos, meta = read_tables(path, positions=per_position, steps_per_epoch=steps_per_epoch)
    if not per_position:
        return evals
    if pos is None:
        raise DataError(
            f"{path}: no per-position data (a run without positions.parquet, "
            "or the per-sequence legacy layout of K >= 10000)"
        )
    return pos
