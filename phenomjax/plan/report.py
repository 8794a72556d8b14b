"""Everything `phenomjax plan` reports about a config, as one JSON-ready dict.

    report = plan(load_config(TrainConfig, "experiments/small_cpu.toml"))
    report["params"], report["flops_per_step"], report["predicted_seconds"]

The prediction for this machine adds the measured pieces of a run (timing.py):

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

from . import counts, memory
from .devices import DEVICES, UTILIZATION, project_seconds


def is_transformer(cfg: Any) -> bool:
    return hasattr(cfg.model, "n_layer")


def _evals(cfg) -> int:
    from ..data import log_spaced_steps

    return len(log_spaced_steps(cfg.train.steps, cfg.train.num_evals))


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
    """Parameters, FLOPs, memory, measured and predicted time of a TrainConfig or FitConfig.

    members > 1 plans a phenomenological sweep group of that many vmapped members over `seeds`
    seeds; its step and evaluation times are one member's scaled by `members` (the vmapped
    program does `members` times the work of one). measure=False skips the timing here.
    """
    from .timing import n_chunks, process_age

    startup = process_age() if startup_s is None else startup_s
    transformer = is_transformer(cfg)
    if transformer:
        params, opt = counts.transformer_shapes(cfg)
        n_params = trainable = counts.tree_size(params)
        step, ev = counts.transformer_work(cfg, n_params)
        parts = memory.transformer_parts(cfg, n_params, counts.tree_bytes(opt))
        members = seeds = 1
    else:
        model = counts.phenom_model(cfg)
        params, opt, trainable = counts.phenom_shapes(cfg, model)
        n_params = counts.tree_size(params)
        step, ev = counts.phenom_work(cfg, model, trainable, n_params)
        parts = memory.phenom_parts(
            cfg, model, counts.tree_bytes(params), counts.tree_bytes(opt), members, seeds
        )
    device_mem, host_mem, wording = memory.available()
    peak = memory.total(parts)
    fits = peak <= device_mem if device_mem == host_mem else (
        memory.total(parts, "device") <= device_mem and memory.total(parts, "host") <= host_mem
    )  # fmt: skip
    evals = _evals(cfg)
    steps = cfg.train.steps
    report: dict[str, Any] = {
        "kind": "transformer" if transformer else ("sweep" if members > 1 else "phenom"),
        "K": cfg.data.K,
        "L": cfg.data.L,
        "steps": steps,
        "batch": cfg.train.batch,
        "evaluations": evals,
        "members": members,
        "seeds": seeds,
        "params": n_params,
        "trainable_params": trainable,
        "flops_per_step": step.flops * members,
        "flops_per_eval": ev.flops * members,
        "bytes_per_step": step.nbytes * members,
        "bytes_per_eval": ev.nbytes * members,
        "kernels_per_step": step.kernels,
        "memory": [dataclasses.asdict(p) for p in parts],
        "peak_memory_bytes": peak,
        "machine_memory": wording,
        "fits": bool(fits),
        "utilization": utilization,
    }
    host_s = 0.0
    report["measured"] = None
    report["predicted_seconds"] = None
    if measure and fits:
        from .timing import time_phenom, time_transformer

        m = (time_transformer if transformer else time_phenom)(cfg, budget_s)
        chunks = n_chunks(_grid(cfg), steps, cfg.train.max_chunk)
        io = sum(m["io_fixed_s"] + i * m["io_rows_s"] * (members if members > 1 else 1)
                 for i in (range(1, evals + 1) if members == 1 else [1] * evals))  # fmt: skip
        host_s = startup + m["setup_s"] + m["compile_s"] + m["eval_compile_s"] + io
        host_s += m["summary_s"] + chunks * m["chunk_overhead_s"]
        pieces = {
            "startup_s": startup,
            "setup_s": m["setup_s"],
            "compile_s": m["compile_s"] + m["eval_compile_s"],
            "steps_s": steps * m["step_s"] * members,
            "evaluations_s": evals * m["eval_s"] * members,
            "dispatch_s": chunks * m["chunk_overhead_s"],
            "io_s": io,
            "summary_s": m["summary_s"],
        }
        report["measured"] = {**m, "dispatches": chunks, "startup_s": startup}
        report["predicted_breakdown"] = pieces
        report["predicted_seconds"] = float(sum(pieces.values()))
    by_device = {}
    report["devices"] = []
    for d in DEVICES:
        t_step = project_seconds(step.flops * members, step.nbytes * members, step.kernels, d,
                                 utilization)  # fmt: skip
        t_eval = project_seconds(ev.flops * members, ev.nbytes * members, ev.kernels, d,
                                 utilization)  # fmt: skip
        total = steps * t_step + evals * t_eval + host_s
        by_device[d.name] = total
        report["devices"].append(
            {
                "name": d.name,
                "peak_flops": d.peak_flops,
                "bandwidth": d.bandwidth,
                "memory": d.memory,
                "launch_s": d.launch_s,
                "step_s": t_step,
                "eval_s": t_eval,
                "total_s": total,
                "fits": peak <= d.memory,
            }
        )
    report["predicted_seconds_by_device"] = by_device
    report["device_host_s"] = host_s
    return report


def _grid(cfg):
    from ..data import log_spaced_steps

    return log_spaced_steps(cfg.train.steps, cfg.train.num_evals)


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
    what = {
        "transformer": "transformer training",
        "phenom": "phenomenological fit",
        "sweep": f"phenomenological sweep group of {r['members']} members",
    }[r["kind"]]
    out = [
        f"{what}: K = {r['K']}, L = {r['L']}, {r['steps']} steps of batch {r['batch']}, "
        f"{r['evaluations']} evaluations",
        f"parameters        {r['params']:,}"
        + (f" ({r['trainable_params']:,} trained)" if r["trainable_params"] != r["params"] else "")
        + (" per member" if r["members"] > 1 else ""),
        f"FLOPs per step    {_si(r['flops_per_step'])}  ({_si(r['bytes_per_step'], 'B')} moved)",
        f"FLOPs per eval    {_si(r['flops_per_eval'])}  (all K sequences)",
        f"peak memory       {memory.gib(r['peak_memory_bytes'])} "
        f"({'fits in' if r['fits'] else 'DOES NOT FIT in'} {r['machine_memory']})",
    ]
    for p in sorted(r["memory"], key=lambda p: -p["nbytes"]):
        out.append(f"  {p['name']:<52} {memory.gib(p['nbytes']):>12}  {p['where']}")
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
            + ("" if d["fits"] else f" (needs more than its {memory.gib(d['memory'])})")
        )
    return "\n".join(out)
