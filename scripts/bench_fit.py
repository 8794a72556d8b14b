"""Benchmark of the fit: side by side in one process, the wall time of training a transformer
run, of `fit` with the default grid (two rates per optimizer, the gradient refinement, the
groups in one worker per core when that pays) and of the exhaustive grid of before (4 / 3 / 3
rates for adam / sgd / momentum, adamw at weight decay 0.1 and 1, 168 members, no refinement),
and the best score each finds.

    python scripts/bench_fit.py                         # the demo run (K = 512, 4000 steps)
    python scripts/bench_fit.py --config experiments/medium_cpu.toml --steps 1000
    python scripts/bench_fit.py --out /tmp/bench        # keep the runs and fits there
    python scripts/bench_fit.py --no-exhaustive         # the training and the default fit only

The transformer trains in this process on --train-cores cores (default 1, its fastest on a
2-core CPU: XLA's second thread slows these widths); each fit runs in a fresh process, as
`phenomjax fit` does, on every core, paying its own imports and compilations.

Prints the seconds of each, fit time / training time for both fits, the speed-up, and each
fit's best member and total (the refinement's surrogate before and after, for the default).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phenomjax.config import load_config
from phenomjax.configs import packaged
from phenomjax.fitting import FitReport, fit_run, format_report
from phenomjax.fitting.grid import OptimizerEntry, default_grid
from phenomjax.fitting.report import best_line
from phenomjax.transformer.train import TrainConfig, train
from phenomjax.workers import cores

OLD = (
    ("adam", (3e-5, 1e-4, 3e-4, 1e-3), (0.0,)),
    ("sgd", (0.3, 1.0, 3.0), (0.0,)),
    ("momentum", (0.03, 0.1, 0.3), (0.0,)),
    ("adamw", (3e-4, 1e-3), (0.1, 1.0)),
)


def exhaustive_grid():
    """The default grid of before: more rates, momentum and adamw at weight decay 0.1 too (168
    members), every member to the end, no refinement (its groups on the same workers as the
    default's: the numbers are those of one process)."""
    g = default_grid()
    opts = tuple(OptimizerEntry(name=n, lr=lr, weight_decay=wd) for n, lr, wd in OLD)
    grid = dataclasses.replace(g.grid, halving=False, refine_steps=0)
    return dataclasses.replace(g, grid=grid, optimizers=opts)


def cold() -> None:
    """Forget every compiled program, so that each fit pays its own compilations (the second
    would otherwise reuse the first's, phenomjax caches them per config in a process)."""
    import jax

    from phenomjax.phenom import sweep, train
    from phenomjax.transformer import train as transformer_train

    jax.clear_caches()
    for cached in (sweep._metrics_program, train._jitted, transformer_train._advance):
        cached.cache_clear()


def timed(fn):
    cold()
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def fit_process(run: Path, out: Path, exhaustive: bool, progress: bool):
    """(report, seconds) of a fit in a fresh process, as `phenomjax fit` runs: its JAX sees
    every core (this process's XLA started its threads on --train-cores) and pays its own
    imports and compilations."""
    cmd = [sys.executable, __file__, "--fit", str(run), str(out)]
    cmd += ["--exhaustive"] * exhaustive + ["--progress"] * progress
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return FitReport.load(out / "report.json"), time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fit", nargs=2, metavar=("RUN", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--exhaustive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, help="a training config (default: the demo's)")
    p.add_argument("--steps", type=int, default=0, help="train.steps (0: the config's)")
    p.add_argument("--out", default=None, help="where runs and fits go (default: a temp dir)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--train-cores", type=int, default=1,
                   help="cores the transformer trains on (default 1: its fastest here, XLA's "
                   "second thread slows these widths); the fits get every core")  # fmt: skip
    p.add_argument("--no-exhaustive", action="store_true",
                   help="the training and the default fit only (the exhaustive grid's best is "
                   "deterministic: a run of it on this code gives the same number)")  # fmt: skip
    a = p.parse_args()
    if a.fit:  # one fit, in this fresh process (fit_process)
        grid = exhaustive_grid() if a.exhaustive else None
        fit_run(a.fit[0], a.fit[1], grid, progress=a.progress)
        return
    over = [f"train.steps={a.steps}"] if a.steps else []
    cfg = load_config(TrainConfig, a.config or packaged("demo"), over)
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_fit-"))
    d, t = cfg.data, cfg.train
    print(f"run: K={d.K} L={d.L} batch {t.batch} steps {t.steps} ({out / 'run'})", flush=True)
    every = cores()
    os.sched_setaffinity(0, set(every[: a.train_cores]))
    run, train_s = timed(lambda: train(cfg, out / "run", progress=a.progress))
    os.sched_setaffinity(0, set(every))
    print(f"train ({a.train_cores} of {len(every)} cores) {train_s:8.1f} s", flush=True)
    new, new_s = fit_process(run.path, out / "fit-new", False, a.progress)
    print(f"fit (default, jobs: one per core when it pays) {new_s:8.1f} s", flush=True)
    if a.no_exhaustive:
        rep = new.timings
        print(
            f"fit / train {new_s / train_s:5.2f} ({new.settings.cost.members} members; sweeps "
            f"{rep.sweep_s:.1f} s, refit {rep.refit_s:.1f} s, refine {rep.refine_s:.1f} s)"
        )
        print(f"best (default): {best_line(new)}")
        print("\n-- the default fit's report --\n" + format_report(new))
        return
    old, old_s = fit_process(run.path, out / "fit-old", True, a.progress)
    for name, rep, s in (("fit (default)", new, new_s), ("fit (exhaustive)", old, old_s)):
        members = rep.settings.cost.members
        print(f"{name:<22}{s:8.1f} s  fit / train {s / train_s:5.2f}  ({members} members; "
              f"sweeps {rep.timings.sweep_s:.1f} s, refit {rep.timings.refit_s:.1f} s, refine "
              f"{rep.timings.refine_s:.1f} s)")  # fmt: skip
    print(f"speed-up of the default over the exhaustive grid: {old_s / new_s:.2f}x")
    for name, rep in (("default", new), ("exhaustive", old)):
        print(f"best ({name}): {best_line(rep)}")
    print(
        f"best total: default {new.best.score.total:.3f}, exhaustive "
        f"{old.best.score.total:.3f} (ratio {new.best.score.total / old.best.score.total:.3f})"
    )
    print("\n-- the default fit's report --\n" + format_report(new))


if __name__ == "__main__":
    main()
