"""Atomic file writes (docs/design.md §4): a temporary file in the same folder, fsync, then
os.replace, so a process killed at any moment leaves either the old or the new file.

Files are created with the permissions the umask gives (as open() would), not mkstemp's 0600,
so colleagues on a shared machine can read results. A folder that cannot be written (read-only,
full disk) is one StorageError naming it, never a traceback about a temporary file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RunDirError


class StorageError(RunDirError, OSError):
    """A file could not be written (permissions, a full disk); the message names the folder."""


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it and set it back
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary path beside `path`, fsync it, then rename it over `path`.

    Any OSError (a read-only folder, a full disk) becomes a StorageError naming the folder; the
    old file, if any, is left as it was.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp_path = Path(tmp)
        try:
            os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; follow the umask instead
        finally:
            os.close(fd)
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        if isinstance(e, StorageError):
            raise
        raise _storage_error(path, e) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def _storage_error(path: Path, e: OSError) -> StorageError:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # name the folder that refused, not one never created
    if isinstance(e, PermissionError):
        return StorageError(
            f"{folder}: not writable (writing {path.name}: permission denied); "
            "make it writable or choose another folder"
        )
    reason = " ".join(str(e.strerror or e).split())  # one line, whatever the OS said
    return StorageError(f"{folder}: cannot write {path.name} ({reason})")


def safe_name(text: str, *, what: str = "name") -> str:
    """`text` as one file name: letters, digits and . _ - kept, any other run of characters
    (a /, .., spaces, control characters) one "_", so a name from a user or a file never
    leaves its folder. An empty result is an error naming `what`."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    if not out:
        raise RunDirError(f"{what} {text!r}: expected a name with a letter or digit")
    return out[:120]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def jsonable(obj: Any) -> Any:
    """`obj` as it reads back from a JSON file (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
