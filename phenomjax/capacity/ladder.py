"""The capacity ladder (docs/design.md §9): plan the runs, train each to its plateau (or reuse
it), and read one row per run.

Every run is an ordinary run directory under `<out>/runs/`, named by its size, K, alpha and a
short hash of everything that changes its numbers (for transformer runs, the plateau rule too,
since it decides where a run ends). A second call reuses runs that finished (complete, or
failed on a non-finite loss) with the same config, resumes runs left `running` from their
checkpoint, and trains the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.load import load_run
from ..analysis.summaries import memorized_bits
from ..config import to_dict
from ..data import DataConfig
from ..errors import NonFiniteLossError
from ..phenom.train import ModelSection, PhenomConfig, PhenomOptimConfig, TrainSection, train_phenom
from ..runs import RunDir, jsonable
from ..runs.reuse import claim, remove_owned
from ..transformer.train import TrainConfig, train
from .config import CapacityConfig, PlateauSection
from .plateau import converged_step, loss_curve, stop_rule

MODELS = ("transformer", "phenom")


@dataclasses.dataclass(frozen=True)
class Job:
    model: str  # "transformer" or "phenom"
    name: str  # the run directory's name under <out>/runs
    cfg: Any  # TrainConfig or PhenomConfig
    size: dict[str, int]  # n_layer, n_head, head_dim (transformer) or w, d (phenom)

    @property
    def data(self) -> DataConfig:
        return self.cfg.data


def _digest(*parts: Any) -> str:
    text = json.dumps(jsonable(parts), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _transformer_job(cfg: CapacityConfig, size, K: int, alpha: float) -> Job:
    data = DataConfig(K=K, L=cfg.ladder.L, alpha=alpha, seed=cfg.ladder.seed)
    model = dataclasses.replace(
        cfg.model, n_layer=size.n_layer, n_head=size.n_head, head_dim=size.head_dim
    )
    tc = TrainConfig(data=data, model=model, optimizer=cfg.optimizer, train=cfg.train)
    tag = f"t{size.n_layer}x{size.n_head}x{size.head_dim}-K{K}-a{alpha:g}"
    name = f"{tag}-{_digest(to_dict(tc), to_dict(cfg.plateau))}"
    return Job("transformer", name, tc, dataclasses.asdict(size))


def _phenom_job(cfg: CapacityConfig, size, K: int) -> Job:
    p = cfg.phenom
    data = DataConfig(K=K, L=cfg.ladder.L, alpha=cfg.ladder.alpha, seed=cfg.ladder.seed)
    fc = PhenomConfig(
        data=data,
        model=ModelSection(
            w=size.w, d=size.d, param=p.param, embedding=p.embedding, init_scale=p.init_scale
        ),
        optimizer=PhenomOptimConfig(lr=p.lr),
        train=TrainSection(
            mode="expected",
            steps=p.steps,
            batch=cfg.train.batch,
            num_evals=p.num_evals,
            per_position=False,
        ),
    )
    name = f"p-w{size.w}d{size.d}-K{K}-a{cfg.ladder.alpha:g}-{_digest(to_dict(fc))}"
    return Job("phenom", name, fc, dataclasses.asdict(size))


def plan(cfg: CapacityConfig, *, quick: bool = False) -> list[Job]:
    """The runs of the ladder, smallest size and K first: every size x K (uniform unless
    ladder.alpha says otherwise), every size x zipf.K with Zipf sampling, and every
    phenomenological (w, d) x K. quick: the smaller ladder of the [quick] section."""
    q = cfg.quick
    if quick and q.steps:
        cfg = dataclasses.replace(
            cfg,
            train=dataclasses.replace(cfg.train, steps=q.steps),
            phenom=dataclasses.replace(cfg.phenom, steps=q.steps),
        )
    sizes = cfg.ladder.sizes[: q.sizes] if quick else cfg.ladder.sizes
    Ks = sorted(set(q.K if quick else cfg.ladder.K))
    jobs = [_transformer_job(cfg, s, K, cfg.ladder.alpha) for s in sizes for K in Ks]
    if cfg.zipf.K and (q.zipf or not quick):
        jobs += [_transformer_job(cfg, s, K, cfg.zipf.alpha) for s in sizes for K in cfg.zipf.K]
    psizes = cfg.phenom.sizes[: q.phenom_sizes] if quick else cfg.phenom.sizes
    jobs += [_phenom_job(cfg, s, K) for s in psizes for K in Ks]
    return jobs


def run_job(job: Job, runs: Path, rule: PlateauSection, *, progress: bool = False) -> str:
    """Train `job` into runs/<name> unless it already finished; returns what happened:
    "reused", "resumed", "trained" or "failed" (a non-finite loss; the run keeps its evals)."""
    path = runs / job.name
    run = RunDir(path)
    resume = False
    if run.exists():
        run.check_resumable(job.model, to_dict(job.cfg))  # a different config is an error
        if run.manifest().get("status") in ("complete", "failed"):
            return "reused"
        if run.has_checkpoint():
            resume = True
        else:  # killed before its first checkpoint: nothing in it to keep (only ours goes)
            remove_owned(path)
    try:
        if job.model == "transformer":
            train(job.cfg, path, resume=resume, progress=progress, stop=stop_rule(rule))
        else:
            train_phenom(job.cfg, path, resume=resume, progress=progress)
    except NonFiniteLossError:
        return "failed"
    return "resumed" if resume else "trained"


def mark_converged(run: RunDir, rule: PlateauSection) -> dict[str, Any]:
    """Record in the manifest whether the run converged by the plateau rule and at which
    step (the stop hook's step when it ended the run); returns the manifest."""
    m = run.manifest()
    step = m.get("stopped_step") if m.get("stopped_early") else None
    if step is None:
        steps, loss, presentations = loss_curve(run.read_evals())
        step = converged_step(steps, loss, rule, presentations)
    fields = {"converged": step is not None, "converged_step": step}
    if any(m.get(k) != v for k, v in fields.items()):
        m = run.update_manifest(**fields)
    return m


def run_row(job: Job, run: RunDir, rule: PlateauSection) -> dict[str, Any]:
    """One capacity.csv row: the run's size, data, memorized bits at its last evaluation
    (`phenomjax.analysis.memorized_bits`: clipped per sequence, unclipped, the Bayes ceiling),
    bits per parameter (all parameters; the phenomenological model's trainable ones), whether
    it converged, and how much its memorized bits grew over the last doubling of steps."""
    m = mark_converged(run, rule)
    table = load_run(run.path)
    d = job.data
    mb = memorized_bits(table, d.L, m.get("n_params"))
    last = table[table["step"] == table["step"].max()]
    # how far from converged: the gain since the evaluation nearest half the final step
    steps_seen = np.unique(table["step"].to_numpy())
    half = steps_seen[np.argmin(np.abs(steps_seen - steps_seen[-1] / 2))]
    before = memorized_bits(table[table["step"] == half], d.L)["memorized_bits"]
    steps = job.cfg.train.steps
    return {
        "model": job.model,
        "run": job.name,
        **{k: job.size.get(k) for k in ("n_layer", "n_head", "head_dim", "w", "d")},
        "params": m.get("n_params"),
        "K": d.K,
        "L": d.L,
        "alpha": d.alpha,
        "dataset_bits": mb["dataset_bits"],
        "memorized_bits": mb["memorized_bits"],
        "memorized_bits_unclipped": mb["memorized_bits_unclipped"],
        "bits_ceiling": mb["bits_ceiling"],
        "bits_per_param": mb["bits_per_param"],
        "converged": bool(m["converged"]),
        "converged_step": m["converged_step"],
        # memorized bits gained over the last doubling of steps (0.2: a fifth more); NaN at 0
        "gain_last_doubling": mb["memorized_bits"] / before - 1 if before > 0 else float("nan"),
        "steps": mb["step"],
        "budget": steps,
        "final_loss": float(last["loss"].mean()),
        "status": m.get("status"),
    }


def run_ladder(
    cfg: CapacityConfig,
    out: str | Path,
    *,
    quick: bool = False,
    progress: bool = False,
    on_run: Callable[[int, int, Job, str, dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Run (or reuse) every job of `plan(cfg, quick=quick)` under out/runs; the capacity table,
    one row per run. on_run(i, n, job, what, row) is called after each run (for printing)."""
    runs = claim(claim(out, "capacity outputs") / "runs", "capacity runs")
    jobs = plan(cfg, quick=quick)
    rows = []
    for i, job in enumerate(jobs):
        what = run_job(job, runs, cfg.plateau, progress=progress)
        row = run_row(job, RunDir(runs / job.name), cfg.plateau)
        rows.append(row)
        if on_run is not None:
            on_run(i, len(jobs), job, what, row)
    table = pd.DataFrame(rows)
    for c in ("n_layer", "n_head", "head_dim", "w", "d", "converged_step"):  # blanks, not 1.0
        table[c] = table[c].astype("Int64")
    return table
