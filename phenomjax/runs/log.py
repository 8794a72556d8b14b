"""The row accumulator of a run: evaluation, per-position and training rows, flushed atomically."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .rundir import RunDir


class RunLog:
    """Accumulates a run's evaluation and training rows; each flush rewrites the tables
    atomically, so a kill between flushes loses nothing that was flushed.

    On resume, rows after the checkpoint step are dropped (they will be recomputed to the same
    values, since every random draw is keyed by its step).
    """

    def __init__(self, run: RunDir, *, resume_step: int | None = None):
        self.run = run
        self._evals: list[pd.DataFrame] = []
        self._positions: list[pd.DataFrame] = []
        self._train: list[pd.DataFrame] = []
        if resume_step is not None:
            ev = run.read_evals()
            self._evals = [ev[ev.step <= resume_step]]
            pos = run.read_positions()
            if pos is not None:
                self._positions = [pos[pos.step <= resume_step]]
            tr = run.read_train()
            self._train = [tr[tr.step <= resume_step]]

    def evals(self) -> pd.DataFrame:
        """Every evaluation row so far (resumed ones included), one frame."""
        self._evals = [self._cat(self._evals)]
        return self._evals[0]

    def evaluated_steps(self) -> list[int]:
        steps: set[int] = set()
        for df in self._evals:
            steps.update(int(s) for s in df["step"].unique())
        return sorted(steps)

    def add_eval(
        self,
        step: int,
        presentations: np.ndarray,
        loss: np.ndarray,
        accuracy: np.ndarray,
        *,
        position_loss: np.ndarray | None = None,
        position_accuracy: np.ndarray | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """One evaluation of all K sequences: per-sequence (K,) and optional (K, L-1) arrays.

        `extra` adds per-sequence columns beyond the contract (e.g. expected_presentations).
        """
        K = len(loss)
        self._evals.append(
            pd.DataFrame(
                {
                    "step": np.full(K, step, np.int64),
                    "rank": np.arange(K, dtype=np.int32),
                    "presentations": np.asarray(presentations, np.int64),
                    "loss": np.asarray(loss, np.float32),
                    "accuracy": np.asarray(accuracy, np.float32),
                    **{k: np.asarray(v) for k, v in (extra or {}).items()},
                }
            )
        )
        if position_loss is not None:
            K, P = position_loss.shape
            self._positions.append(
                pd.DataFrame(
                    {
                        "step": np.full(K * P, step, np.int64),
                        "rank": np.repeat(np.arange(K, dtype=np.int32), P),
                        "position": np.tile(np.arange(1, P + 1, dtype=np.int16), K),
                        "presentations": np.repeat(np.asarray(presentations, np.int64), P),
                        "loss": np.asarray(position_loss, np.float32).ravel(),
                        "accuracy": np.asarray(position_accuracy, np.float32).ravel(),
                    }
                )
            )

    def add_train(
        self,
        steps: np.ndarray,
        losses: np.ndarray,
        learning_rates: np.ndarray,
        grad_norms: np.ndarray | None = None,
    ) -> None:
        cols = {
            "step": np.asarray(steps, np.int64),
            "train_loss": np.asarray(losses, np.float32),
            "learning_rate": np.broadcast_to(np.asarray(learning_rates, np.float32), len(steps)),
        }
        if grad_norms is not None:
            cols["grad_norm"] = np.asarray(grad_norms, np.float32)
        self._train.append(pd.DataFrame(cols))

    @staticmethod
    def _cat(parts: list[pd.DataFrame]) -> pd.DataFrame:
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def flush(self) -> None:
        """Rewrite train, positions and evals (evals last: it is what marks an eval done)."""
        # Concatenate once and keep the single frame, so flushes stay O(rows), not O(parts).
        if self._train:
            self._train = [self._cat(self._train)]
            if len(self._train[0]):
                self.run.write_train(self._train[0])
        if self._positions:
            self._positions = [self._cat(self._positions)]
            if len(self._positions[0]):
                self.run.write_positions(self._positions[0])
        if self._evals:
            self._evals = [self._cat(self._evals)]
            if len(self._evals[0]):
                self.run.write_evals(self._evals[0])
