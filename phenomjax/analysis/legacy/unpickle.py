"""The restricted unpickler of legacy logs (see the package docstring, "Safety"): only numpy
arrays, dtypes and scalars, plain containers and argparse.Namespace are built, each dtype,
array and scalar from a checked type code, never from the file's own state; `load_pickle`
streams a log through it and checks the structure that comes out (`_checked`).
"""

from __future__ import annotations

import argparse
import builtins
import collections
import copyreg
import io
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError, UnsafePickleError

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
    from ...runs.validate import open_regular

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
