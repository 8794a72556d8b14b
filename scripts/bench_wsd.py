"""The capacity search's budgets: one cosine run per budget against warmup-stable-decay
branches of one run (saturation.cooldown), side by side in one process on one (size, K, lr).

Both chains train every budget of the config's [saturation] section from an empty folder
(first_exposures doubled up to max_exposures), with the same warm-up (a share of the
min_exposures budget's steps), so that only the schedule differs. Prints, per budget, the
memorized bits of each chain and the gain over the budget before, then the wall time of each
chain, their ratio, and the optimizer steps each trained.

    python scripts/bench_wsd.py                                  # 1x1x8, K = 76, 1000..8000
    python scripts/bench_wsd.py --size 1,2,8 --K 251 --max-exposures 16000
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from phenomjax.capacity.config import CapacityConfig, Size
from phenomjax.capacity.ladder import batch_of, chain_jobs, run_job, run_row
from phenomjax.capacity.saturation import steps_for
from phenomjax.config import load_config
from phenomjax.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]


def _warmed(job, warm: int):
    opt = dataclasses.replace(job.cfg.optimizer, warmup_steps=warm)
    return dataclasses.replace(job, cfg=dataclasses.replace(job.cfg, optimizer=opt),
                               name=f"{job.name}-w{warm}")  # fmt: skip


def chain(cfg: CapacityConfig, size: Size, K: int, lr: float, runs: Path, cooldown: float):
    """Train the budgets of one chain in order; (rows, seconds, optimizer steps trained)."""
    sat = dataclasses.replace(cfg.saturation, cooldown=cooldown)
    cfg = dataclasses.replace(cfg, saturation=sat)
    jobs = chain_jobs(cfg, size, K, lr)
    if not cooldown:  # the cosine runs warm up like the WSD chain: min_exposures' share
        warm = round(sat.warmup_frac * steps_for(K, batch_of(cfg, K), sat.min_exposures))
        jobs = [_warmed(j, warm) for j in jobs]
    t = time.perf_counter()
    rows = []
    for job in jobs:
        run_job(job, runs)
        rows.append(run_row(job, RunDir(runs / job.name), cfg.plateau)[0])
    seconds = time.perf_counter() - t
    if cooldown:
        steps = jobs[-1].cfg.train.steps + sum(j.cfg.optimizer.decay_steps for j in jobs[:-1])
    else:
        steps = sum(j.cfg.train.steps for j in jobs)
    return rows, seconds, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "experiments" / "capacity_cpu.toml"))
    p.add_argument("--size", default="1,1,8", help="n_layer,n_head,head_dim")
    p.add_argument("--K", type=int, default=76)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--max-exposures", type=int, default=8000)
    p.add_argument("--cooldown", type=float, default=0.2)
    p.add_argument("--out", default=None, help="where the runs go (default: a temp dir)")
    a = p.parse_args()
    cfg = load_config(CapacityConfig, a.config, [f"saturation.max_exposures={a.max_exposures}"])
    size = Size(*(int(x) for x in a.size.split(",")))
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_wsd-"))
    print(f"{a.size} K={a.K} lr {a.lr}, budgets {cfg.saturation.first_exposures}.."
          f"{a.max_exposures} exposures ({out})", flush=True)  # fmt: skip
    cos, cos_s, cos_steps = chain(cfg, size, a.K, a.lr, out / "cosine", 0.0)
    wsd, wsd_s, wsd_steps = chain(cfg, size, a.K, a.lr, out / "wsd", a.cooldown)
    print("\n| exposures | cosine bits | gain | wsd bits | gain |\n|---|---|---|---|---|")
    for i, (c, w) in enumerate(zip(cos, wsd, strict=True)):
        g = [f"{r[i]['memorized_bits'] / r[i - 1]['memorized_bits'] - 1:+.1%}" if i else "-"
             for r in (cos, wsd)]  # fmt: skip
        print(f"| {c['exposures']} | {c['memorized_bits']:.0f} | {g[0]} | "
              f"{w['memorized_bits']:.0f} | {g[1]} |")  # fmt: skip
    print(f"\ncosine chain {cos_s:8.1f} s, {cos_steps} steps")
    print(f"wsd chain    {wsd_s:8.1f} s, {wsd_steps} steps (cooldown {a.cooldown})")
    print(f"wsd / cosine: {wsd_s / cos_s:.2f}x the time, {wsd_steps / cos_steps:.2f}x the steps")


if __name__ == "__main__":
    main()
