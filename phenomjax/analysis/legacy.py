"""Historical training logs (DESIGN 4): a restricted unpickler and the legacy -> tidy tables.

The layout: {"args": dict or argparse.Namespace, "logs": [{"num_apppearances": (K,) counts
before the epoch (sic, three p's), "test_metrics": {} or {sequence_rank, length,
logsoftmaxloss, accuracy}, "train_loss", "epoch", "lr"}]}. test_metrics holds (K, L-1) arrays
(per position; `length` j = the predicted position 1..L-1) when K < 10000, and per-sequence
(K,) means with `length` = 50 otherwise. `logsoftmaxloss` is torch's nll_loss of log_softmax,
i.e. a loss in nats (>= 0); a log that stores log-probabilities instead (all values <= 0) is
negated, and one with both signs is refused.

Steps. The historical trainer evaluates at the start of epoch e, after e epochs, so
step = e x steps_per_epoch, where steps_per_epoch is, in this order:
  1. `[legacy] steps_per_epoch` of the analysis config when > 0;
  2. derived from the log: the presentations added per epoch (sum of num_apppearances grows by
     exactly the samples drawn) over args.batch_size, rounded up (the last batch may be short).
     This is exact for the historical trainer, whose args.num_iter_per_epoch is NOT its steps
     per epoch (an epoch there is 1000 x num_iter_per_epoch samples);
  3. args.num_iter_per_epoch (or num_iters_per_epoch) when the log has one epoch only;
  4. 1 (step = epoch), with a warning.

Safety. Unpickling runs code named in the file. `load_pickle` admits only numpy arrays,
dtypes and scalars, plain containers (dict, list, tuple, set, defaultdict/OrderedDict of plain
factories) and argparse.Namespace, which the historical trainer pickles as its `args`: a plain
attribute bag whose construction runs no user code (object.__new__ then __dict__.update).
Anything else raises UnsafePickleError naming the file and the global, before it is called.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import copyreg
import importlib
import io
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, UnsafePickleError

_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
}
_BUILTINS = {
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "bytearray",
    "complex",
    "int",
    "float",
    "bool",
    "str",
    "bytes",
    "slice",
    "object",
}
_PLAIN_FACTORIES = (list, dict, int, float, set, tuple, str)
_PY2_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol 0-2 spellings


def _checked_defaultdict(factory: Any = None, *args: Any) -> collections.defaultdict:
    if factory is not None and factory not in _PLAIN_FACTORIES:
        raise UnsafePickleError(f"defaultdict with factory {factory!r} refused")
    return collections.defaultdict(factory, *args)


def _checked_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # protocol 0/1 pickles of plain objects: only Namespace on top of object
    if cls is not argparse.Namespace or base is not object or state is not None:
        raise UnsafePickleError(f"copyreg._reconstructor({cls!r}, {base!r}) refused")
    return copyreg._reconstructor(cls, base, state)


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # _codecs.encode as protocol 0-2 use it for bytes; only the codec pickle itself writes
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode(..., {encoding!r}) refused")
    return text.encode("latin1")


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, name: str):  # file opened in binary mode
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_NAMES.get(module, module)
        canon = module.replace("numpy._core", "numpy.core")  # numpy 2 spelling -> one key
        if (canon, name) in _NUMPY:
            real = canon.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else canon
            return getattr(importlib.import_module(real), name)
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":
            return _latin1
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "collections" and name == "defaultdict":
            return _checked_defaultdict
        if module == "argparse" and name == "Namespace":
            return argparse.Namespace
        if module == "copyreg" and name == "_reconstructor":
            return _checked_reconstructor
        raise UnsafePickleError(
            f"{self.name}: refusing to load global {module}.{name}; a legacy log may hold only "
            "numpy arrays/scalars, plain containers and argparse.Namespace"
        )


def load_pickle(path: str | Path) -> Any:
    """Unpickle a legacy log through the restricted unpickler, streaming from the file (no
    second in-memory copy of a 500 MB log)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: legacy log not found")
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, str(path)).load()
    except UnsafePickleError as e:
        msg = str(e)
        raise UnsafePickleError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(
            f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); "
            "expected a legacy log {'args': ..., 'logs': [...]}"
        ) from None


def legacy_args(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict) or "logs" not in record:
        raise DataError(
            f"{path}: expected a dict with 'args' and 'logs', got {type(record).__name__}"
        )
    args = record.get("args", {})
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict):
        raise DataError(f"{path}: 'args' should be a dict or Namespace, got {type(args).__name__}")
    return dict(args)


