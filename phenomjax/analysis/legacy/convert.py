"""A checked legacy record -> the tidy per-sequence and per-position tables and the run
metadata (DESIGN 4), the evaluations concatenated column by column in their final dtypes.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError
from .fields import (
    _BIG,
    _EPOCHS,
    Sizes,
    _agree,
    _arg_int,
    _evaluation,
    _fix_loss_sign,
    _scalar_int,
    _what,
    legacy_args,
    steps_per_epoch,
)


def legacy_tables(
    record: Any, path: str | Path, *, steps_override: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    """(per-sequence table, per-position table or None, run metadata) of a legacy record.

    Every field is checked before use: a malformed one is a DataError naming the file and the
    field (e.g. "x.pkl: logs[3].test_metrics.accuracy: ..."), never an error from numpy. Array
    shapes are checked against args.K and args.len_context before any value is read."""
    path = Path(path)
    try:
        return _legacy_tables(record, path, steps_override)
    except MemoryError:  # the fields are checked one by one above; this is the tables
        raise DataError(f"{path}: out of memory while building the tables") from None


def _evaluated(logs: Any, path: Path) -> list[int]:
    """The indices of the logs that hold an evaluation (test_metrics), each checked a dict."""
    if not isinstance(logs, (list, tuple)):
        raise DataError(f"{path}: logs: expected a list, got {type(logs).__name__}")
    evaluated = []
    for i, lg in enumerate(logs):
        if not isinstance(lg, dict):
            raise DataError(f"{path}: logs[{i}]: expected a dict, got {type(lg).__name__}")
        tm = lg.get("test_metrics")
        if tm is None or (isinstance(tm, (dict, list, tuple)) and len(tm) == 0):
            continue  # an epoch without evaluation
        if not isinstance(tm, dict):
            raise DataError(f"{path}: logs[{i}].test_metrics: expected a dict, got {_what(tm)}")
        evaluated.append(i)
    if not evaluated:
        raise DataError(f"{path}: no log holds test_metrics; nothing to analyse")
    return evaluated


def _checked(logs, evaluated, args, path: Path) -> tuple[list, int, int | None]:
    """Every evaluation checked before anything is derived from it: (where, epoch, arrays) per
    evaluated log, K and L, each against the sizes the args promise (shapes before values)."""
    sizes: Sizes = {}
    K_arg = _arg_int(args, "K", path)
    if K_arg is not None:
        sizes["K"] = (K_arg, f"args.K = {K_arg}")
    L_args = {key: _arg_int(args, key, path, lo=2) for key in ("len_context", "L")}
    for key, L_arg in L_args.items():
        if L_arg is not None:
            _agree(sizes, "P", L_arg - 1, f"{path}: args.{key}", "positions (L - 1)")
    checked = []
    K = L = None
    first_ndim = None
    for i in evaluated:
        lg = logs[i]
        where = f"{path}: logs[{i}]"
        ev = _evaluation(lg, where, K, sizes)
        rank = ev["rank"]
        K = ev["counts"].size
        if first_ndim is None:
            first_ndim = (rank.ndim, i)
        elif rank.ndim != first_ndim[0]:
            kinds = {1: "per-sequence (K,)", 2: "per-position (K, L-1)"}
            raise DataError(
                f"{where}.test_metrics: {kinds[rank.ndim]} arrays, but logs[{first_ndim[1]}] "
                f"has {kinds[first_ndim[0]]} ones"
            )
        if rank.ndim == 2:
            if L is not None and rank.shape[1] + 1 != L:
                raise DataError(
                    f"{where}.test_metrics.sequence_rank: {rank.shape[1]} positions, but an "
                    f"earlier log has {L - 1}"
                )
            L = rank.shape[1] + 1
        checked.append((where, _scalar_int(lg["epoch"], f"{where}.epoch", 0, _EPOCHS), ev))
    if K_arg is not None and K_arg != K:
        raise DataError(f"{path}: args.K: {K_arg}, but num_apppearances holds {K} sequences")
    for key, L_arg in L_args.items():
        if L_arg is not None and L is not None and L_arg != L:
            raise DataError(f"{path}: args.{key}: {L_arg}, but test_metrics has {L - 1} positions")
        L = L if L is not None or L_arg is None else L_arg
    return checked, K, L


def _parts(checked: list, spe: int) -> tuple[list[dict], list[dict]]:
    """The per-sequence and per-position columns of every evaluation (a per-position log is
    averaged over positions for its per-sequence rows)."""
    seq_parts: list[dict[str, np.ndarray]] = []
    pos_parts: list[dict[str, np.ndarray]] = []
    for where, epoch, ev in checked:
        rank, loss, acc, counts = ev["rank"], ev["loss"], ev["accuracy"], ev["counts"]
        if epoch * spe >= _BIG:
            raise DataError(f"{where}.epoch: {epoch} x {spe} steps per epoch overflows a step")
        common = {"epoch": epoch, "step": epoch * spe}
        r = rank[:, 0] if rank.ndim == 2 else rank
        if rank.ndim == 2:
            pos_parts.append(
                {
                    **common,
                    "rank": rank.reshape(-1),
                    "position": ev["position"].reshape(-1),
                    "presentations": counts[rank.reshape(-1)],
                    "loss": loss.ravel(),
                    "accuracy": acc.ravel(),
                }
            )
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
                loss, acc = np.nanmean(loss, axis=1), np.nanmean(acc, axis=1)
        seq_parts.append(
            {**common, "rank": r, "presentations": counts[r], "loss": loss, "accuracy": acc}
        )
    return seq_parts, pos_parts


def _legacy_meta(args: dict, path: Path, K: int, L: int | None, spe: int, dist: str) -> dict:
    seed = args.get("seed")
    n_params = args.get("n_params")
    finite = (int, float, np.integer, np.floating)
    return {
        "kind": "legacy",
        "path": str(path),
        "K": K,
        "L": L,
        "alpha": 1.0 if dist == "zipf" else 0.0,
        "batch": _arg_int(args, "batch_size", path),
        # seed and n_params only label a legacy run: a malformed one is dropped, not fatal
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
        "steps_per_epoch": spe,
        "config": {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool))},
        "n_params": n_params
        if isinstance(n_params, finite) and math.isfinite(n_params) and n_params > 0
        else None,
    }


def _legacy_tables(
    record: Any, path: Path, steps_override: int
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    args = legacy_args(record, path)
    logs = record["logs"]
    checked, K, L = _checked(logs, _evaluated(logs, path), args, path)
    spe = steps_per_epoch(logs, args, path, steps_override)
    dist = args.get("sequence_sampling_distribution", "zipf")
    if not isinstance(dist, str):
        raise DataError(
            f"{path}: args.sequence_sampling_distribution: expected a string, got {_what(dist)}"
        )
    seq_parts, pos_parts = _parts(checked, spe)
    ev_cols = _columns(seq_parts)
    pos_cols = _columns(pos_parts) if pos_parts else None
    tables = [pos_cols, ev_cols] if pos_cols is not None else [ev_cols]
    _fix_loss_sign(tables, path)
    for t in tables:  # rounding just outside [0, 1] (checked within 1e-6 above)
        np.clip(t["accuracy"], 0.0, 1.0, out=t["accuracy"])
    # copy=False: pandas would otherwise stack same-dtype columns into one block (a copy)
    evals = pd.DataFrame(ev_cols, copy=False)
    positions = pd.DataFrame(pos_cols, copy=False) if pos_cols is not None else None
    return evals, positions, _legacy_meta(args, path, K, L, spe, dist)


_DTYPES = {"step": np.int64, "rank": np.int32, "position": np.int16, "presentations": np.int64,
           "loss": np.float32, "accuracy": np.float32, "epoch": np.int32}  # fmt: skip


def _columns(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Concatenate the evaluations column by column into their final dtypes, one copy each."""
    n = [int(np.size(p["rank"])) for p in parts]
    cols = {}
    for c, dt in _DTYPES.items():
        if c not in parts[0]:
            continue
        out = np.empty(sum(n), dt)
        o = 0
        for p, k in zip(parts, n, strict=True):
            out[o : o + k] = p[c]
            o += k
        cols[c] = out
    return cols
