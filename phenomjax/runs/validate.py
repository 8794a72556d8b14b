"""One check for everything read back from disk (docs/design.md §7): run folders, caches,
configs. A reader opens its file through here and checks what it parsed through here, so a
hostile or damaged file is one line naming the file and the field, never a traceback, a hang
or an allocation without limit.

    open_regular   refuse devices, FIFOs, sockets and /proc or /sys before a byte is read
    read_regular   the bytes of such a file, at most `limit` of them
    load_json      JSON with bounded size, nesting depth and integer length
    check_tree     nesting depth and integer size of an already-parsed value (TOML)
    check_manifest the manifest fields the analysis computes with, typed and bounded
    read_parquet   a parquet table whose metadata passed first (row groups, rows, column types)
    check_columns  the value ranges of a run table's contract columns
    memory_limit   what a reader may still allocate (RAM, or RLIMIT_AS above what is mapped)

Every function takes the error class to raise (RunDirError for run folders and caches,
ConfigError for configs, DataError for legacy logs), so each reader keeps its own.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import RunDirError

MAX_TEXT_BYTES = 64 * 2**20  # a manifest, record or config; the largest written is ~10 kB
MAX_DEPTH = 32  # nesting of JSON and TOML; phenomjax writes at most 4 levels
MAX_INT_DIGITS = 20  # int64 has 19 digits; a longer integer is never one phenomjax wrote
INT64 = 2**63
# One row group per million rows is what pandas writes, so 10,000 is 10^10 rows; pyarrow
# keeps ~20 kB of metadata per row group in memory while it reads.
MAX_ROW_GROUPS = 10_000
ROW_GROUP_BYTES = 64 * 2**10
# Bytes per cell while a table is read: arrow's buffer, the pandas copy, the cast in conform.
CELL_COPIES = 3
_SYSTEM = ("/proc", "/sys", "/dev")
_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def short(value: Any, n: int = 40) -> str:
    """repr(value) on one line, at most n characters (a message quotes what the file held)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _why(e: OSError) -> str:
    return "permission denied" if isinstance(e, PermissionError) else str(e.strerror or e)


def check_dir(path: Path, error: type[Exception] = RunDirError) -> None:
    """Refuse a folder that cannot be listed (chmod 000), naming it."""
    try:
        with os.scandir(path):
            pass
    except OSError as e:
        raise error(f"{path}: cannot read this folder ({_why(e)})") from None


def check_kind(path: Path, error: type[Exception] = RunDirError) -> os.stat_result:
    """stat(path) of a regular file outside /proc, /sys and /dev, else `error` naming it.
    Links are followed (a user may link a run in); what they reach is checked."""
    try:
        real = os.path.realpath(path)
        st = os.stat(path)
    except OSError as e:
        raise error(f"{path}: cannot read ({_why(e)})") from None
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        what = _KINDS.get(kind, "not a regular file")
        raise error(f"{path}: {what}, not a regular file; expected a file phenomjax wrote")
    if any(real == s or real.startswith(s + "/") for s in _SYSTEM):
        raise error(f"{path}: a system file ({real}), not a file phenomjax wrote")
    return st


