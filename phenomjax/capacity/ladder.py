"""The capacity runs (docs/design.md §9): the jobs (a transformer size at one K, learning rate
and budget; a phenomenological rung at one K), training each (or reusing it), and one row per run.

Every run is an ordinary run directory under `<out>/runs/`, named by its size, K, alpha, rate,
budget and a short hash of its config. Reuse follows `runs.reuse.ensure_run`: a finished run
with the same config is reused, one left `running` is resumed from its checkpoint, anything
else in its folder is an error and nothing is deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..analysis.load import load_run
from ..analysis.summaries import memorized_bits, sequence_bits
from ..config import to_dict
from ..data import DataConfig
from ..errors import ConfigError, NonFiniteLossError, RunDirError
from ..phenom.train import ModelSection, PhenomConfig, PhenomOptimConfig, TrainSection, train_phenom
from ..runs import RunDir, jsonable
from ..runs.reuse import ensure_run
from ..transformer import model as gpt
from ..transformer.train import Start, TrainConfig, branch_state, train
from .config import CapacityConfig, PlateauSection
from .plateau import converged_step, loss_curve

MODELS = ("transformer", "phenom")
# leaves that embed or normalize rather than compute: left out of the second parameter count
NOT_CORE = ("wte", "wpe", "ln1_g", "ln1_b", "ln2_g", "ln2_b", "lnf_g", "lnf_b")


@dataclasses.dataclass(frozen=True)
class Job:
    model: str  # "transformer" or "phenom"
    name: str  # the run directory's name under <out>/runs
    cfg: Any  # TrainConfig or PhenomConfig
    size: dict[str, int]  # n_layer, n_head, head_dim (transformer) or w, d (phenom)
    role: str = "bracket"  # bracket (a budget of a K), lr_sweep, zipf or phenom
    exposures: int | None = None  # the budget in presentations per sequence (transformer)
    trunk: Job | None = None  # warmup-stable-decay: the run this budget branches from
    branch_step: int | None = None  # ... at this step, where its own decay begins

    @property
    def data(self) -> DataConfig:
        return self.cfg.data


def _digest(*parts: Any) -> str:
    text = json.dumps(jsonable(parts), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def param_counts(model, L: int) -> tuple[int, int]:
    """(all parameters, those outside embeddings, positions and LayerNorm) of a GPT size, from
    the shapes of its real init (nothing is allocated)."""
    shapes = jax.eval_shape(lambda k: gpt.init_params(k, model, L), jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    sizes = [(path, int(np.prod(x.shape))) for path, x in flat]
    core = sum(
        n for path, n in sizes if not {getattr(k, "key", None) for k in path} & set(NOT_CORE)
    )
    return sum(n for _, n in sizes), core


def size_model(cfg: CapacityConfig, size):
    return dataclasses.replace(
        cfg.model, n_layer=size.n_layer, n_head=size.n_head, head_dim=size.head_dim
    )


def batch_of(cfg: CapacityConfig, K: int) -> int:
    """Sequences per step of a capacity run at K: all of them up to full_batch_max_K."""
    return K if K <= cfg.saturation.full_batch_max_K else cfg.train.batch


def _decay_start(steps: int, cooldown: float) -> int:
    """The step where a warmup-stable-decay budget of `steps` steps starts its decay."""
    return steps - max(1, round(cooldown * steps))


def transformer_job(
    cfg: CapacityConfig,
    size,
    K: int,
    lr: float,
    exposures: int,
    role: str = "bracket",
    eval_steps: tuple[int, ...] = (),
) -> Job:
    """One capacity run: full batch (each sequence once per step) up to full_batch_max_K, else
    batches of train.batch; steps for `exposures` presentations per sequence; warm-up then
    the configured decay (cosine to 0) over exactly those steps, or with saturation.cooldown
    the warmup-stable-decay schedule its chain shares (chain_jobs)."""
    from .saturation import steps_for

    sat = cfg.saturation
    batch = batch_of(cfg, K)
    steps = steps_for(K, batch, exposures)
    data = DataConfig(K=K, L=cfg.ladder.L, alpha=cfg.ladder.alpha, seed=cfg.ladder.seed)
    opt = dataclasses.replace(cfg.optimizer, lr=lr, warmup_steps=round(sat.warmup_frac * steps))
    if sat.cooldown:  # one warm-up for every budget, so that they share a stable phase
        warm = round(sat.warmup_frac * steps_for(K, batch, sat.min_exposures))
        start = _decay_start(steps, sat.cooldown)
        if start < warm:
            raise ConfigError(
                f"saturation: the {exposures}-exposure budget at K = {K} would start its decay "
                f"(step {start}) inside the warm-up (to step {warm}); expected first_exposures "
                "large enough, or a smaller warmup_frac or cooldown"
            )
        opt = dataclasses.replace(opt, warmup_steps=warm, decay="linear",
                                  decay_steps=steps - start)  # fmt: skip
    loop = dataclasses.replace(cfg.train, steps=steps, batch=batch, full_batch=batch == K,
                               eval_steps=eval_steps)  # fmt: skip
    tc = TrainConfig(data=data, model=size_model(cfg, size), optimizer=opt, train=loop)
    tag = f"t{size.n_layer}x{size.n_head}x{size.head_dim}-K{K}-a{data.alpha:g}-lr{lr:g}"
    name = f"{tag}-e{exposures}-{_digest(to_dict(tc))}"
    return Job("transformer", name, tc, dataclasses.asdict(size), role, exposures)


def chain_jobs(cfg: CapacityConfig, size, K: int, lr: float) -> list[Job]:
    """The budgets of one (size, K, lr), doubling (saturation.budgets). With cooldown, the
    largest budget's run is the trunk: it is also evaluated where each smaller budget's decay
    begins, and each smaller budget branches from it there (run_job), costing only its decay;
    every budget gets the numbers of its own run from step 0."""
    from .saturation import budgets, steps_for

    exposures = budgets(cfg.saturation)
    f = cfg.saturation.cooldown
    if not f:
        return [transformer_job(cfg, size, K, lr, e) for e in exposures]
    starts = [_decay_start(steps_for(K, batch_of(cfg, K), e), f) for e in exposures]
    trunk = transformer_job(cfg, size, K, lr, exposures[-1], eval_steps=tuple(starts[:-1]))
    branches = [
        dataclasses.replace(transformer_job(cfg, size, K, lr, e), trunk=trunk, branch_step=s)
        for e, s in zip(exposures[:-1], starts[:-1], strict=True)
    ]
    return [*branches, trunk]


def zipf_job(cfg: CapacityConfig, size, K: int, lr: float) -> Job:
    """A Zipf run of a size (presentations to memorize): train.steps of sampled batches."""
    data = DataConfig(K=K, L=cfg.ladder.L, alpha=cfg.zipf.alpha, seed=cfg.ladder.seed)
    warm = round(cfg.saturation.warmup_frac * cfg.train.steps)
    opt = dataclasses.replace(cfg.optimizer, lr=lr, warmup_steps=warm)
    tc = TrainConfig(data=data, model=size_model(cfg, size), optimizer=opt, train=cfg.train)
    tag = f"t{size.n_layer}x{size.n_head}x{size.head_dim}-K{K}-a{data.alpha:g}-lr{lr:g}"
    return Job("transformer", f"{tag}-{_digest(to_dict(tc))}", tc, dataclasses.asdict(size), "zipf")


def phenom_job(cfg: CapacityConfig, size, K: int) -> Job:
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
    return Job("phenom", name, fc, dataclasses.asdict(size), "phenom")


def _ensure(job: Job, runs: Path, progress: bool, **kw) -> str:
    path = runs / job.name
    trainer = train if job.model == "transformer" else train_phenom

    def fit(resume: bool) -> RunDir:
        return trainer(job.cfg, path, resume=resume, progress=progress, **kw)

    defaults = to_dict(type(job.cfg)())
    return ensure_run(path, to_dict(job.cfg), kind=job.model, train=fit, defaults=defaults)[1]


def _branch_start(job: Job, runs: Path, progress: bool) -> Start | None:
    """The trunk's state at the job's branch step, the trunk trained (or resumed) that far;
    None when it cannot be had (the trunk is past it, or failed): the job then trains from
    step 0, to the same numbers."""
    try:
        _ensure(job.trunk, runs, progress, stop_at=job.branch_step)
        return branch_state(job.cfg, runs / job.trunk.name, job.branch_step)
    except (NonFiniteLossError, RunDirError):
        return None


def run_job(job: Job, runs: Path, *, progress: bool = False) -> str:
    """Train `job` into runs/<name> unless it already finished (`ensure_run`); returns what
    happened: "reused", "resumed", "trained" or "failed" (a non-finite loss; the run keeps its
    evaluations). A budget with a trunk (chain_jobs) that is not finished first advances the
    trunk to its branch step and starts from there."""
    kw = {}
    if job.trunk is not None and not RunDir(runs / job.name).exists():
        if (start := _branch_start(job, runs, progress)) is not None:
            kw["start"] = start
    try:
        return _ensure(job, runs, progress, **kw)
    except NonFiniteLossError:
        return "failed"


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


def sequence_memorized(table, L: int) -> np.ndarray:
    """Memorized bits per sequence at the last evaluation, clipped at 0 (rank order)."""
    last = table[table["step"] == table["step"].max()].sort_values("rank")
    return np.clip(sequence_bits(last["loss"].to_numpy(np.float64), L), 0.0, None)


def run_row(job: Job, run: RunDir, rule: PlateauSection) -> tuple[dict[str, Any], np.ndarray]:
    """One row of runs.csv and the run's memorized bits per sequence. The row: size, data,
    rate and budget, memorized bits at the last evaluation (`analysis.memorized_bits`: clipped
    per sequence, unclipped, the Bayes ceiling), bits per parameter over all parameters. A
    phenomenological rung (constant rate) also gets the plateau rule's verdict and its gain
    over the last doubling of its own steps; a transformer budget's verdict is the next one's
    gain (search.py)."""
    m = run.manifest()
    table = load_run(run.path)
    d = job.data
    mb = memorized_bits(table, d.L, m.get("n_params"))
    row = {
        "model": job.model,
        "role": job.role,
        "run": job.name,
        **{k: job.size.get(k) for k in ("n_layer", "n_head", "head_dim", "w", "d")},
        "params": m.get("n_params"),
        "K": d.K,
        "L": d.L,
        "alpha": d.alpha,
        "lr": job.cfg.optimizer.lr,
        "exposures": job.exposures,
        "budget": job.cfg.train.steps,
        "steps": mb["step"],
        "dataset_bits": mb["dataset_bits"],
        "memorized_bits": mb["memorized_bits"],
        "memorized_bits_unclipped": mb["memorized_bits_unclipped"],
        "bits_ceiling": mb["bits_ceiling"],
        "bits_per_param": mb["bits_per_param"],
        "final_loss": float(table.loc[table["step"] == mb["step"], "loss"].mean()),
        "status": m.get("status"),
    }
    if job.model == "phenom":
        m = mark_converged(run, rule)
        steps_seen = np.unique(table["step"].to_numpy())
        half = steps_seen[np.argmin(np.abs(steps_seen - steps_seen[-1] / 2))]
        before = memorized_bits(table[table["step"] == half], d.L)["memorized_bits"]
        row["converged"] = bool(m["converged"])
        row["gain_last_doubling"] = mb["memorized_bits"] / before - 1 if before > 0 else np.nan
    return row, sequence_memorized(table, d.L)
