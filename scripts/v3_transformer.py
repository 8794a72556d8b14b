"""V3 against V1 on the transformer (docs/design.md §6, "The protocol"): one regime of the map
trained twice per seed, on its Zipf data and on the same data with the tail replaced by one
constant sequence of the same mass (data.head_and_constant_tail: ranks 0-9 kept).

Cross-talk from the unlearned tail (V3) needs many tail sequences, so it predicts that the lag
of ranks 5-9 vanishes on the cut data; deflation by the more frequent ranks in a finite shared
readout (V1) predicts that it stays, since ranks 0-4 are still there. Both arms run the same
code (the regime's config, its seeds, its batches' key), so only the data differ. The lag is
analysis.lag's: presentations to reach each level of normalized excess loss over the Bayes
floor, bin median over ranks 0-4's.

    python scripts/v3_transformer.py [--regime l2h2d8-K1024] [--out docs/regime/v3_tail.csv]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from tqdm import tqdm

from phenomjax.analysis.lag import bin_lag, rank_crossings
from phenomjax.bayes import per_sequence_floor
from phenomjax.config import load_config
from phenomjax.data import (
    head_and_constant_tail,
    key_streams,
    log_spaced_steps,
    make_bits,
    zipf_cdf,
    zipf_weights,
)
from phenomjax.errors import PhenomjaxError
from phenomjax.regime import RegimeConfig, regimes
from phenomjax.runs.storage import atomic_write
from phenomjax.training.step import seedless
from phenomjax.transformer import train as tt

HEAD = 10  # ranks kept by the cut arm: the top bin (0-4) and the bin whose lag is read (5-9)


def train_arm(cfg, bits: np.ndarray, weights: np.ndarray, label: str) -> pd.DataFrame:
    """Train cfg's transformer on (bits, weights) and evaluate every sequence at eval_steps:
    the evaluations table (step, rank, presentations, loss in nats, floor) of analysis.lag, at
    the steps a run directory evaluates."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, K=len(bits)))
    advance = tt._advance(seedless(cfg), None)
    cdf, key = zipf_cdf(weights), key_streams(cfg.data.seed)["batches"]
    xb = jax.numpy.asarray(bits, jax.numpy.int32)
    floor = per_sequence_floor(bits, weights)[0]
    chunk = max(1, min(cfg.train.max_chunk, cfg.train.steps))
    state, done, parts = tt.init_state(cfg), 0, []
    for s in tqdm(log_spaced_steps(cfg.train.steps, cfg.train.num_evals), desc=label, leave=False):
        while done < s:
            n = min(chunk, int(s) - done)
            state, _ = advance(state, n, xb, cdf, key)
            done += n
        nll, _ = tt.evaluate_positions(state["params"], xb, cfg)
        counts = np.asarray(state["counts"], np.int64)
        loss = np.asarray(nll).mean(axis=1)
        table = {"step": int(s), "rank": np.arange(len(bits)), "presentations": counts}
        parts.append(pd.DataFrame({**table, "loss": loss, "floor": floor}))
    return pd.concat(parts, ignore_index=True)


def head_lag(evals: pd.DataFrame, K: int) -> pd.DataFrame:
    """Lag ratio of ranks 5-9 over ranks 0-4 per level."""
    lag = bin_lag(rank_crossings(evals), edges=[0, 5, HEAD, K])
    return lag[lag["rank_lo"] == 5][["level", "lag_ratio", "n_reached"]]


def measure(cfg_path: str, regime: str) -> pd.DataFrame:
    """Both arms of every seed of `regime`: one row per (seed, data, level)."""
    found = {r.name: r for r in regimes(load_config(RegimeConfig, cfg_path))}
    if regime not in found:
        raise PhenomjaxError(f"--regime: expected one of {sorted(found)}, got {regime!r}")
    rows = []
    for cfg in found[regime].configs:
        d = cfg.data
        bits, w = make_bits(d.seed, d.K, d.L), zipf_weights(d.K, d.alpha)
        arms = {"zipf": (bits, w), "head + constant tail": head_and_constant_tail(bits, w, HEAD)}
        for data, (b, ww) in arms.items():
            ev = train_arm(cfg, b, ww, f"seed {d.seed} {data}")
            rows.append(head_lag(ev, len(b)).assign(regime=regime, seed=d.seed, data=data))
    return pd.concat(rows, ignore_index=True)


def summary(t: pd.DataFrame) -> pd.DataFrame:
    """Per (data, level): the seeds' ratios, their geometric mean and whether all exceed 1."""
    out = []
    for (data, level), g in t.groupby(["data", "level"], sort=False):
        r = g["lag_ratio"].to_numpy(np.float64)
        ok = np.isfinite(r) & (r > 0)
        out.append({"data": data, "level": f"{level:.0%}",
                    "seeds": " ".join("-" if not np.isfinite(v) else f"{v:.2f}" for v in r),
                    "geo_mean": float(np.exp(np.log(r[ok]).mean())) if ok.all() else np.nan,
                    "lags_in_every_seed": bool(ok.all() and (r > 1).all())})  # fmt: skip
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="experiments/regime_cpu.toml", help="the regime map config")
    p.add_argument("--regime", default="l2h2d8-K1024", help="a regime of the map, <size>-K<K>")
    p.add_argument("--out", type=Path, help="CSV of the per-seed ratios")
    args = p.parse_args(argv)
    try:
        t = measure(args.config, args.regime)
    except PhenomjaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out is not None:
        atomic_write(args.out, lambda tmp: t.to_csv(tmp, index=False))
    print(summary(t).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
