#!/usr/bin/env python
"""Benchmark: the historical per-bin filter loop against phenomjax, on a paper-scale legacy log.

Writes (once; reused from --path) a legacy pickle with K = 100000, L = 100, 500 epochs and test
metrics every 10 epochs (50 evaluations, the per-sequence layout), then times in one process,
alternating rounds, medians reported:

  historical   pickle.load, then per evaluation a DataFrame and one boolean filter per rank
               bin (the historical process_experiment_data), then its pickle cache write
  cold         phenomjax.analysis.process_run(force=True): read + sha256, restricted unpickle,
               tidy table, vectorised binning, selected ranks, memorized bits, parquet cache
  cached       process_run again: the input's sha256 (re-hash: computed in full; else the
               digest remembered against inode/size/mtime/ctime), record check, parquet reads
  bin only     the binning kernels alone on the same tidy data (filter loop vs bin_by_rank)

and checks that both pipelines give the same binned means. Then, what a user waits for, each in
a fresh interpreter from start to exit (imports included), alternating, medians of
--process-rounds rounds, wall and CPU (user + sys of the child):

  python -c pass      the interpreter alone (the floor on this machine)
  pickle.load         `import pickle, numpy; pickle.load(f)`, the file read with no checks
  historical          the historical function above, in its own process (numpy, pandas only)
  phenomjax           `from phenomjax import load_run, bin_by_rank; bin_by_rank(load_run(p))`

    python scripts/bench_analysis.py [--path /tmp/legacy_K100000.pkl] [--rounds 3]
        [--process-rounds 5] [--no-in-process]
"""

from __future__ import annotations

import argparse
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

# phenomjax is imported in main(): the historical process imports this file for `historical`
# and must pay for numpy and pandas only, as the historical script did.


def historical(path: Path, cache_file: Path) -> pd.DataFrame:
    """The historical process_experiment_data + process_and_cache_data, minus the printing."""
    with open(path, "rb") as f:
        record = pickle.load(f)  # noqa: S301 - the historical code did exactly this
    rank_ranges = [0, 5, 10, 100, 200, 500, 1000]
    while rank_ranges[-1] < record["args"]["K"]:
        rank_ranges.append(rank_ranges[-1] + 1000)
    test_df_list, test_df_dict = [], defaultdict(list)
    for log in record["logs"]:
        if not (log.get("test_metrics") and len(log.get("test_metrics", {})) > 0):
            continue
        test_df = pd.DataFrame(log["test_metrics"])
        test_df["num_apppearances"] = np.asarray(log["num_apppearances"]) + 1e-10
        test_df_list.append(test_df)
        for i in range(len(rank_ranges) - 1):
            sel = (test_df["sequence_rank"] >= rank_ranges[i]) & (
                test_df["sequence_rank"] < rank_ranges[i + 1]
            )
            test_df_range = test_df[sel]
            for col in ("sequence_rank", "num_apppearances", "logsoftmaxloss", "accuracy"):
                test_df_dict[col].append(test_df_range[col].mean())
            test_df_dict["sequences_in_range"].append(f"{rank_ranges[i]}-{rank_ranges[i + 1]}")
            test_df_dict["epoch"].append(log["epoch"])
            test_df_dict["num_heads"].append(record["args"]["num_heads"])
            test_df_dict["num_layers"].append(record["args"]["num_layers"])
            test_df_dict["experiment_name"].append(record["args"].get("wandb_group_name", ""))
    all_df = pd.concat(test_df_list)
    args = record["args"]
    model_config = {  # as the historical code built it, one column per entry
        "n_heads": args.get("num_heads", "unknown"),
        "n_layers": args.get("num_layers", "unknown"),
        "hidden_size": args.get("num_hidden_features", "unknown"),
        "learning_rate": args.get("lr", "unknown"),
        "embedding_type": "rope" if "rope" in args.get("wandb_group_name", "") else "standard",
        "experiment_name": "bench",
    }
    for key, value in model_config.items():
        all_df[key] = [value] * len(all_df)
    out = pd.DataFrame(test_df_dict)
    with open(cache_file, "wb") as f:
        pickle.dump(out, f)
    return out


