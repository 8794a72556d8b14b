"""Field checks of a legacy record (see the package docstring, "Checks"): args, counts,
metrics, shapes and steps per epoch, each value checked before numpy or pandas sees it, and
one evaluation's arrays (`_evaluation`) read once they all passed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError


def legacy_args(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(
            f"{path}: expected a dict with 'args' and 'logs', got {type(record).__name__}"
        )
    if "logs" not in record:
        raise DataError(f"{path}: logs: missing; expected a dict with 'args' and 'logs'")
    args = record.get("args", {})
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise DataError(f"{path}: args: expected a dict or Namespace, got {type(args).__name__}")
    return dict(args)


# -- field checks: every value from the pickle passes one of these before numpy sees it ---------

_BIG = 2**62  # counts and steps stay far from int64 overflow
_EPOCHS = 2**31  # the epoch column is int32


def _bound(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n >= 2**20 and n & (n - 1) == 0 else str(n)


def _what(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of dtype {x.dtype} and shape {x.shape}"
    text = " ".join(repr(x).split())  # one line, whatever the value
    return f"{type(x).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _numeric(x: Any, where: str) -> np.ndarray:
    """x as a real numeric array (bool, int, float), without copying one that already is."""
    a = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ragged / deprecated conversions: refused below
        try:
            a = np.asarray(x)
            if a.dtype.kind == "O":  # object arrays: numbers only (None, arrays, str refused)
                if not all(isinstance(v, (int, float, np.number)) for v in a.flat):
                    a = None
                else:
                    a = a.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            a = None
    if a is None or a.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected a numeric array, got {_what(x)}")
    return a


def _integers(x: Any, where: str, lo: int, hi: int, *, round_: bool = False) -> np.ndarray:
    """An int64 array of integer values in [lo, hi); round_: round floats first (counts)."""
    a = _numeric(x, where)
    if a.dtype.kind in "fb":
        a = a.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a) if round_ else ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            raise DataError(f"{where}: expected integers, got {a[bad].flat[0].item()!r}")
        if round_:
            a = np.rint(a)
    if a.size and (a.min() < lo or a.max() >= hi):
        v = a.min() if a.min() < lo else a.max()
        raise DataError(f"{where}: expected values in [{lo}, {_bound(hi)}), got {v}")
    return a.astype(np.int64, copy=False)


def _scalar_int(v: Any, where: str, lo: int, hi: int = _BIG) -> int:
    """One integer in [lo, hi): a Python or numpy int, an integral float or a 0-d array."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        v = v.item()
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    if ok and isinstance(v, (float, np.floating)):
        ok = math.isfinite(v) and float(v).is_integer()
    if not ok or not lo <= int(v) < hi:
        raise DataError(f"{where}: expected an integer in [{lo}, {_bound(hi)}), got {_what(v)}")
    return int(v)


def _arg_int(args: dict[str, Any], key: str, path: Path, lo: int = 1) -> int | None:
    """An optional positive-integer arg; absent, None and 0 mean not recorded (historical)."""
    v = args.get(key)
    if v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v == 0):
        return None
    return _scalar_int(v, f"{path}: args.{key}", lo)


def _metric(x: Any, where: str, hi: float | None) -> np.ndarray:
    """float32 metric: NaN allowed (not evaluated), infinities refused, <= hi when given."""
    with np.errstate(over="ignore"):
        a = _numeric(x, where).astype(np.float32, copy=False)
    if np.isinf(a).any():
        raise DataError(f"{where}: infinite values; expected finite numbers or NaN")
    if hi is not None:
        with np.errstate(invalid="ignore"):
            out = (a < -1e-6) | (a > hi + 1e-6)
        if out.any():
            raise DataError(f"{where}: expected fractions in [0, 1], got {a[out].flat[0]}")
    return a


def _counts(lg: dict, where: str) -> np.ndarray:
    c = _integers(lg["num_apppearances"], f"{where}.num_apppearances", 0, _BIG, round_=True)
    if c.ndim != 1 or c.size == 0:
        raise DataError(f"{where}.num_apppearances: expected a (K,) array, got shape {c.shape}")
    return c


def steps_per_epoch(logs: list[dict], args: dict[str, Any], path: Path, override: int = 0) -> int:
    """The rule of the module docstring."""
    if override > 0:
        return int(override)
    counted = [
        (i, lg)
        for i, lg in enumerate(logs)
        if isinstance(lg, dict) and "epoch" in lg and "num_apppearances" in lg
    ]
    batch = _arg_int(args, "batch_size", path) or _arg_int(args, "batch", path)
    if len(counted) >= 2 and batch:
        # the first and last logs suffice: presentations grow by the same amount every epoch
        (e0, n0), (e1, n1) = (
            (
                _scalar_int(lg["epoch"], f"{path}: logs[{i}].epoch", 0, _EPOCHS),
                float(np.sum(_counts(lg, f"{path}: logs[{i}]"), dtype=np.float64)),
            )
            for i, lg in (counted[0], counted[-1])
        )
        if e1 > e0 and n1 > n0:
            return max(1, int(math.ceil((n1 - n0) / (e1 - e0) / float(batch) - 1e-9)))
    for key in ("num_iter_per_epoch", "num_iters_per_epoch", "steps_per_epoch"):
        n = _arg_int(args, key, path)
        if n:
            return n
    warnings.warn(
        f"{path}: cannot tell steps per epoch (no batch_size or num_iter_per_epoch in args); "
        "using step = epoch. Set [legacy] steps_per_epoch in the analysis config.",
        stacklevel=2,
    )
    return 1


