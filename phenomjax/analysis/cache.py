"""Processed tables cached as parquet, keyed by what they are computed from.

key = sha256(input bytes, the settings that shape the tables, the package version). For a
legacy pickle the input is the file; for a run directory manifest.json, evals.parquet and
positions.parquet. Modification times play no part, so a changed byte is never served stale.

A cache entry is <name>-<key>.{binned,ranks,positions}.parquet plus <name>-<key>.json, written
last, which holds the run metadata and the sha256 of each parquet: an entry whose files are
missing, cut short or altered does not match its record and is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..rundir import atomic_write_bytes, atomic_write_json
from .binning import bin_by_rank
from .load import is_run_dir, read_tables
from .summaries import memorized_bits

SCHEMA = 1  # bump when the cached tables change shape
PARTS = ("binned", "ranks", "positions")


@dataclasses.dataclass
class Processed:
    """One run, processed: binned per-sequence curves, the selected ranks' rows, per-position
    bins (None without per-position data), and metadata (incl. memorized bits)."""

    meta: dict[str, Any]
    binned: pd.DataFrame
    ranks: pd.DataFrame
    positions: pd.DataFrame | None
    cached: bool = False


def _input_files(path: Path) -> list[Path]:
    if is_run_dir(path):
        names = ("manifest.json", "evals.parquet", "positions.parquet")
        return [path / n for n in names if (path / n).is_file()]
    return [path]


def cache_key(path: Path, settings: dict[str, Any], data: bytes | None = None) -> str:
    """sha256 over the input files' names and bytes, the settings and the package version."""
    h = hashlib.sha256()
    h.update(
        json.dumps({**settings, "version": __version__, "schema": SCHEMA}, sort_keys=True).encode()
    )
    for f in _input_files(path):
        h.update(f.name.encode() + b"\0")
        if data is not None and f == path:
            h.update(hashlib.sha256(data).digest())
        else:
            with open(f, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def _entry(cache_dir: Path, path: Path, key: str) -> Path:
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.resolve().name)
    return cache_dir / f"{name[:80]}-{key[:24]}"


def _read_entry(base: Path) -> Processed | None:
    record_path = base.with_suffix(base.suffix + ".json")
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        tables = {}
        for part in PARTS:
            digest = record["parts"].get(part)
            if digest is None:
                tables[part] = None
                continue
            raw = Path(f"{base}.{part}.parquet").read_bytes()
            if hashlib.sha256(raw).hexdigest() != digest:
                raise ValueError(f"{base}.{part}.parquet does not match its record")
            tables[part] = pd.read_parquet(io.BytesIO(raw))
        for t in tables.values():
            if t is not None:
                t.attrs["run"] = record["meta"]
        return Processed(
            record["meta"], tables["binned"], tables["ranks"], tables["positions"], True
        )
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        warnings.warn(f"cache entry {base} unreadable ({e}); rebuilding it", stacklevel=3)
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
    cache_dir: str | Path | None = "cache/processed_data",
    force: bool = False,
) -> Processed:
    """Load, bin and summarise one run, through the cache (cache_dir=None: no cache)."""
    path = Path(path)
    settings = {"edges": [int(e) for e in edges], "ranks": sorted({int(r) for r in ranks}),
                "steps_per_epoch": int(steps_per_epoch)}  # fmt: skip
    legacy = path.is_file()
    # A forced rebuild reads the pickle once and hashes those bytes; a lookup streams the hash.
    data = path.read_bytes() if legacy and (force or cache_dir is None) else None
    base = None
    if cache_dir is not None and path.exists():
        base = _entry(Path(cache_dir), path, cache_key(path, settings, data))
        if not force:
            hit = _read_entry(base)
            if hit is not None:
                return hit
    if legacy and data is None:
        data = path.read_bytes()
    evals, pos, meta = read_tables(path, positions=True, steps_per_epoch=steps_per_epoch, data=data)
    e = list(edges) or None
    binned = bin_by_rank(evals, e)
    sel = evals[evals["rank"].isin(settings["ranks"])].reset_index(drop=True)
    pos_binned = bin_by_rank(pos, e) if pos is not None else None
    meta = {**meta, "memorized": memorized_bits(pos if pos is not None else evals, meta.get("L"))}
    meta["steps"] = sorted(int(s) for s in binned["step"].unique())
    result = Processed(meta, binned, sel, pos_binned)
    for t in (binned, sel, pos_binned):
        if t is not None:
            t.attrs["run"] = meta
    if base is not None:
        _write_entry(base, result)
    return result
