"""Fit the phenomenological model to the four CPU-scale experiments and compare them side by side.

    python scripts/fit_experiments.py                      # runs/<name>_cpu -> runs/<name>_cpu-fit
    python scripts/fit_experiments.py --grid demo          # the demo's small grid (faster)
    python scripts/fit_experiments.py --runs /data/runs --names small,large_lr

Experiments whose run directory is missing or not complete are skipped (and said so). Prints one
row per experiment (best settings, log-loss RMSE mean +- std over seeds, presentation scale,
accuracy RMSE, wall time) and writes the side-by-side figure of all fitted ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phenomjax.analysis.overlay import side_by_side
from phenomjax.demo import DEMO_GRID
from phenomjax.phenom.fit import fit_run, format_report
from phenomjax.runs import RunDir

EXPERIMENTS = ("small", "medium", "large_rope", "large_lr")


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
    grid = dict(DEMO_GRID) if args.grid == "demo" else {}
    pairs, names, rows = [], [], []
    for name in args.names.split(","):
        run = RunDir(root / f"{name}_cpu")
        if not run.exists() or run.manifest().get("status") != "complete":
            state = run.manifest().get("status") if run.exists() else "missing"
            print(f"{name}: {run.path} is {state}; skipped", flush=True)
            continue
        out = root / f"{name}_cpu-fit"
        rep = fit_run(run.path, out, progress=not args.no_progress, **grid)
        print(format_report(rep), flush=True)
        pairs.append((run.path, out))
        names.append(name)
        b = rep["best"]
        rows.append(
            f"{name:<11}{b['mode']:<11}{b['w']:>3g}{b['d']:>4g}{b['lr']:>9.2g}{b['scale']:>7.2g}"
            f"{rep['score_mean']:>9.4f} +- {rep['score_std']:.4f}{rep['shift']:>7.2f}"
            f"{rep['accuracy_rmse']:>8.4f}{rep['wall_time_s']['total_s']:>8.0f}"
        )
    if not rows:
        print("no complete experiment run found; train them first (experiments/*_cpu.toml)")
        return 1
    print(f"\n{'experiment':<11}{'mode':<11}{'w':>3}{'d':>4}{'lr':>9}{'scale':>7}"
          f"{'log-loss RMSE':>22}{'shift':>7}{'acc':>8}{'wall s':>8}")  # fmt: skip
    print("\n".join(rows))
    figs = Path(args.figures) if args.figures else root / "experiments-figures"
    sb = side_by_side(pairs, figs, names=names)
    print("side by side: " + ", ".join(str(x) for x in sb.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
