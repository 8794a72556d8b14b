"""Everything `phenomjax plan` reports about a config, as one JSON-ready dict.

    report = plan(load_config(TrainConfig, "experiments/small_cpu.toml"))
    report["params"], report["flops_per_step"], report["predicted_seconds"]

The config names its family through `cfg.cost(members=, seeds=)` (a plan.estimate.Cost), so
nothing here asks which model it is. The prediction for this machine adds the measured pieces
of a run (timing.py):

    startup + setup + compile (advance and evaluation)
      + dispatches x per-dispatch overhead + steps x step + evaluations x evaluation
      + sum over evaluations i of (fixed I/O + i x rows I/O)   (each flush rewrites all rows)
      + the command's final summary

An accelerator's projection replaces the steps and evaluations by the roofline of devices.py
and keeps the host pieces measured here (startup, setup, compile, I/O), which it does not model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..data import log_spaced_steps
from .devices import DEVICES, UTILIZATION, project_seconds
from .estimate import Cost, total
from .memory import available, fits, gib
from .timing import measure as measure_here
from .timing import n_chunks, process_age


def plan(
    cfg: Any,
    *,
    members: int = 1,
    seeds: int = 1,
    measure: bool = True,
    budget_s: float = 4.0,
    utilization: float = UTILIZATION,
    startup_s: float | None = None,
) -> dict[str, Any]:
    """Parameters, FLOPs, memory, measured and predicted time of a run config (any config
    with a `cost()`: TrainConfig, PhenomConfig).

    members > 1 plans a phenomenological sweep group of that many vmapped members over `seeds`
    seeds; its step and evaluation times are one member's scaled by `members` (the vmapped
    program does `members` times the work of one). measure=False skips the timing here.
    """
    cost: Cost = cfg.cost(members=members, seeds=seeds)
    grid = log_spaced_steps(cfg.train.steps, cfg.train.num_evals)
    report = _estimate(cfg, cost, len(grid), utilization)
    host_s = 0.0
    report["measured"] = None
    report["predicted_seconds"] = None
    if measure and report["fits"] and cost.probe is not None:
        startup = process_age() if startup_s is None else startup_s
        host_s = _predict_here(report, cfg, cost, grid, startup, budget_s)
    report["devices"] = _projections(cost, cfg.train.steps, len(grid), host_s, utilization)
    report["predicted_seconds_by_device"] = {d["name"]: d["total_s"] for d in report["devices"]}
    report["device_host_s"] = host_s
    return report


def _estimate(cfg: Any, cost: Cost, evals: int, utilization: float) -> dict[str, Any]:
    """The report's counts, FLOPs, traffic and memory (nothing measured)."""
    n = cost.members
    return {
        "kind": cost.kind,
        "what": cost.what,
        "K": cfg.data.K,
        "L": cfg.data.L,
        "steps": cfg.train.steps,
        "batch": cfg.train.batch,
        "evaluations": evals,
        "members": n,
        "seeds": cost.seeds,
        "params": cost.params,
        "trainable_params": cost.trainable,
        "flops_per_step": cost.step.flops * n,
        "flops_per_eval": cost.evaluation.flops * n,
        "bytes_per_step": cost.step.nbytes * n,
        "bytes_per_eval": cost.evaluation.nbytes * n,
        "kernels_per_step": cost.step.kernels,
        "memory": [dataclasses.asdict(p) for p in cost.parts],
        "peak_memory_bytes": total(cost.parts),
        "machine_memory": available()[2],
        "fits": fits(cost.parts),
        "utilization": utilization,
    }


def _predict_here(report: dict, cfg: Any, cost: Cost, grid, startup: float, budget: float):
    """Time the real programs here and add the predicted run time to `report`; returns the
    host seconds (startup, setup, compile, dispatches, I/O, summary) the projections keep."""
    m = measure_here(cost.probe, budget)
    n, steps, evals = cost.members, cfg.train.steps, len(grid)
    chunks = n_chunks(grid, steps, cfg.train.max_chunk)
    # a sweep writes one evaluation's curves per (group, eval); a run's flush rewrites them all
    io = sum(m["io_fixed_s"] + i * m["io_rows_s"] * (n if n > 1 else 1)
             for i in (range(1, evals + 1) if n == 1 else [1] * evals))  # fmt: skip
    pieces = {
        "startup_s": startup,
        "setup_s": m["setup_s"],
        "compile_s": m["compile_s"] + m["eval_compile_s"],
        "steps_s": steps * m["step_s"] * n,
        "evaluations_s": evals * m["eval_s"] * n,
        "dispatch_s": chunks * m["chunk_overhead_s"],
        "io_s": io,
        "summary_s": m["summary_s"],
    }
    report["measured"] = {**m, "dispatches": chunks, "startup_s": startup}
    report["predicted_breakdown"] = pieces
    report["predicted_seconds"] = float(sum(pieces.values()))
    return float(sum(v for k, v in pieces.items() if k not in ("steps_s", "evaluations_s")))