def steps_per_epoch(logs: list[dict], args: dict[str, Any], path: Path, override: int = 0) -> int:
    """The rule of the module docstring."""
    if override > 0:
        return int(override)
    counted = [lg for lg in logs if "epoch" in lg and "num_apppearances" in lg]
    batch = args.get("batch_size") or args.get("batch")
    if len(counted) >= 2 and batch:
        # the first and last logs suffice: presentations grow by the same amount every epoch
        (e0, n0), (e1, n1) = (
            (int(lg["epoch"]), float(np.sum(lg["num_apppearances"])))
            for lg in (counted[0], counted[-1])
        )
        if e1 > e0 and n1 > n0:
            return int(math.ceil((n1 - n0) / (e1 - e0) / float(batch) - 1e-9))
    for key in ("num_iter_per_epoch", "num_iters_per_epoch", "steps_per_epoch"):
        if args.get(key):
            return int(args[key])
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
            f"{path}: logsoftmaxloss has values of both signs ({lo:.3g} .. {hi:.3g}); "
            "expected a loss in nats (>= 0) or log-probabilities (<= 0)"
        )
    for t in tables:
        loss = t["loss"]
        if negate:
            np.negative(loss, out=loss)
        np.maximum(loss, 0.0, out=loss)


def legacy_tables(
    record: Any, path: str | Path, *, steps_override: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    """(per-sequence table, per-position table or None, run metadata) of a legacy record."""
    path = Path(path)
    args = legacy_args(record, path)
    logs = record["logs"]
    if not isinstance(logs, list):
        raise DataError(f"{path}: 'logs' should be a list, got {type(logs).__name__}")
    if not any(isinstance(lg, dict) and lg.get("test_metrics") for lg in logs):
        raise DataError(f"{path}: no log holds test_metrics; nothing to analyse")
    spe = steps_per_epoch(logs, args, path, steps_override)
    seq_parts: list[dict[str, np.ndarray]] = []
    pos_parts: list[dict[str, np.ndarray]] = []
    K = L = None
    for i, lg in enumerate(logs):
        if not isinstance(lg, dict):
            raise DataError(f"{path}: logs[{i}] should be a dict, got {type(lg).__name__}")
        tm = lg.get("test_metrics") or {}
        if len(tm) == 0:
            continue
        where = f"{path}: logs[{i}].test_metrics"
        missing = [k for k in ("sequence_rank", "logsoftmaxloss", "accuracy") if k not in tm]
        if missing or "num_apppearances" not in lg or "epoch" not in lg:
            raise DataError(f"{where}: missing {missing or ['num_apppearances/epoch']}")
        rank = np.asarray(tm["sequence_rank"])
        loss = np.asarray(tm["logsoftmaxloss"], dtype=np.float32)
        acc = np.asarray(tm["accuracy"], dtype=np.float32)
        counts = np.rint(np.asarray(lg["num_apppearances"], dtype=np.float64)).astype(np.int64)
        if loss.shape != rank.shape or acc.shape != rank.shape or rank.ndim not in (1, 2):
            raise DataError(f"{where}: arrays of shapes {rank.shape}, {loss.shape}, {acc.shape}")
        r = rank[:, 0] if rank.ndim == 2 else rank
        if K is None:
            K = int(r.max()) + 1
        if counts.shape != (K,) or r.min() < 0 or r.max() >= K:
            raise DataError(f"{where}: ranks 0..{r.max()} and num_apppearances {counts.shape}")
        step = int(lg["epoch"]) * spe
        common = {"epoch": int(lg["epoch"]), "step": step}
        if rank.ndim == 2:
            P = rank.shape[1]
            L = P + 1
            pos = np.asarray(tm.get("length", np.broadcast_to(np.arange(1, L), rank.shape)))
            pos_parts.append(
                {
                    **common,
                    "rank": rank.reshape(-1),
                    "position": np.broadcast_to(pos, rank.shape).reshape(-1),
                    "presentations": counts[rank.reshape(-1)],
                    "loss": loss.ravel(),
                    "accuracy": acc.ravel(),
                }
            )
            with np.errstate(all="ignore"):
                loss, acc = np.nanmean(loss, axis=1), np.nanmean(acc, axis=1)
        seq_parts.append(
            {**common, "rank": r, "presentations": counts[r], "loss": loss, "accuracy": acc}
        )
    if not seq_parts:
        raise DataError(f"{path}: no log holds test_metrics; nothing to analyse")
    ev_cols = _columns(seq_parts)
    pos_cols = _columns(pos_parts) if pos_parts else None
    _fix_loss_sign([pos_cols, ev_cols] if pos_cols is not None else [ev_cols], path)
    # copy=False: pandas would otherwise stack same-dtype columns into one block (a copy)
    evals = pd.DataFrame(ev_cols, copy=False)
    positions = pd.DataFrame(pos_cols, copy=False) if pos_cols is not None else None
    if L is None:
        L = int(args.get("len_context") or args.get("L") or 0) or None
    meta = {
        "kind": "legacy",
        "path": str(path),
        "K": int(args.get("K", K)),
        "L": L,
        "alpha": 1.0 if args.get("sequence_sampling_distribution", "zipf") == "zipf" else 0.0,
        "batch": args.get("batch_size"),
        "seed": args.get("seed"),
        "steps_per_epoch": spe,
        "config": {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool))},
        "n_params": args.get("n_params"),
    }
    return evals, positions, meta


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