def filter_loop(table: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    """The historical kernel alone: a DataFrame per step, one boolean filter per bin."""
    rows = defaultdict(list)
    for step, t in table.groupby("step", sort=True):
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            sub = t[(t["rank"] >= lo) & (t["rank"] < hi)]
            for col in ("rank", "presentations", "loss", "accuracy"):
                rows[col].append(sub[col].mean())
            rows["step"].append(step)
    return pd.DataFrame(rows)


CPU: dict[str, list[float]] = defaultdict(list)  # process CPU seconds (all threads)


def timed(fn, *args, name: str = "", **kwargs):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    CPU[name].append(time.process_time() - c0)
    return time.perf_counter() - t0, out


def whole_processes(path: Path, work: Path, rounds: int) -> None:
    """Each pipeline in a fresh interpreter, start to exit, alternating; medians printed."""
    here = str(Path(__file__).resolve().parent)
    commands = {
        "python -c pass": "pass",
        "pickle.load": f"import pickle, numpy; pickle.load(open({str(path)!r}, 'rb'))",
        "historical": (
            f"import sys; sys.path.insert(0, {here!r}); from pathlib import Path; "
            f"from bench_analysis import historical; "
            f"historical(Path({str(path)!r}), Path({str(work / 'historical.pkl')!r}))"
        ),
        "phenomjax": (
            f"from phenomjax import load_run, bin_by_rank; bin_by_rank(load_run({str(path)!r}))"
        ),
    }
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    names = list(commands)
    for rnd in range(rounds):
        order = names if rnd % 2 == 0 else names[::-1]  # neither side always runs first
        for name in order:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", commands[name]], check=True)
            wall[name].append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        done = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in wall.items())
        print(f"process round {rnd + 1}: {done}")
    print(f"\nwhole process, start to exit, medians over {rounds} alternating rounds:")
    for name in names:
        print(f"  {name:<16} wall {statistics.median(wall[name]):7.2f} s"
              f"   CPU {statistics.median(cpu[name]):7.2f} s")  # fmt: skip
    h, p = (statistics.median(wall[k]) for k in ("historical", "phenomjax"))
    hc, pc = (statistics.median(cpu[k]) for k in ("historical", "phenomjax"))
    print(f"  phenomjax vs the historical process: {h / p:.2f}x faster (wall), "
          f"{hc / pc:.2f}x (CPU); target >= 2x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", type=Path, default=Path(tempfile.gettempdir()) / "legacy_K100000.pkl")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--process-rounds", type=int, default=5, help="whole-process rounds; 0: none")
    ap.add_argument("--no-in-process", action="store_true", help="whole-process rows only")
    ap.add_argument("--K", type=int, default=100000)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the log's writer
    from fixtures.legacy_logs import write_legacy_log

    if not args.path.is_file():
        t, _ = timed(write_legacy_log, args.path, K=args.K, L=100, epochs=500, test_every=10,
                     batch=256, iters_per_epoch=100, seed=0)  # fmt: skip
        print(f"wrote {args.path} in {t:.1f} s")
    size = args.path.stat().st_size / 2**20
    print(f"legacy log: {args.path} ({size:.0f} MiB), K={args.K}, L=100, 500 epochs, 50 evals")
    if not args.no_in_process:
        in_process(args)
    if args.process_rounds > 0:
        work = Path(tempfile.mkdtemp(prefix="bench_analysis_"))
        whole_processes(args.path, work, args.process_rounds)
        shutil.rmtree(work, ignore_errors=True)


def in_process(args: argparse.Namespace) -> None:
    """The rows timed inside this process (see the module docstring)."""
    from phenomjax import load_run
    from phenomjax.analysis import RANK_SELECTIONS, bin_by_rank, default_edges, process_run

    ranks = sorted({r for s in RANK_SELECTIONS.values() for r in s})
    work = Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    times = defaultdict(list)
    for rnd in range(args.rounds):
        t, hist = timed(historical, args.path, work / "historical.pkl", name="historical")
        times["historical"].append(t)
        t, cold = timed(process_run, args.path, ranks=ranks, cache_dir=work, force=True,
                        name="phenomjax cold")  # fmt: skip
        times["phenomjax cold"].append(t)
        (work / "digests.json").unlink(missing_ok=True)  # no remembered digest: full sha256
        t, hot = timed(process_run, args.path, ranks=ranks, cache_dir=work,
                       name="phenomjax cached, re-hash")  # fmt: skip
        assert hot.cached
        times["phenomjax cached, re-hash"].append(t)
        t, hot = timed(process_run, args.path, ranks=ranks, cache_dir=work, name="phenomjax cached")
        assert hot.cached
        times["phenomjax cached"].append(t)
        print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    # the binning kernels alone, on the same tidy table
    table = load_run(args.path)
    edges = default_edges(args.K)
    for _ in range(args.rounds):
        t, ref = timed(filter_loop, table, edges, name="bin only: filter loop")
        times["bin only: filter loop"].append(t)
        t, got = timed(bin_by_rank, table, edges, name="bin only: bin_by_rank")
        times["bin only: bin_by_rank"].append(t)
    # the same numbers, both ways
    h = hist.sort_values(["epoch", "sequence_rank"]).reset_index(drop=True)
    b = cold.binned.sort_values(["step", "rank_lo"]).reset_index(drop=True)
    assert len(h) == len(b), (len(h), len(b))
    np.testing.assert_allclose(b["loss"], h["logsoftmaxloss"], rtol=1e-5)
    np.testing.assert_allclose(b["accuracy"], h["accuracy"], rtol=1e-5)
    np.testing.assert_allclose(b["presentations"], h["num_apppearances"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got["loss"].to_numpy(), ref["loss"].to_numpy(), rtol=1e-6)
    print("check: historical and phenomjax binned means agree (rtol 1e-5)")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedians over {args.rounds} alternating rounds (wall; CPU of all threads):")
    for k, v in med.items():
        cpu = f"  (CPU {statistics.median(CPU[k]):.3f} s)" if k in CPU else ""
        print(f"  {k:<26} {v:8.3f} s{cpu}")
    print(f"  end to end, cold:   {med['historical'] / med['phenomjax cold']:6.1f}x faster")
    for k in ("phenomjax cached, re-hash", "phenomjax cached"):
        print(f"  end to end, {k[10:]:<17} {med['historical'] / med[k]:6.1f}x faster"
              f" ({med[k]:.3f} s; target < 0.5 s)")  # fmt: skip
    ratio = med["bin only: filter loop"] / med["bin only: bin_by_rank"]
    print(f"  binning kernel:     {ratio:6.1f}x faster")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