def _fix_loss_sign(tables: list[dict[str, np.ndarray]], path: Path) -> None:
    """In place: negate log-probabilities (all values <= 0), clip rounding below 0, refuse both
    signs. Decided once per log, on its finest table."""
    v = tables[0]["loss"]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: nothing to decide
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    negate = hi <= 0 and lo < 0
    if not negate and lo < -1e-6:
        raise DataError(
            f"{path}: test_metrics.logsoftmaxloss: values of both signs ({lo:.3g} .. {hi:.3g}); "
            "expected a loss in nats (>= 0) or log-probabilities (<= 0)"
        )
    for t in tables:
        loss = t["loss"]
        if negate:
            np.negative(loss, out=loss)
        np.maximum(loss, 0.0, out=loss)


@contextlib.contextmanager
def _memory(where: str) -> Iterator[None]:
    """A MemoryError inside becomes a one-line DataError naming the field."""
    try:
        yield
    except MemoryError:
        raise DataError(f"{where}: out of memory while reading it") from None


_METRICS = ("sequence_rank", "logsoftmaxloss", "accuracy")
Sizes = dict[str, tuple[int, str]]  # "K" / "P" (positions, L-1) -> (value, where it came from)


def _agree(sizes: Sizes, key: str, n: int, field: str, unit: str) -> None:
    known = sizes.setdefault(key, (n, f"{field} has {n}"))
    if n != known[0]:
        raise DataError(f"{field}: {n} {unit}, but {known[1]}")


def _check_shapes(lg: dict, tm: dict, where: str, sizes: Sizes) -> None:
    """Array shapes against the K and L-1 known so far (args, earlier logs), before any value
    is read: a (1000, 400000) accuracy in a K = 3 log is refused without being scanned."""
    c = lg["num_apppearances"]
    if isinstance(c, np.ndarray):
        if c.ndim != 1:
            raise DataError(f"{where}.num_apppearances: expected a (K,) array, got shape {c.shape}")
        _agree(sizes, "K", c.shape[0], f"{where}.num_apppearances", "sequences")
    w = f"{where}.test_metrics"
    shapes = {k: tm[k].shape for k in _METRICS if isinstance(tm[k], np.ndarray)}
    for k, s in shapes.items():
        if len(s) not in (1, 2) or 0 in s:
            raise DataError(f"{w}.{k}: expected a non-empty (K,) or (K, L-1) array, got {s}")
        _agree(sizes, "K", s[0], f"{w}.{k}", "sequences")
        if len(s) == 2:
            _agree(sizes, "P", s[1], f"{w}.{k}", "positions")
    (k0, s0), *rest = shapes.items() if shapes else [(None, None)]
    for k, s in rest:
        if s != s0:
            raise DataError(f"{w}.{k}: shape {s}, but {k0} has {s0}")
    pos = tm.get("length")
    if isinstance(pos, np.ndarray) and s0 is not None and len(s0) == 2:
        try:
            ok = np.broadcast_shapes(pos.shape, s0) == s0
        except ValueError:
            ok = False
        if not ok:
            raise DataError(f"{w}.length: shape {pos.shape}, but {k0} has {s0}")


def _evaluation(lg: dict, where: str, K: int | None, sizes: Sizes) -> dict[str, Any]:
    """One log's test_metrics checked field by field: shapes first, then rank, loss, accuracy
    and positions."""
    tm = lg["test_metrics"]
    missing = [k for k in _METRICS if k not in tm]
    if missing:
        raise DataError(f"{where}.test_metrics: missing {missing}")
    for k in ("num_apppearances", "epoch"):
        if k not in lg:
            raise DataError(f"{where}: missing {k!r} beside test_metrics")
    _check_shapes(lg, tm, where, sizes)
    with _memory(f"{where}.num_apppearances"):
        counts = _counts(lg, where)
    K = counts.size if K is None else K
    if counts.size != K:
        raise DataError(
            f"{where}.num_apppearances: {counts.size} sequences, but an earlier log has K = {K}"
        )
    w = f"{where}.test_metrics"
    with _memory(f"{w}.sequence_rank"):
        rank = _integers(tm["sequence_rank"], f"{w}.sequence_rank", 0, K)
    if rank.ndim not in (1, 2) or 0 in rank.shape:
        raise DataError(
            f"{w}.sequence_rank: expected a non-empty (K,) or (K, L-1) array, got {rank.shape}"
        )
    with _memory(f"{w}.logsoftmaxloss"):
        loss = _metric(tm["logsoftmaxloss"], f"{w}.logsoftmaxloss", None)
    with _memory(f"{w}.accuracy"):
        acc = _metric(tm["accuracy"], f"{w}.accuracy", 1.0)
    for name, a in (("logsoftmaxloss", loss), ("accuracy", acc)):
        if a.shape != rank.shape:
            raise DataError(f"{w}.{name}: shape {a.shape}, but sequence_rank has {rank.shape}")
    ev = {"rank": rank, "loss": loss, "accuracy": acc, "counts": counts}
    if rank.ndim == 2:
        if rank.shape[1] > 1 and not (rank == rank[:, :1]).all():
            raise DataError(f"{w}.sequence_rank: each row should repeat one rank")
        L = rank.shape[1] + 1
        pos = tm.get("length")
        if pos is None:
            pos = np.arange(1, L)
        with _memory(f"{w}.length"):
            pos = _integers(pos, f"{w}.length", 1, L)
        try:
            ev["position"] = np.broadcast_to(pos, rank.shape)
        except ValueError:
            raise DataError(
                f"{w}.length: shape {pos.shape}, but sequence_rank has {rank.shape}"
            ) from None
    return ev
