"""Shared builders for the analysis tests (imported by the other test_analysis_* files):
a fabricated phenomjax run directory with known bits, and a check of it."""

from __future__ import annotations

import numpy as np

from phenomjax.bayes import bayes_tables
from phenomjax.data import make_bits, zipf_weights
from phenomjax.runs import RunDir, RunLog

LN2 = float(np.log(2.0))


def make_run_dir(path, *, K=16, L=8, seed=3, steps=(0, 4, 16, 64), per_position=True,
                 heads=2, layers=1, positions="rope", lr=0.01, n_params=1234):  # fmt: skip
    """A run directory written with RunDir/RunLog, as the trainer writes it: losses decay from
    ln 2 towards each position's Bayes floor with the presentations of the sequence."""
    run = RunDir.create(
        path,
        kind="transformer",
        config={
            "data": {"K": K, "L": L, "alpha": 1.0, "seed": seed},
            "model": {"n_layer": layers, "n_head": heads, "head_dim": 4, "positions": positions},
            "optimizer": {"name": "adamw", "lr": lr},
        },
        seed=seed, K=K, L=L, alpha=1.0, batch=8, extra={"n_params": n_params},
    )  # fmt: skip
    floor = bayes_tables(make_bits(seed, K, L), zipf_weights(K, 1.0)).loss
    rng = np.random.default_rng(seed)
    log = RunLog(run)
    counts = np.zeros(K, np.int64)
    prev = 0
    for step in steps:
        for _ in range(step - prev):
            counts += np.bincount(rng.choice(K, 8, p=zipf_weights(K, 1.0)), minlength=K)
        prev = step
        pl = floor + (LN2 - floor) * np.exp(-counts[:, None] / 3.0)
        pa = (pl < 0.5).astype(np.float32)
        log.add_eval(
            step, counts.copy(), pl.mean(1), pa.mean(1),
            position_loss=pl if per_position else None,
            position_accuracy=pa if per_position else None,
        )  # fmt: skip
    log.add_train(np.asarray(steps), np.full(len(steps), 0.5), np.full(len(steps), lr))
    log.flush()
    run.set_status("complete")
    return run


def test_fabricated_run_dir_follows_the_contract(tmp_path):
    run = make_run_dir(tmp_path / "r")
    ev = run.read_evals()
    assert list(ev.columns[:5]) == ["step", "rank", "presentations", "loss", "accuracy"]
    assert len(ev) == 4 * 16 and run.read_positions() is not None
    assert run.manifest()["status"] == "complete"
