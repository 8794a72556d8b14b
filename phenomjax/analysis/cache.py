"""Processed tables cached as parquet, keyed by what they are computed from.

key = sha256(input bytes, the settings that shape the tables, the package version). For a
legacy pickle the input is the file; for a run directory manifest.json, evals.parquet and
positions.parquet. Each file's digest may be remembered against its (device, inode, size,
mtime_ns, ctime_ns) as git's index does (see file_sha256); ctime moves on every write and
cannot be set back, so a changed byte is never served stale, and a cached re-run of a 500 MB
log does not re-read it. --force-reprocess re-hashes everything.

A cache entry is <name>-<key>.{binned,ranks,positions,crossings,matched}.parquet plus
<name>-<key>.json, written last, which holds the run metadata and the sha256 of each parquet:
an entry whose files are missing, cut short or altered does not match its record and is
rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RunDirError
from ..runs.storage import atomic_write_bytes, atomic_write_json
from ..runs.validate import (
    check_manifest,
    check_names,
    load_json,
    memory_limit,
    open_regular,
    read_parquet,
    read_regular,
    short,
)
from ..version import __version__
from .binning import bin_by_rank
from .lag import DEFAULT_LEVELS, PER_DECADE, matched_loss, rank_crossings
from .load import check_path, is_run_dir, read_tables
from .summaries import memorized_bits

SCHEMA = 2  # bump when the cached tables change shape
PARTS = ("binned", "ranks", "positions", "crossings", "matched")


@dataclasses.dataclass
class Processed:
    """One run, processed: binned per-sequence curves, the selected ranks' rows, per-position
    bins (None without per-position data), each rank's presentations to the lag levels
    (lag.rank_crossings), each bin's log loss at matched presentations (lag.matched_loss), and
    metadata (incl. memorized bits)."""

    meta: dict[str, Any]
    binned: pd.DataFrame
    ranks: pd.DataFrame
    positions: pd.DataFrame | None
    crossings: pd.DataFrame
    matched: pd.DataFrame
    cached: bool = False


def _input_files(path: Path) -> list[Path]:
    """What the key hashes; a file of the wrong type is listed, for file_sha256 to refuse."""
    if is_run_dir(path):
        names = ("manifest.json", "evals.parquet", "positions.parquet")
        return [path / n for n in names if os.path.lexists(path / n)]
    return [path]


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """sha256 of a file's bytes. With memo_dir, the digest is remembered against the file's
    (device, inode, size, mtime_ns, ctime_ns), as git's index does: any write changes ctime,
    which no tool can set back, so a changed byte is always re-hashed. A file modified within
    the last 2 s is not remembered (its timestamps may not have ticked yet: "racy git")."""
    with open_regular(path) as fh:  # a device or FIFO would hash forever or block
        st = os.fstat(fh.fileno())
        sig = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        memo_file = memo_dir / "digests.json" if memo_dir is not None else None
        memo = _read_memo(memo_file) if memo_file is not None else {}
        entry = memo.get(str(path.resolve()))
        if isinstance(entry, list) and len(entry) == 6 and entry[:5] == sig and _hex(entry[5]):
            return entry[5]
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > 2_000_000_000
    if memo_file is not None and settled:
        memo[str(path.resolve())] = [*sig, digest]
        atomic_write_json(memo_file, memo)
    return digest


def _hex(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _read_memo(memo_file: Path) -> dict[str, Any]:
    """The remembered digests; anything unreadable or malformed is forgotten (it is a cache)."""
    if not os.path.lexists(memo_file):
        return {}
    try:
        memo = load_json(memo_file)
    except RunDirError as e:
        warnings.warn(f"{e}; re-hashing the inputs", stacklevel=4)
        return {}
    return memo if isinstance(memo, dict) else {}


def cache_key(path: Path, settings: dict[str, Any], memo_dir: Path | None = None) -> str:
    """sha256 over the input files' names and bytes, the settings and the package version."""
    h = hashlib.sha256()
    meta = {**settings, "version": __version__, "schema": SCHEMA}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for f in _input_files(path):
        h.update(f.name.encode() + b"\0" + file_sha256(f, memo_dir).encode())
    return h.hexdigest()


def _entry(cache_dir: Path, path: Path, key: str) -> Path:
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.resolve().name)
    return cache_dir / f"{name[:80]}-{key[:24]}"


def _check_record(record: Any, where: Path) -> dict[str, Any]:
    """A cache record is {"meta": {...}, "parts": {part: sha256 or null}}, meta with the fields
    a processed run has (the manifest's, checked as a manifest's, and the summaries')."""
    if not isinstance(record, dict) or not isinstance(record.get("parts"), dict):
        raise RunDirError(f"{where}: expected an object with 'meta' and 'parts'")
    check_names(record["parts"], PARTS, f"{where}: parts")
    for part, digest in record["parts"].items():
        if digest is not None and not _hex(digest):
            raise RunDirError(f"{where}: parts.{part}: expected a sha256, got {short(digest)}")
    meta = record.get("meta")
    check_manifest(meta, where)
    for key, kinds in _META_TYPES.items():
        if not isinstance(meta.get(key), kinds):
            raise RunDirError(f"{where}: meta.{key}: expected {kinds.__name__}, got "
                              f"{short(meta.get(key))}")  # fmt: skip
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in meta["steps"]):
        raise RunDirError(f"{where}: meta.steps: expected integers >= 0")
    return record


