"""Fit the phenomenological model to the four CPU-scale experiments and compare them side by side.

    python scripts/fit_experiments.py                      # runs/<name>_cpu -> runs/<name>_cpu-fit
    python scripts/fit_experiments.py --grid demo          # the demo's small grid (faster)
    python scripts/fit_experiments.py --runs /data/runs --names small,large_lr

Experiments whose run directory is missing or not complete are skipped (and said so). Prints one
row per experiment (best settings, total, log-loss RMSE, presentation scale, accuracy RMSE,
whether the lag is reproduced (repro), wall time) and writes the side-by-side figure of all
fitted ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phenomjax.fitting import default_grid, fit_run, format_report, side_by_side
from phenomjax.runs import RunDir
from phenomjax.runs.reuse import claim

EXPERIMENTS = ("small", "medium", "large_rope", "large_lr")


def _row(name: str, rep) -> str:
    m, s = rep.best.member, rep.best.score
    return (f"{name:<11}{m.mode:<11}{m.optimizer:<9}{m.w:>3}{m.d:>4}{m.lr:>9.2g}{m.scale:>7.2g}"
            f"{s.total:>7.2f}{s.rmse:>9.4f}{s.shift:>7.2f}{s.accuracy_rmse:>8.4f}"
            f"{'yes' if rep.reproduction.reproduced else 'no':>6}"
            f"{rep.timings.total_s:>8.0f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs", help="folder of the <name>_cpu run directories")
    p.add_argument("--names", default=",".join(EXPERIMENTS), help="experiments to fit")
    p.add_argument("--grid", choices=("default", "demo"), default="default",
                   help="fit grid: phenomjax fit's default or the demo's smaller one")  # fmt: skip
    p.add_argument("--figures", default=None, help="side-by-side folder (default runs/...)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.runs)
    grid = default_grid("fit_demo" if args.grid == "demo" else "fit")
    pairs, names, rows = [], [], []
    for name in args.names.split(","):
        run = RunDir(root / f"{name}_cpu")
        if not run.exists() or run.manifest().get("status") != "complete":
            state = run.manifest().get("status") if run.exists() else "missing"
            print(f"{name}: {run.path} is {state}; skipped", flush=True)
            continue
        out = root / f"{name}_cpu-fit"
        rep = fit_run(run.path, out, grid, progress=not args.no_progress)
        print(format_report(rep), flush=True)
        pairs.append((run.path, out))
        names.append(name)
        rows.append(_row(name, rep))
    if not rows:
        print("no complete experiment run found; train them first (experiments/*_cpu.toml)")
        return 1
    print(f"\n{'experiment':<11}{'mode':<11}{'opt':<9}{'w':>3}{'d':>4}{'lr':>9}{'scale':>7}"
          f"{'total':>7}{'rmse':>9}{'shift':>7}{'acc':>8}{'repro':>6}{'wall s':>8}")  # fmt: skip
    print("\n".join(rows))
    figs = claim(Path(args.figures) if args.figures else root / "experiments-figures",
                 "the experiments' side-by-side figure")  # fmt: skip
    sb = side_by_side(pairs, figs, names=names)
    print("side by side: " + ", ".join(str(x) for x in sb.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
