"""Checkpoints: pytrees to named arrays and back (typed PRNG keys included), and the files of
a run's checkpoint/ folder, written atomically and read back checked (docs/design.md §4)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunDirError
from .storage import atomic_write_bytes, atomic_write_json


def pytree_to_arrays(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a pytree of arrays (typed PRNG keys included) to named numpy arrays."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    out = {}
    for i, leaf in enumerate(leaves):
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"{prefix}{i:05d}"] = np.asarray(leaf)
    return out


def arrays_to_pytree(like: Any, arrays: Mapping[str, np.ndarray], prefix: str = "") -> Any:
    """Inverse of pytree_to_arrays, shaped by `like` (a pytree or its eval_shape)."""
    import jax
    import jax.numpy as jnp

    paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves = [leaf for _, leaf in paths]
    names = sorted(k for k in arrays if k.startswith(prefix))
    if len(names) != len(leaves):
        raise RunDirError(
            f"checkpoint: holds {len(names)} arrays, the model expects {len(leaves)}; "
            "was it written by another config?"
        )
    out = []
    for (path, leaf), name in zip(paths, names, strict=True):
        a = arrays[name]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jnp.asarray(a)))
            continue
        if tuple(a.shape) != tuple(leaf.shape):
            raise RunDirError(
                f"checkpoint: {jax.tree_util.keystr(path)} has shape {a.shape}, expected "
                f"{leaf.shape}; was it written by another version of phenomjax or config?"
            )
        out.append(jnp.asarray(a, dtype=leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


# -- the checkpoint folder: state-<step>.npz and meta.json, the commit point ------------------

# The dtypes a state file may hold (numeric leaves; typed PRNG keys are stored as uint32 data).
# A header declaring any other dtype (object, string, void, structured) is refused before reading.
STATE_DTYPES = tuple(
    np.dtype(t)
    for t in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )  # fmt: skip
)
META_BYTES = 1 << 20  # a meta.json is a few lines; anything larger is not one
_STATE_NAME = re.compile(r"state(-\d{1,20})?\.npz")
_SHA = re.compile(r"[0-9a-f]{64}")


def real_folder(folder: Path) -> Path:
    """`folder` when it is missing or a real folder; a link (or a file) is a RunDirError, so
    no checkpoint is written, read or cleaned up through one."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return folder
    except OSError as e:
        raise RunDirError(f"{folder}: cannot read it ({e.strerror or e})") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise RunDirError(f"{folder}: is {kind}; phenomjax keeps checkpoints in a real folder")
    return folder


def _regular_bytes(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (not a link, FIFO or device), opened without following."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise RunDirError(f"{path}: not a regular file")
        if limit is not None and st.st_size > limit:
            raise RunDirError(f"{path}: {st.st_size} bytes, more than {limit} for this file")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    except RunDirError:
        raise
    except OSError as e:
        raise RunDirError(f"{path}: cannot read it ({e.strerror or e})") from None


def read_meta(path: Path, steps: int | None = None) -> dict[str, Any]:
    """A checkpoint's meta.json, checked: an object whose `step` is an integer in [0, steps],
    whose `state` names a state file of this folder and whose `sha256` is a digest."""
    try:
        meta = json.loads(_regular_bytes(path, META_BYTES).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RunDirError(f"{path}: not UTF-8 (byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        raise RunDirError(f"{path}: not valid JSON ({str(e)[:80]})") from None
    if not isinstance(meta, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    step = meta.get("step")
    top = "" if steps is None else f", {steps}]"
    if (
        isinstance(step, bool)
        or not isinstance(step, int)
        or step < 0
        or (steps is not None and step > steps)
    ):
        shown = repr(step) if len(repr(step)) <= 40 else repr(step)[:40] + "..."
        raise RunDirError(f"{path}: step: expected an integer in [0{top or ', ...)'}, got {shown}")
    name = meta.get("state", "state.npz")
    if not isinstance(name, str) or not _STATE_NAME.fullmatch(name):
        raise RunDirError(f"{path}: state: expected a name state-<step>.npz, got {name!r:.60}")
    if not isinstance(meta.get("sha256"), str) or not _SHA.fullmatch(meta["sha256"]):
        raise RunDirError(f"{path}: sha256: expected 64 hex digits")
    return meta


def read_state(path: Path, sha256: str) -> dict[str, np.ndarray]:
    """The arrays of a state file whose digest is `sha256`; every member's header (dtype from
    STATE_DTYPES, a shape its stored bytes hold) is checked before its values are read."""
    data = _regular_bytes(path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RunDirError(f"{path}: does not match its meta.json (cut short or stale)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {_member_name(path, info): _member(z, info, path) for info in z.infolist()}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise RunDirError(f"{path}: not a state file ({type(e).__name__}: {str(e)[:80]})") from None


def _member_name(path: Path, info: zipfile.ZipInfo) -> str:
    if not info.filename.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED:
        raise RunDirError(f"{path}: {info.filename!r:.60}: not a stored .npy member")
    return info.filename[: -len(".npy")]


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    where = f"{path}: {info.filename!r:.60}"
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        if version not in read:
            raise RunDirError(f"{where}: npy format {version} is not one phenomjax writes")
        shape, fortran, dtype = read[version](f)
        if dtype not in STATE_DTYPES:
            raise RunDirError(f"{where}: dtype {dtype}; expected one of the numeric dtypes")
        need = math.prod(shape) * dtype.itemsize
        if need > info.file_size - f.tell():
            raise RunDirError(f"{where}: declares shape {shape} ({need} bytes), holds fewer")
        a = np.frombuffer(f.read(need), dtype=dtype)
    return a.reshape(shape, order="F" if fortran else "C").copy()


def write_state(folder: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Arrays to folder/state-<step>.npz, then meta.json naming that file and its digest.

    meta.json is the commit point: it is replaced only after its state file is complete, and
    older state files (regular files only, never through a link) are removed only after that,
    so a kill at any moment leaves a meta.json whose state file exists and matches."""
    real_folder(folder)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    name = f"state-{int(meta.get('step', 0)):012d}.npz"
    atomic_write_bytes(folder / name, data)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_json(folder / "meta.json", {**dict(meta), "state": name, "sha256": digest})
    real_folder(folder)  # swapped for a link meanwhile: clean up nothing
    with os.scandir(folder) as entries:
        old = [e for e in entries if _STATE_NAME.fullmatch(e.name) and e.name != name
               and e.is_file(follow_symlinks=False)]  # fmt: skip
    for e in old:
        Path(e.path).unlink(missing_ok=True)
