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

Checks. Every value read from the record is checked before numpy or pandas sees it (numeric,
integer where it must be, ranks in [0, K), counts >= 0, no infinities, accuracy in [0, 1],
one K, one layout and one L across evaluations, args consistent with the arrays): a bad one is
a one-line DataError naming the file and the field ("x.pkl: logs[3].test_metrics.accuracy:
..."), never an IndexError from inside numpy. tests/test_hostile.py generates such records.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import contextlib
import copyreg
import io
import math
import os
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, UnsafePickleError

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


def _short(x: Any) -> str:
    text = " ".join(repr(x).split())  # one line, whatever the file holds
    return text if len(text) <= 60 else text[:57] + "..."


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


# -- numpy: every dtype, array and scalar is rebuilt here, never from the file's own state ----
#
# numpy trusts what a pickle says about a dtype: a BUILD can give an object dtype the flags of a
# plain one, and _frombuffer / scalar / ndarray.__setstate__ then read raw bytes from the file
# as object pointers (a crash, or worse). So `numpy.dtype(...)` yields a `_Dtype` record of a
# type code from _CODES; its BUILD state is compared with what numpy writes for that code and
# only the byte order is kept; the array and scalar constructors accept nothing but a `_Dtype`
# and build the numpy dtype themselves. Object, string, void and structured dtypes never form.

_CODES = frozenset(
    "b1 i1 u1 i2 u2 i4 u4 i8 u8 f2 f4 f8 f12 f16 c8 c16 c24 c32".split()
)  # the spellings dtype.__reduce__ writes for bool, integers, floats and complex numbers
_ORDERS = ("<", ">", "=", "|")
_MAX_NDIM = 32  # numpy's own limit is 64; a legacy log holds at most 2


class _Dtype:
    """A dtype as the unpickler holds it: a type code from _CODES and a byte order."""

    __slots__ = ("code", "order")

    def __init__(self, code: str) -> None:
        self.code = code
        self.order = "="

    def __setstate__(self, state: Any) -> None:
        # numpy writes (3, order, None, None, None, -1, -1, 0) for every code in _CODES: the
        # order is all that may vary; anything else describes another kind of dtype
        ok = type(state) is tuple and len(state) == 8 and type(state[1]) is str
        if ok and state[1] in _ORDERS:
            plain = (3, state[1], None, None, None, -1, -1, 0)
            ok = all(type(x) is type(y) and x == y for x, y in zip(state, plain, strict=True))
        if not ok or state[1] not in _ORDERS:
            raise UnsafePickleError(
                f"numpy dtype {self.code!r} with state {_short(state)} refused; a plain "
                "numeric dtype has state (3, byte order, None, None, None, -1, -1, 0)"
            )
        self.order = state[1]

    def real(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


def _dtype(code: Any = None, align: Any = False, copy: Any = True, *rest: Any) -> _Dtype:
    flags_ok = all(type(v) in (bool, int) and v in (0, 1) for v in (align, copy))
    if rest or not flags_ok or not isinstance(code, str) or code not in _CODES:
        raise UnsafePickleError(
            f"numpy.dtype({_short(code)}) refused; a legacy log may hold only bool, integer, "
            "float and complex dtypes"
        )
    try:
        np.dtype(code)  # f12/f16/c24/c32 exist on some platforms only
    except TypeError:
        raise UnsafePickleError(f"numpy.dtype({code!r}): not a dtype of this platform") from None
    return _Dtype(code)


def _real(dt: Any, what: str) -> np.dtype:
    if type(dt) is not _Dtype:
        raise UnsafePickleError(
            f"{what} with dtype {_short(dt)} refused; expected a numpy.dtype of the log"
        )
    return dt.real()


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    ok = isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
    if not ok or not all(type(n) is int and n >= 0 for n in shape):
        raise UnsafePickleError(f"{what} with shape {_short(shape)} refused")
    return shape


def _buffer(raw: Any, shape: tuple[int, ...], dt: np.dtype, what: str) -> bytes | bytearray:
    if isinstance(raw, str):  # Python 2 pickles: numpy reads a str as latin-1 bytes
        raw = _latin1(raw)
    if not isinstance(raw, (bytes, bytearray)):  # a list here means an object array
        raise UnsafePickleError(
            f"{what} with data of type {type(raw).__name__} refused; expected raw bytes"
        )
    need = math.prod(shape) * dt.itemsize
    if len(raw) != need:
        raise UnsafePickleError(
            f"{what}: {len(raw)} bytes of data for shape {shape} of {dt} ({need} bytes)"
        )
    return raw


def _frombuffer(buf: Any, dt: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy.core.numeric._frombuffer (protocol 5), every argument checked."""
    what = "numpy _frombuffer"
    dt, shape = _real(dt, what), _shape(shape, what)
    if type(order) is not str or order not in ("C", "F"):
        raise UnsafePickleError(f"{what} with order {_short(order)} refused")
    buf = _buffer(buf, shape, dt, what)
    return np.frombuffer(buf, dtype=dt).reshape(shape, order=order)


def _scalar(dt: Any, raw: Any = None) -> np.generic:
    """numpy.core.multiarray.scalar: one value of a plain dtype from its exact bytes."""
    dt = _real(dt, "numpy scalar")
    raw = _buffer(raw, (), dt, "numpy scalar")
    return np.frombuffer(raw, dtype=dt)[0]


class _Ndarray:
    """What the global numpy.ndarray stands for: an argument to _reconstruct, never called."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _Ndarray()


class _PendingArray(np.ndarray):
    """An array between _reconstruct and its BUILD (protocols 0-4); `_checked` makes it a
    plain ndarray once the whole file is read."""

    def __setstate__(self, state: Any) -> None:
        what = "numpy array"
        if isinstance(state, tuple) and len(state) == 4:  # numpy < 1.0 wrote no version
            state = (1, *state)
        if (
            type(state) is not tuple
            or len(state) != 5
            or type(state[0]) is not int
            or state[0] != 1
        ):
            raise UnsafePickleError(f"{what} with state {_short(state)} refused")
        _, shape, dt, fortran, raw = state
        dt, shape = _real(dt, what), _shape(shape, what)
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise UnsafePickleError(f"{what} with order flag {_short(fortran)} refused")
        raw = _buffer(raw, shape, dt, what)
        super().__setstate__((1, shape, dt, bool(fortran), raw))


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _PendingArray:
    """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'), the only call numpy writes."""
    ok = type(shape) is tuple and shape == (0,) and type(typecode) in (bytes, str)
    if subtype is not _NDARRAY or not ok or typecode not in (b"b", "b"):
        raise UnsafePickleError(
            f"numpy _reconstruct({_short(subtype)}, {_short(shape)}, {_short(typecode)}) "
            "refused; expected (numpy.ndarray, (0,), b'b')"
        )
    return np.ndarray.__new__(_PendingArray, (0,), np.int8)


_NUMPY = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
}

# -- the loaded structure: what may come out of a legacy log ---------------------------------

_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray)
_MAX_DEPTH = 64  # a legacy log nests 4 deep; deeper (or a cycle) is not a log
_TYPES = frozenset(getattr(builtins, n) for n in _BUILTINS) | {argparse.Namespace}


def _checked(obj: Any, seen: dict[int, Any], where: str = "", depth: int = 0) -> Any:
    """obj with every pending array a plain ndarray and every _Dtype a numpy dtype; anything
    outside plain containers, numbers, strings and numeric numpy values is refused."""
    t = type(obj)
    if t in _LEAVES:
        return obj
    if id(obj) in seen:
        return seen[id(obj)][1]
    if depth > _MAX_DEPTH:
        raise UnsafePickleError(f"{where or 'top'}: nested deeper than {_MAX_DEPTH} levels")
    if t is np.ndarray or t is _PendingArray:
        if obj.dtype.kind not in "biufc":  # unreachable through the constructors above
            raise UnsafePickleError(f"{where}: array of dtype {obj.dtype} refused")
        out = obj.view(np.ndarray) if t is _PendingArray else obj
    elif isinstance(obj, np.generic):
        if obj.dtype.kind not in "biufc" or obj.dtype.hasobject:
            raise UnsafePickleError(f"{where}: numpy scalar of dtype {obj.dtype} refused")
        out = obj
    elif t is _Dtype:
        out = obj.real()
    elif t in (dict, collections.OrderedDict, collections.defaultdict, argparse.Namespace):
        seen[id(obj)] = (obj, obj)  # mutable: updated in place, so a cycle ends here
        items = vars(obj) if t is argparse.Namespace else obj
        for k in list(items):
            v = items[k]
            if type(k) in _LEAVES and type(v) in _LEAVES:
                continue
            sub = f"{where}.{k}" if isinstance(k, str) else f"{where}[{_short(k)}]"
            if _checked(k, seen, sub, depth + 1) is not k:
                raise UnsafePickleError(f"{sub}: a numpy dtype as a key refused")
            new = _checked(v, seen, sub, depth + 1)
            if new is not v:
                items[k] = new
        return obj
    elif t is list:
        seen[id(obj)] = (obj, obj)
        for i, v in enumerate(obj):
            if type(v) in _LEAVES:
                continue
            new = _checked(v, seen, f"{where}[{i}]", depth + 1)
            if new is not v:
                obj[i] = new
        return obj
    elif t in (tuple, set, frozenset, slice):
        parts = (obj.start, obj.stop, obj.step) if t is slice else obj
        new = [_checked(v, seen, f"{where}[{i}]", depth + 1) for i, v in enumerate(parts)]
        changed = any(a is not b for a, b in zip(new, parts, strict=True))
        if changed and t is not tuple:  # set members and slice bounds are plain values
            raise UnsafePickleError(f"{where}: a numpy dtype inside a {t.__name__} refused")
        out = tuple(new) if changed else obj
    elif t is type and obj in _TYPES:  # a plain type as a value (a defaultdict's factory)
        out = obj
    else:
        raise UnsafePickleError(
            f"{where or 'top'}: unexpected {t.__name__} object; a legacy log may hold only "
            "numbers, strings, numeric numpy arrays and plain containers"
        )
    seen[id(obj)] = (obj, out)  # obj kept alive: its id is not reused during the walk
    return out


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, name: str):  # file opened in binary mode
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_NAMES.get(module, module)
        canon = module.replace("numpy._core", "numpy.core")  # numpy 2 spelling -> one key
        if (canon, name) in _NUMPY:
            return _NUMPY[canon, name]
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
        glob = f"{module}.{name}"
        if not glob.isprintable():  # a corrupt file can name anything: keep the error one line
            glob = repr(glob)
        raise UnsafePickleError(
            f"{self.name}: refusing to load global {glob}; a legacy log may hold only "
            "numpy arrays/scalars, plain containers and argparse.Namespace"
        )