def _projections(cost: Cost, steps: int, evals: int, host_s: float, util: float) -> list[dict]:
    """Every named accelerator's roofline step and evaluation, and the whole run there."""
    n, out = cost.members, []
    for d in DEVICES:
        t_step = project_seconds(cost.step.flops * n, cost.step.nbytes * n, cost.step.kernels,
                                 d, util)  # fmt: skip
        t_eval = project_seconds(cost.evaluation.flops * n, cost.evaluation.nbytes * n,
                                 cost.evaluation.kernels, d, util)  # fmt: skip
        out.append(
            {
                "name": d.name,
                "peak_flops": d.peak_flops,
                "bandwidth": d.bandwidth,
                "memory": d.memory,
                "launch_s": d.launch_s,
                "step_s": t_step,
                "eval_s": t_eval,
                "total_s": steps * t_step + evals * t_eval + host_s,
                "fits": total(cost.parts) <= d.memory,
            }
        )
    return out


def _si(x: float, unit: str = "") -> str:
    for p, name in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {name}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 172800:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} days"


def format_plan(r: dict[str, Any]) -> str:
    """The report as the lines `phenomjax plan` prints."""
    out = [
        f"{r['what']}: K = {r['K']}, L = {r['L']}, {r['steps']} steps of batch {r['batch']}, "
        f"{r['evaluations']} evaluations",
        f"parameters        {r['params']:,}"
        + (f" ({r['trainable_params']:,} trained)" if r["trainable_params"] != r["params"] else "")
        + (" per member" if r["members"] > 1 else ""),
        f"FLOPs per step    {_si(r['flops_per_step'])}  ({_si(r['bytes_per_step'], 'B')} moved)",
        f"FLOPs per eval    {_si(r['flops_per_eval'])}  (all K sequences)",
        f"peak memory       {gib(r['peak_memory_bytes'])} "
        f"({'fits in' if r['fits'] else 'DOES NOT FIT in'} {r['machine_memory']})",
    ]
    for p in sorted(r["memory"], key=lambda p: -p["nbytes"]):
        out.append(f"  {p['name']:<52} {gib(p['nbytes']):>12}  {p['where']}")
    m = r["measured"]
    if m is not None:
        out += [
            f"measured here     step {m['step_s'] * 1e3:.3g} ms, evaluation {m['eval_s']:.3g} s, "
            f"compile {m['compile_s'] + m['eval_compile_s']:.3g} s "
            f"({m['steps_timed']} steps timed, spread {m['step_spread']:.0%}; compile excluded)",
            f"predicted here    {duration(r['predicted_seconds'])} for the whole run: "
            + ", ".join(f"{k[:-2]} {v:.3g} s" for k, v in r["predicted_breakdown"].items()),
        ]
        if r["kind"] == "sweep":
            out.append("  (a sweep's steps and evaluations are one member's times x members)")
    else:
        out.append("measured here     not measured" + ("" if r["fits"] else " (does not fit)"))
    out.append(
        f"projections (roofline at {r['utilization']:.0%} utilization + {r['kernels_per_step']:.0f}"
        " kernel launches per step; a projection, not a measurement"
        + ("; host pieces as measured here)" if r["measured"] else "; compute only)")
    )
    for d in r["devices"]:
        out.append(
            f"  {d['name']:<8} {_si(d['peak_flops'], 'FLOP/s')} bf16 dense, "
            f"{_si(d['bandwidth'], 'B/s')}: step {d['step_s'] * 1e3:.3g} ms, "
            f"evaluation {d['eval_s']:.3g} s, run {duration(d['total_s'])}"
            + ("" if d["fits"] else f" (needs more than its {gib(d['memory'])})")
        )
    return "\n".join(out)