_META_TYPES = {"name": str, "label": str, "steps": list, "memorized": dict, "bits_known": bool,
               "floor_known": bool}  # fmt: skip


def _read_entry(base: Path) -> Processed | None:
    """The cached entry at `base`, None (and a one-line warning) when it is missing, altered or
    malformed in any way: a cache is rebuilt, never trusted into a traceback."""
    record_path = base.with_suffix(base.suffix + ".json")
    if not os.path.lexists(record_path):
        return None
    try:
        record = _check_record(load_json(record_path), record_path)
        tables = {}
        for part in PARTS:
            digest = record["parts"].get(part)
            if digest is None:
                tables[part] = None
                continue
            part_path = Path(f"{base}.{part}.parquet")
            raw = read_regular(part_path, int(min(memory_limit(), 2**62)))
            if hashlib.sha256(raw).hexdigest() != digest:
                raise RunDirError(f"{part_path}: does not match its record")
            tables[part] = read_parquet(raw, str(part_path), contract=False)
        for t in tables.values():
            if t is not None:
                t.attrs["run"] = record["meta"]
        if tables["crossings"] is None or tables["matched"] is None:
            raise RunDirError(f"{record_path}: lag tables missing")
        return Processed(record["meta"], **tables, cached=True)
    except RunDirError as e:
        warnings.warn(f"cache entry unreadable ({e}); rebuilding it", stacklevel=3)
        return None


def _write_entry(base: Path, p: Processed) -> None:
    digests = {}
    for part in PARTS:
        t = getattr(p, part)
        if t is None:
            continue
        buf = io.BytesIO()
        t.to_parquet(buf, index=False)
        raw = buf.getvalue()
        atomic_write_bytes(Path(f"{base}.{part}.parquet"), raw)
        digests[part] = hashlib.sha256(raw).hexdigest()
    atomic_write_json(base.with_suffix(base.suffix + ".json"), {"meta": p.meta, "parts": digests})


def process_run(
    path: str | Path,
    *,
    edges: Sequence[int] = (),
    ranks: Sequence[int] = (),
    steps_per_epoch: int = 0,
    levels: Sequence[float] = DEFAULT_LEVELS,
    per_decade: int = PER_DECADE,
    cache_dir: str | Path | None = "cache/processed_data",
    force: bool = False,
) -> Processed:
    """Load, bin and summarise one run, through the cache (cache_dir=None: no cache).
    levels, per_decade: the lag levels and the matched-presentations grid (lag.py)."""
    path = Path(path)
    check_path(path)  # before the cache hashes it: a device or FIFO would never end
    settings = {"edges": [int(e) for e in edges], "ranks": sorted({int(r) for r in ranks}),
                "steps_per_epoch": int(steps_per_epoch), "levels": [float(v) for v in levels],
                "per_decade": int(per_decade)}  # fmt: skip
    base = None
    pending = None
    if cache_dir is not None:
        if force:
            # A forced rebuild trusts nothing: it re-hashes every input, in a thread (hashlib
            # releases the GIL) while this one unpickles and bins; the key names the entry.
            pool = ThreadPoolExecutor(max_workers=1)
            pending = pool.submit(cache_key, path, settings, None)
            pool.shutdown(wait=False)
        else:
            base = _entry(Path(cache_dir), path, cache_key(path, settings, Path(cache_dir)))
            hit = _read_entry(base)
            if hit is not None:
                return hit
    evals, pos, meta = read_tables(path, positions=True, steps_per_epoch=steps_per_epoch)
    e = list(edges) or None
    binned = bin_by_rank(evals, e)
    rank = evals["rank"].to_numpy()
    lut = np.zeros(int(rank.max()) + 1, bool)  # a lookup table beats isin on 5M rows
    lut[[r for r in settings["ranks"] if r < len(lut)]] = True
    sel = evals[lut[rank]].reset_index(drop=True)
    pos_binned = bin_by_rank(pos, e) if pos is not None else None
    crossings = rank_crossings(evals, levels)
    matched = matched_loss(evals, e, per_decade)
    L = meta.get("L")
    memo = memorized_bits(evals, L, meta.get("n_params")) if L and L >= 2 else {}
    meta = {**meta, "memorized": memo, "floor_known": bool(crossings.attrs["floor_known"])}
    meta["steps"] = sorted(int(s) for s in binned["step"].unique())
    result = Processed(meta, binned, sel, pos_binned, crossings, matched)
    for t in (binned, sel, pos_binned, crossings, matched):
        if t is not None:
            t.attrs["run"] = meta
    if pending is not None:
        base = _entry(Path(cache_dir), path, pending.result())
    if base is not None:
        _write_entry(base, result)
    return result
