"""Synthetic logs in the historical pickle layout, for tests, benchmarks and demos.

It mimics the historical trainer's bookkeeping exactly (presentations counted before each
epoch, evaluation at the start of every `test_every`-th epoch, per-position (K, L-1) arrays
when K < 10000 and per-sequence means with length = 50 otherwise) with made-up curves:
loss = ln 2 * exp(-presentations / tau) per position, accuracy drawn around it.
"""

from __future__ import annotations

import argparse
import collections
import pickle
from pathlib import Path

import numpy as np


def legacy_record(
    *,
    K: int,
    L: int,
    epochs: int,
    test_every: int,
    batch: int = 64,
    iters_per_epoch: int = 10,
    seed: int = 0,
    heads: int = 8,
    layers: int = 12,
    lr: float = 1e-3,
    group: str = "memo_feb26_zipf_num_heads_8_num_layers_12",
    args_as_namespace: bool = False,
    nan_every: int = 0,
) -> dict:
    """A legacy record {"args", "logs"} (K >= 10000: the per-sequence layout)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, K + 1)
    p /= p.sum()
    tau = np.linspace(2.0, 20.0, L - 1)  # later positions take longer (made up)
    args = {
        "K": K, "len_context": L, "batch_size": batch, "num_heads": heads, "num_layers": layers,
        "num_hidden_features": 8, "lr": lr, "wandb_group_name": group, "seed": seed,
        "num_iter_per_epoch": max(1, batch * iters_per_epoch // 1000),
        "sequence_sampling_distribution": "zipf", "optimizer": "Adam",
    }  # fmt: skip
    counts = np.zeros(K)
    logs = []
    for e in range(epochs):
        log = {"num_apppearances": counts.copy()}
        tm: dict = collections.defaultdict(list)
        if e % test_every == 0:
            x = counts[:, None] / tau[None, :]
            curve = 2e-3 + (np.log(2.0) - 2e-3) * np.exp(-x)
            loss = (curve * rng.uniform(0.9, 1.1, (K, L - 1))).astype(np.float32)
            acc = (rng.random((K, L - 1)) < 1.0 - 0.5 * np.exp(-x)).astype(np.float32)
            if nan_every:
                loss[::nan_every, 0] = np.nan
            ranks = np.broadcast_to(np.arange(K)[:, None], (K, L - 1))
            if K < 10000:
                tm["sequence_rank"] = ranks.astype(np.int64)
                tm["length"] = np.broadcast_to(np.arange(1, L), (K, L - 1)).astype(np.int64)
                tm["logsoftmaxloss"] = loss
                tm["accuracy"] = acc
            else:
                tm["sequence_rank"] = np.arange(K, dtype=np.int64)
                tm["length"] = 50
                tm["logsoftmaxloss"] = loss.mean(axis=1)
                tm["accuracy"] = acc.mean(axis=1)
        log["test_metrics"] = tm
        counts = counts + rng.multinomial(batch * iters_per_epoch, p)
        log.update({"train_loss": float(np.log(2.0) * np.exp(-e / 10)), "epoch": e, "lr": lr})
        logs.append(log)
    return {"args": argparse.Namespace(**args) if args_as_namespace else args, "logs": logs}


def write_legacy_log(path: str | Path, **kwargs) -> Path:
    """Write legacy_record(**kwargs) with pickle, as the historical trainer did."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(legacy_record(**kwargs), f)
    return path