def open_regular(path: Path, error: type[Exception] = RunDirError) -> BinaryIO:
    """`path` opened for reading, once it is known to be a regular file.

    O_NONBLOCK makes the open of a FIFO return at once instead of waiting for a writer (a
    FIFO put there between the check and the open is caught by the fstat after it)."""
    check_kind(path, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"{path}: cannot read ({_why(e)})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{path}: changed into something other than a regular file while opened")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int, error: type[Exception] = RunDirError) -> bytes:
    """The bytes of regular file `path`, refused when there are more than `limit`."""
    with open_regular(path, error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise error(f"{path}: larger than {limit} bytes; not a file phenomjax wrote")
        try:  # a buffer the file's size (read(limit + 1) would allocate the whole limit)
            data = f.read(size + 1)
        except OSError as e:
            raise error(f"{path}: cannot read ({_why(e)})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit} bytes; not a file phenomjax wrote")
    return data


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def load_json(path: Path, error: type[Exception] = RunDirError, limit: int = MAX_TEXT_BYTES) -> Any:
    """JSON from regular file `path`: size, nesting depth and integer length bounded."""
    raw = read_regular(path, limit, error)
    try:
        value = json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise error(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # json.JSONDecodeError is one
        raise error(f"{path}: not valid JSON ({short(str(e), 120)[1:-1]})") from None
    check_tree(value, path, error)
    return value


def check_tree(value: Any, path: Path, error: type[Exception], where: str = "") -> None:
    """Refuse nesting deeper than MAX_DEPTH and integers outside int64, naming the field.
    Iterative, so a deep value cannot exhaust the stack here."""
    todo: list[tuple[Any, str, int]] = [(value, where, 0)]
    while todo:
        v, at, depth = todo.pop()
        if isinstance(v, dict | list):
            if depth >= MAX_DEPTH:
                raise error(f"{path}: {at or '(top)'}: nested deeper than {MAX_DEPTH} levels")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                name = f"{at}[{k}]" if isinstance(v, list) else (f"{at}.{k}" if at else str(k))
                todo.append((x, name, depth + 1))
        elif isinstance(v, int) and not isinstance(v, bool) and not -INT64 <= v < INT64:
            raise error(f"{path}: {at or '(top)'}: integer outside the int64 range")


# -- manifest -----------------------------------------------------------------------------------
def manifest_int(m: dict, key: str, where: Path, lo: int, hi: int) -> int:
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        raise RunDirError(f"{where}: {key}: expected an integer in [{lo}, {hi}), got {short(v)}")
    return v


def _string(m: dict, key: str, where: Path) -> str | None:
    v = m.get(key)
    if v is not None and not isinstance(v, str):
        raise RunDirError(f"{where}: {key}: expected a string, got {short(v)}")
    return v


def check_manifest(m: Any, where: Path) -> dict[str, Any]:
    """The manifest fields the analysis computes with, each checked (a hand-edited or foreign
    manifest gives a one-line error naming the field, not a ValueError deep in NumPy)."""
    if not isinstance(m, dict):
        raise RunDirError(f"{where}: expected a JSON object, got {type(m).__name__}")
    for k in ("K", "L", "kind"):
        if k not in m:
            raise RunDirError(f"{where}: missing field {k!r}")
    if not isinstance(m["kind"], str):
        raise RunDirError(f"{where}: kind: expected a string, got {short(m['kind'])}")
    # rank and position columns are int32 and int16 (the run directory's tables)
    K = manifest_int(m, "K", where, 1, 2**31)
    L = manifest_int(m, "L", where, 2, 2**15 + 1)
    alpha = m.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < math.inf:
        raise RunDirError(f"{where}: alpha: expected a finite number >= 0, got {short(alpha)}")
    for key in ("seed", "batch", "n_params"):  # optional: absent or null means not recorded
        if m.get(key) is not None:
            manifest_int(m, key, where, 0, INT64)
    config = m.get("config", {})
    if config is not None and not isinstance(config, dict):
        raise RunDirError(f"{where}: config: expected a JSON object, got {short(config)}")
    return {
        "kind": m["kind"],
        "K": K,
        "L": L,
        "alpha": float(alpha),
        "batch": m.get("batch"),
        "seed": m.get("seed"),
        "status": _string(m, "status", where),
        "config": config or {},
        "n_params": m.get("n_params"),
    }


# -- parquet ------------------------------------------------------------------------------------
def _vm_size() -> float:
    """Address space this process already maps (VmSize), 0 where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def memory_limit() -> float:
    """Bytes a reader may still take: the machine's RAM, or, where RLIMIT_AS is set, what that
    limit leaves above the address space already mapped."""
    from ..host import host_memory_bytes

    limit = float(host_memory_bytes() or math.inf)
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, float(soft) - _vm_size())
    except (ImportError, OSError, ValueError):
        pass
    return max(limit, 0.0)


def _arrow_kind(t: Any) -> str:
    import pyarrow as pa

    if isinstance(t, pa.ExtensionType):
        return "extension"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    return str(t)


INT_COLUMNS = ("step", "rank", "position", "presentations")


def _check_metadata(pf: Any, name: str, contract: bool) -> str | None:
    """Why a parquet file's metadata is refused, None when it is not."""
    md = pf.metadata
    if md.num_row_groups > MAX_ROW_GROUPS:
        return (f"{md.num_row_groups} row groups, more than the {MAX_ROW_GROUPS} phenomjax reads "
                "(it writes one per million rows)")  # fmt: skip
    need = float(md.num_rows) * max(md.num_columns, 1) * 8 * CELL_COPIES
    need += md.num_row_groups * ROW_GROUP_BYTES
    have = memory_limit()
    if need > have:
        return (f"{md.num_rows} rows need about {need / 2**30:.3g} GiB to read, more than the "
                f"{have / 2**30:.3g} GiB this process may use")  # fmt: skip
    for field in pf.schema_arrow:
        kind = _arrow_kind(field.type)
        want = "integer" if field.name in INT_COLUMNS else "float"
        typed = contract and field.name in _NUMBER  # run tables, not the cache's own
        if kind == "extension" or (typed and kind not in ("integer", want)):
            return (
                f"column {short(field.name)}: expected {want} values, got {short(str(field.type))}"
            )
    return None


def parquet_file(
    handle: Any, name: str, error: type[Exception] = RunDirError, contract: bool = True
) -> Any:
    """A pyarrow ParquetFile over an open binary `handle` whose metadata passed: at most
    MAX_ROW_GROUPS row groups, rows that fit the memory left, no extension types (which
    unpickle in old pyarrow) and, for a run's tables (`contract`), integer step, rank, position
    and presentations and numeric losses."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(handle)
        why = _check_metadata(pf, name, contract)
    except Exception as e:  # pyarrow raises several types for a cut-short file
        why = f"unreadable parquet ({type(e).__name__}: {short(str(e), 120)})"
    if why is not None:
        raise error(f"{name}: {why}")
    return pf


def read_parquet(
    source: Path | bytes, name: str, error: type[Exception] = RunDirError, contract: bool = True
) -> Any:
    """The pandas table of a parquet file (a path or its bytes) whose metadata passed."""
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else open_regular(source, error)
    with handle:
        pf = parquet_file(handle, name, error, contract)
        try:
            return pf.read(use_pandas_metadata=True).to_pandas()
        except MemoryError:
            raise error(f"{name}: out of memory reading it") from None
        except Exception as e:  # pyarrow raises several types for corrupt pages
            why = f"{type(e).__name__}: {short(str(e), 120)}"
            raise error(f"{name}: unreadable parquet ({why})") from None


_NUMBER = (*INT_COLUMNS, "loss", "accuracy", "train_loss", "learning_rate", "grad_norm")
# The largest value each integer column's canonical dtype holds (rundir._DTYPES).
_INT_MAX = {"step": INT64 - 1, "rank": 2**31 - 1, "position": 2**15 - 1,
            "presentations": INT64 - 1}  # fmt: skip


def check_columns(df: Any, name: str, K: int | None = None, L: int | None = None) -> None:
    """Value ranges of the contract columns present in `df`: step, presentations >= 0; rank in
    [0, K); position in [1, L) (position j predicts bit j from bits < j); loss
    finite or NaN; accuracy in [0, 1] or NaN. Checked before the cast to canonical dtypes,
    which would wrap an out-of-range integer."""
    hi = {"rank": K, "position": L}
    for col, top in _INT_MAX.items():
        if col not in df.columns or len(df) == 0:
            continue
        v = df[col].to_numpy()
        if v.dtype.kind not in "iu":  # pandas reads an integer column with nulls as floats
            raise RunDirError(f"{name}: column {col}: expected integers, got missing values")
        lo = 1 if col == "position" else 0
        bound = min(top + 1, hi.get(col) or top + 1)
        bad = (v < lo) | (v >= bound)
        if bad.any():
            raise RunDirError(f"{name}: column {col}: expected integers in [{lo}, {bound}), "
                              f"got {short(v[bad][0].item())}")  # fmt: skip
    for col in ("loss", "accuracy"):  # train_loss may hold the inf that failed a run
        if col not in df.columns or len(df) == 0:
            continue
        v = df[col].to_numpy().astype(np.float64)
        bad = np.isinf(v) | ((v < 0) | (v > 1) if col == "accuracy" else False)
        if bad.any():
            want = "in [0, 1] or NaN" if col == "accuracy" else "finite numbers or NaN"
            raise RunDirError(f"{name}: column {col}: expected {want}, got {v[bad][0]}")


def check_names(names: Iterable[Any], allowed: Iterable[str], where: str) -> None:
    """Refuse a key outside `allowed` (a record written by another version or by hand)."""
    extra = sorted(str(n) for n in set(names) - set(allowed))
    if extra:
        raise RunDirError(f"{where}: unexpected field {short(extra[0])}")
