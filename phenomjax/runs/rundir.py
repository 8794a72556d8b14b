"""The run directory (docs/design.md §4), shared by transformer and phenomenological runs.

    runs/<name>/
      manifest.json      config, seed, kind, K, L, alpha, batch, versions, device, status, times
      evals.parquet      one row per (eval, sequence): step, rank, presentations, loss, accuracy
      positions.parquet  optional, one row per (eval, sequence, position)
      train.parquet      step, train_loss, learning_rate (and grad_norm where known)
      checkpoint/        what resume needs

Every write is atomic: a temporary file in the same folder, fsync, then os.replace, so a run
killed at any moment leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RunDirError
from .checkpoint import read_meta, read_state, real_folder, write_state
from .storage import atomic_write_json, atomic_write_parquet, jsonable, now
from .validate import check_columns, load_json, read_parquet

# positions.parquet is written by default ("auto") when one evaluation has at most this many
# (sequence, position) rows: about 50 MB of parquet over 15 evaluations.
AUTO_POSITION_ROWS = 2_000_000


def wants_positions(setting: bool | str, K: int, L: int) -> bool:
    """Whether a run writes positions.parquet: its per_position setting, "auto" by size."""
    return K * (L - 1) <= AUTO_POSITION_ROWS if setting == "auto" else bool(setting)


EVAL_COLUMNS = ("step", "rank", "presentations", "loss", "accuracy")
POSITION_COLUMNS = ("step", "rank", "position", "presentations", "loss", "accuracy")
TRAIN_COLUMNS = ("step", "train_loss", "learning_rate")
KINDS = ("transformer", "phenom")
STATUSES = ("running", "complete", "failed")
_DTYPES = {
    "step": np.int64,
    "rank": np.int32,
    "position": np.int16,
    "presentations": np.int64,
    "loss": np.float32,
    "accuracy": np.float32,
    "train_loss": np.float32,
    "learning_rate": np.float32,
    "grad_norm": np.float32,
}


# Config fields renamed since runs were written (dotted old name: new leaf name); a manifest
# that still has the old name compares as if it had the new one.
RENAMED = {"optimizer.momentum": "b1"}


def config_difference(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    where: str = "",
    defaults: Mapping[str, Any] | None = None,
) -> str | None:
    """The first dotted field where two config dicts differ, with both values; None if equal.

    A field missing from `old` but at its default (`defaults`, the same shape) in `new` is
    equal: the run predates that field, and the default is what it ran with. A field of `old`
    under a name since renamed (RENAMED) is compared under its new name."""
    old, new, defaults = jsonable(old), jsonable(new), jsonable(defaults or {})
    for name, leaf in RENAMED.items():
        section, _, k = name.rpartition(".")
        if where == (f"{section}." if section else "") and k in old and leaf not in old:
            old = {(leaf if key == k else key): v for key, v in old.items()}
    for k in sorted(set(old) | set(new)):
        x, y = old.get(k), new.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            d = config_difference(x, y, f"{where}{k}.", defaults.get(k))
            if d:
                return d
        elif k not in old and k in defaults and y == defaults[k]:
            continue
        elif x != y:
            return f"{where}{k} (run has {x!r}, config has {y!r})"
    return None


def conform(df: pd.DataFrame, columns: tuple[str, ...], *, name: str) -> pd.DataFrame:
    """Check the contract columns are present and cast them to their canonical dtypes."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RunDirError(f"{name}: missing columns {missing}; expected {list(columns)}")
    out = df.copy()
    for c in out.columns:
        if c in _DTYPES:
            out[c] = out[c].to_numpy().astype(_DTYPES[c])
    return out


