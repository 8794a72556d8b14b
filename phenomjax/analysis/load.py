"""`load_run`: a run directory or a legacy pickle -> the tidy table of DESIGN 4.

Columns: step, rank, presentations, loss (nats), accuracy (fraction) [, position] [, epoch];
for phenomjax runs, whose bits are make_bits(seed, K, L), also the rank's Bayes floor, its
excess loss (loss - floor) and the accuracy ceiling. Run metadata (kind, K, L, alpha, config,
n_params, label, ...) rides along in `table.attrs["run"]` and comes from `run_info(path)`.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import DataError, RunDirError
from .legacy import legacy_tables, load_pickle

if TYPE_CHECKING:  # imported where a run directory is read: a legacy log needs none of runs/
    from ..runs.rundir import RunDir


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: not found; expected a run directory or a legacy .pkl log")
    if path.is_dir() and not is_run_dir(path):
        raise RunDirError(f"{path}: a folder without manifest.json is not a run directory")


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


def _manifest_int(m: dict, key: str, where: Path, lo: int, hi: int) -> int:
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        text = " ".join(repr(v).split())[:40]  # one line, whatever the file holds
        raise RunDirError(f"{where}: {key}: expected an integer in [{lo}, {hi}), got {text}")
    return v


def _rundir_meta(run: RunDir) -> dict[str, Any]:
    """The manifest fields the analysis computes with, each checked (a hand-edited or foreign
    manifest gives a one-line error naming the field, not a ValueError from int())."""
    where = run.manifest_path
    m = run.manifest()
    if not isinstance(m, dict):
        raise RunDirError(f"{where}: expected a JSON object, got {type(m).__name__}")
    for k in ("K", "L", "kind"):
        if k not in m:
            raise RunDirError(f"{where}: missing field {k!r}")
    if not isinstance(m["kind"], str):
        raise RunDirError(f"{where}: kind: expected a string, got {type(m['kind']).__name__}")
    # rank and position columns are int32 and int16 (the run directory's tables)
    K = _manifest_int(m, "K", where, 1, 2**31)
    L = _manifest_int(m, "L", where, 2, 2**15 + 1)
    alpha = m.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < math.inf:
        raise RunDirError(f"{where}: alpha: expected a finite number >= 0, got {alpha!r}")
    for key in ("seed", "batch"):  # optional: absent or null means not recorded
        if m.get(key) is not None:
            _manifest_int(m, key, where, 0, 2**63)
    return {
        "kind": m["kind"],
        "path": str(run.path),
        "K": K,
        "L": L,
        "alpha": float(alpha),
        "batch": m.get("batch"),
        "seed": m.get("seed"),
        "status": m.get("status"),
        "config": m.get("config", {}),
        "n_params": m.get("n_params"),
    }


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

        run = RunDir(path)
        meta = _rundir_meta(run)
        evals = run.read_evals()
        pos = run.read_positions() if positions else None
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