def load_pickle(path: str | Path) -> Any:
    """Unpickle a legacy log through the restricted unpickler, streaming from the file (no
    second in-memory copy of a 500 MB log)."""
    from ..runs.validate import open_regular

    path = Path(path)
    if not os.path.lexists(path):
        raise DataError(f"{path}: legacy log not found")
    f = open_regular(path, DataError)  # a FIFO or device is refused, not read
    try:
        with f:
            record = _SafeUnpickler(f, str(path)).load()
        return _checked(record, {})
    except UnsafePickleError as e:
        msg = str(e)
        raise UnsafePickleError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except MemoryError:
        raise DataError(
            f"{path}: out of memory while unpickling ({path.stat().st_size} bytes on disk)"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: nested too deeply to be a legacy log") from None
    except Exception as e:  # noqa: BLE001
        # Only the admitted constructors ran, so any failure means corrupt bytes.
        why = " ".join(str(e).split())[:200]  # one line, whatever the unpickler said
        raise DataError(
            f"{path}: truncated or corrupt pickle ({type(e).__name__}: {why}); "
            "expected a legacy log {'args': ..., 'logs': [...]}"
        ) from None


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


def _legacy_tables(
    record: Any, path: Path, steps_override: int
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    args = legacy_args(record, path)
    logs = record["logs"]
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
    # the sizes the args promise, to check array shapes against before their values
    sizes: Sizes = {}
    K_arg = _arg_int(args, "K", path)
    if K_arg is not None:
        sizes["K"] = (K_arg, f"args.K = {K_arg}")
    L_args = {key: _arg_int(args, key, path, lo=2) for key in ("len_context", "L")}
    for key, L_arg in L_args.items():
        if L_arg is not None:
            _agree(sizes, "P", L_arg - 1, f"{path}: args.{key}", "positions (L - 1)")
    # every evaluation checked before anything is derived from it (steps per epoch, K, L)
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
    spe = steps_per_epoch(logs, args, path, steps_override)
    dist = args.get("sequence_sampling_distribution", "zipf")
    if not isinstance(dist, str):
        raise DataError(
            f"{path}: args.sequence_sampling_distribution: expected a string, got {_what(dist)}"
        )

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
    ev_cols = _columns(seq_parts)
    pos_cols = _columns(pos_parts) if pos_parts else None
    tables = [pos_cols, ev_cols] if pos_cols is not None else [ev_cols]
    _fix_loss_sign(tables, path)
    for t in tables:  # rounding just outside [0, 1] (checked within 1e-6 above)
        np.clip(t["accuracy"], 0.0, 1.0, out=t["accuracy"])
    # copy=False: pandas would otherwise stack same-dtype columns into one block (a copy)
    evals = pd.DataFrame(ev_cols, copy=False)
    positions = pd.DataFrame(pos_cols, copy=False) if pos_cols is not None else None
    seed = args.get("seed")
    n_params = args.get("n_params")
    finite = (int, float, np.integer, np.floating)
    meta = {
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