def environment() -> dict[str, str]:
    """Package, jax and device versions for the manifest."""
    import jax

    from ..version import __version__

    dev = jax.devices()[0]
    return {
        "package_version": __version__,
        "jax_version": jax.__version__,
        "python_version": platform.python_version(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', dev.platform)}",
        "device_count": str(jax.device_count()),
    }


class RunDir:
    """A run directory: reads and atomic writes of its parts. Holds only its path."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def evals_path(self) -> Path:
        return self.path / "evals.parquet"

    @property
    def positions_path(self) -> Path:
        return self.path / "positions.parquet"

    @property
    def train_path(self) -> Path:
        return self.path / "train.parquet"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    # -- manifest ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        kind: str,
        config: Mapping[str, Any],
        seed: int,
        K: int,
        L: int,
        alpha: float,
        batch: int,
        extra: Mapping[str, Any] | None = None,
    ) -> RunDir:
        """Start a run directory with status=running. Refuses to clobber an existing run."""
        if kind not in KINDS:
            raise RunDirError(f"manifest.kind: expected one of {KINDS}, got {kind!r}")
        run = cls(path)
        if run.exists():
            raise RunDirError(
                f"{run.path}: a run already exists here{run._where()}; pass --resume to "
                "continue it (from step 0 if it has no checkpoint yet) or choose another --out"
            )
        run.path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "kind": kind,
            "config": dict(config),
            "seed": int(seed),
            "K": int(K),
            "L": int(L),
            "alpha": float(alpha),
            "batch": int(batch),
            "status": "running",
            "created": now(),
            "updated": now(),
            **environment(),
            **dict(extra or {}),
        }
        atomic_write_json(run.manifest_path, manifest)
        return run

    @classmethod
    def create_for(
        cls, path: str | os.PathLike, *, kind: str, cfg: Any, extra: Mapping[str, Any] | None = None
    ) -> RunDir:
        """create() from a run config with [data] and [train] sections (trainer and fitter)."""
        from ..config import to_dict

        d = cfg.data
        return cls.create(path, kind=kind, config=to_dict(cfg), seed=d.seed, K=d.K, L=d.L,
                          alpha=d.alpha, batch=cfg.train.batch, extra=extra)  # fmt: skip

    def check_resumable(
        self, kind: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> None:
        """Refuse to resume a run of another kind or config, naming the first differing field.
        Fields the run's manifest lacks count as equal when `config` has them at `defaults`."""
        m = self.manifest()
        if m.get("kind") != kind:
            raise RunDirError(f"{self.path}: holds a {m.get('kind')} run, not a {kind} run")
        d = config_difference(m.get("config", {}), config, defaults=defaults)
        if d:
            raise RunDirError(f"{self.path}: cannot resume with a different config: {d}")

    def manifest(self) -> dict[str, Any]:
        """manifest.json, a regular file of bounded size, depth and integers (validate.py)."""
        if not os.path.lexists(self.manifest_path):
            raise RunDirError(f"{self.manifest_path}: not found; is {self.path} a run directory?")
        m = load_json(self.manifest_path)
        if not isinstance(m, dict):
            raise RunDirError(
                f"{self.manifest_path}: expected a JSON object, got {type(m).__name__}"
            )
        return m

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        m = self.manifest()
        m.update(fields)
        m["updated"] = now()
        atomic_write_json(self.manifest_path, m)
        return m

    def set_status(self, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise RunDirError(f"manifest.status: expected one of {STATUSES}, got {status!r}")
        self.update_manifest(status=status, **fields)

    # -- tables --------------------------------------------------------------------------
    def _read(self, path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
        if not os.path.lexists(path):
            return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in columns})
        df = read_parquet(path, str(path))  # a FIFO or device is refused, not read
        check_columns(df, str(path))  # before conform's cast, which would wrap a huge rank
        return conform(df, columns, name=str(path))

    def read_evals(self) -> pd.DataFrame:
        return self._read(self.evals_path, EVAL_COLUMNS)

    def read_positions(self) -> pd.DataFrame | None:
        return (
            self._read(self.positions_path, POSITION_COLUMNS)
            if os.path.lexists(self.positions_path)
            else None
        )

    def read_train(self) -> pd.DataFrame:
        return self._read(self.train_path, TRAIN_COLUMNS)

    def write_evals(self, df: pd.DataFrame) -> None:
        atomic_write_parquet(self.evals_path, conform(df, EVAL_COLUMNS, name="evals"))

    def write_positions(self, df: pd.DataFrame) -> None:
        atomic_write_parquet(self.positions_path, conform(df, POSITION_COLUMNS, name="positions"))

    def write_train(self, df: pd.DataFrame) -> None:
        atomic_write_parquet(self.train_path, conform(df, TRAIN_COLUMNS, name="train"))

    # -- checkpoint ----------------------------------------------------------------------
    def save_checkpoint(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Arrays to checkpoint/state-<step>.npz, then meta.json naming it (checkpoint.write_state:
        meta.json is the commit point; a linked checkpoint folder is refused)."""
        write_state(self.checkpoint_dir, arrays, meta)

    def load_checkpoint(
        self, steps: int | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, meta) of the checkpoint, each file checked before use (checkpoint.read_meta,
        read_state): a step outside [0, steps], a bad header or dtype is one RunDirError."""
        meta_path = real_folder(self.checkpoint_dir) / "meta.json"
        if not os.path.lexists(meta_path):
            raise RunDirError(
                f"{self.checkpoint_dir}: no checkpoint yet (the run stopped before its first "
                "evaluation was saved); --resume starts such a run again from step 0"
            )
        meta = read_meta(meta_path, steps)
        state_path = self.checkpoint_dir / meta.get("state", "state.npz")
        if not os.path.lexists(state_path):
            raise RunDirError(f"{state_path}: named by {meta_path} but missing")
        return read_state(state_path, meta["sha256"]), meta

    def has_checkpoint(self) -> bool:
        return os.path.lexists(self.checkpoint_dir / "meta.json")

    def _where(self) -> str:
        """The suffix " (status S, checkpoint at step N)" for messages about this run."""
        try:
            status = self.manifest().get("status", "unknown")
            meta = real_folder(self.checkpoint_dir) / "meta.json"
            step = read_meta(meta)["step"] if self.has_checkpoint() else None  # never a FIFO
        except (RunDirError, OSError, ValueError, AttributeError):
            return ""
        saved = f"checkpoint at step {step}" if step is not None else "no checkpoint yet"
        return f" (status {status}, {saved})"
