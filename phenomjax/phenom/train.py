"""Train one phenomenological model (docs/design.md §6) from a config into a run directory (§4).

    phenomjax train-phenom experiments/phenom.toml --set train.steps=5000 --out runs/phenom

    cfg = load_config(PhenomConfig, "experiments/phenom.toml", ["train.steps=500"])
    evals = train_phenom(cfg, "runs/phenom-500").read_evals()

The run follows the one lifecycle (phenomjax.runs.lifecycle, phenomjax.training): the training
loop runs on device in chunks, the host evaluates all K sequences at log-spaced steps, appends
the rows to evals.parquet (and positions.parquet), and checkpoints, so `--resume` continues to
the same numbers. In expected mode `presentations` is floor(t * B * p_m + 0.5) and the exact
float t * B * p_m is kept beside it as `expected_presentations`; in stochastic mode both are
the counts. What a run costs is phenom/cost.py; `PhenomConfig.cost()` names it.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..config import require_positive
from ..data import DataConfig, key_streams, make_bits, zipf_weights
from ..optim import OptimConfig, make_optimizer, schedule
from ..plan.estimate import Cost
from ..plan.memory import check_fits
from ..plan.timing import Probe
from ..runs import RunDir, rundir
from ..runs.lifecycle import open_run
from ..training import (
    Evaluation,
    Schedule,
    State,
    chunk_length,
    drive_run,
    make_advance,
    seedless,
)
from . import cost as phenom_cost
from . import model as phenom
from . import variants
from .modes import (
    FitData,
    expected_presentations,
    freeze_untrained,
    init_state,
    make_data,
    make_step,
    rounded_presentations,
)


@dataclasses.dataclass(frozen=True)
class _ModelFields:
    w: int = 6  # window: bits per embedded token; capacity grows with w (w ~ log2 K memorizes)
    d: int = 32  # width; logit tables have rank <= d; for w = 1 it changes only the dynamics
    param: Literal["full", "shared", "relative"] = "full"  # how A[n, i] is parameterized
    embedding: Literal["random", "learned", "spin"] = "random"  # fixed Gaussian, trained, or 2x-1
    init_scale: float = 0.1  # std of the initial A and B entries; sets the initial plateau
    variant: str = "stated"  # phenom/variants: "stated", "readout_forget", "v1", ...


# [model]: the shared fields, `variant`, then every variant's knobs (phenom/variants), so that
# `--set model.variant=v1 --set model.D_eff=64` and the old `model.forget` both load.
ModelSection = dataclasses.make_dataclass(
    "ModelSection",
    [(f.name, f.type, dataclasses.field(default=f.default)) for f in variants.knob_fields()],
    bases=(_ModelFields,),
    frozen=True,
    namespace={"__module__": __name__},
)


@dataclasses.dataclass(frozen=True)
class PhenomOptimConfig(OptimConfig):
    name: str = "adam"  # any optimizer of phenomjax.optim.OPTIMIZERS
    lr: float = 1e-2  # peak learning rate (the model is small and smooth: 1e-2 suits adam)


@dataclasses.dataclass(frozen=True)
class TrainSection:
    mode: Literal["expected", "stochastic"] = "expected"  # full p-weighted loss, or minibatches
    steps: int = 2000  # optimizer steps
    batch: int = 64  # B: nominal batch (expected: n_m = t B p_m) or minibatch size (stochastic)
    num_evals: int = 15  # evaluations of all K sequences, log-spaced in steps (plus step 0)
    eval_chunk: int = 4096  # sequences per evaluation block (memory, not results)
    max_chunk: int = 1000  # most steps per device dispatch (one host sync each)
    per_position: bool | Literal["auto"] = "auto"  # write positions.parquet; auto: if small

    def validate(self) -> None:
        require_positive(self, ("steps", "batch", "num_evals", "eval_chunk", "max_chunk"))


@dataclasses.dataclass(frozen=True)
class PhenomConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # K, L, alpha, seed
    model: ModelSection = dataclasses.field(default_factory=ModelSection)  # w, d, param, ...
    optimizer: PhenomOptimConfig = dataclasses.field(default_factory=PhenomOptimConfig)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)  # mode, steps, evals

    def validate(self) -> None:
        build_model(self).validate("model")

    def cost(self, members: int = 1, seeds: int = 1) -> Cost:
        """What one run (or a sweep group of `members` over `seeds` seeds) costs: what
        `phenomjax plan` reports and what train_phenom and sweep refuse before allocating."""
        model = build_model(self)
        return phenom_cost.cost(self, model, members=members, seeds=seeds,
                                probe=lambda: probe(self))  # fmt: skip


def build_model(cfg: PhenomConfig, **changes) -> phenom.PhenomModel:
    """The PhenomModel of cfg (N = L), with optional field changes (w, d, param for sweeps)."""
    m = dataclasses.replace(cfg.model, **changes)
    return phenom.PhenomModel(N=cfg.data.L, **{f.name: getattr(m, f.name) for f in
                                               dataclasses.fields(m)})  # fmt: skip


def wants_positions(cfg: PhenomConfig) -> bool:
    return rundir.wants_positions(cfg.train.per_position, cfg.data.K, cfg.data.L)


class Programs(NamedTuple):
    """One run's data and jitted programs, built once for train_phenom and its timing probe."""

    model: phenom.PhenomModel
    weights: np.ndarray  # (K,) float64 Zipf weights
    data: FitData
    init: Callable[[], State]  # the initial state
    advance: Callable[[State, int], tuple[State, jax.Array]]  # donates the state it is given
    metrics: Callable[[Any], list[np.ndarray]]  # params -> loss, accuracy[, per position both]
    per_position: bool


@functools.lru_cache(maxsize=8)
def _jitted(cfg: PhenomConfig):
    """(tx, advance, metrics) of `cfg`, once per process: a seed group, a resume or a probe of
    one config reuses the compilation."""
    model, tr = build_model(cfg), cfg.train
    like = jax.eval_shape(lambda: phenom.init_params(jax.random.key(0), model))
    tx = freeze_untrained(make_optimizer(cfg.optimizer, tr.steps), like, model)
    per_position, chunk = wants_positions(cfg), min(tr.eval_chunk, cfg.data.K)
    sequence_metrics = phenom.kernels_of(model)[1]
    metrics = jax.jit(lambda p, b: sequence_metrics(p, b, per_position=per_position, chunk=chunk))
    step = make_step(tx, mode=tr.mode, batch=tr.batch, model=model)
    return tx, make_advance(step, chunk_length(tr.max_chunk, tr.steps), donate=True), metrics


def programs(cfg: PhenomConfig) -> Programs:
    """The bits, the state's init, the jitted advance and the evaluation of `cfg`."""
    K, L, seed, tr = cfg.data.K, cfg.data.L, cfg.data.seed, cfg.train
    model = build_model(cfg)
    weights = zipf_weights(K, cfg.data.alpha)
    keys = key_streams(seed)
    data = make_data(make_bits(seed, K, L), weights, keys["batches"])
    per_position = wants_positions(cfg)
    tx, advance, metrics = _jitted(seedless(cfg))
    return Programs(
        model=model,
        weights=weights,
        data=data,
        init=lambda: init_state(keys["init"], model, tx, mode=tr.mode, K=K),
        advance=lambda s, n: advance(s, jnp.int32(n), data),
        metrics=lambda params: [np.asarray(x) for x in metrics(params, data.bits)],
        per_position=per_position,
    )


def train_phenom(
    cfg: PhenomConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
) -> RunDir:
    """Train the phenomenological model of `cfg`, writing the run directory `out` (force=True:
    into a folder phenomjax did not write, as runs/lifecycle.open_run allows)."""
    cfg.validate()
    check_fits(phenom_cost.memory(cfg, build_model(cfg)), "run")  # before anything is allocated
    p, tr = programs(cfg), cfg.train

    def evaluate(s: State, t: int) -> Evaluation:
        res = p.metrics(s["params"])
        if tr.mode == "stochastic":
            pres = np.asarray(s["counts"], np.int64)
            expected = pres.astype(np.float64)
        else:
            expected = expected_presentations(t, tr.batch, p.weights)
            pres = rounded_presentations(expected)
        pos = dict(position_loss=res[2], position_accuracy=res[3]) if p.per_position else {}
        return Evaluation(pres, res[0], res[1], extra={"expected_presentations": expected}, **pos)

    def extra(state: State) -> dict:
        return _manifest_extra(cfg, state["params"], p.model)

    with open_run(out, kind="phenom", cfg=cfg, init=p.init, resume=resume, extra=extra,
                  force=force) as opened:  # fmt: skip
        if opened.complete:
            return opened.run
        batch = tr.batch if tr.mode == "stochastic" else cfg.data.K  # sequences per step
        sched = Schedule.log_spaced(tr.steps, tr.num_evals, max_chunk=tr.max_chunk, batch=batch,
                                    desc=f"train-phenom {tr.mode}")  # fmt: skip
        lr = schedule(cfg.optimizer, tr.steps)
        return drive_run(opened, sched, advance=p.advance, evaluate=evaluate, learning_rate=lr,
                         progress=progress)  # fmt: skip


def probe(cfg: PhenomConfig) -> Probe:
    """The run's programs as train_phenom builds them, for `phenomjax plan`'s timing."""
    p = programs(cfg)
    return Probe(
        state=p.init(),
        advance=p.advance,
        evaluate=lambda s: p.metrics(s["params"]),
        chunk=chunk_length(cfg.train.max_chunk, cfg.train.steps),
        K=cfg.data.K,
        positions=cfg.data.L - 1,
        per_position=p.per_position,
        extra_columns=True,
    )


def _manifest_extra(cfg: PhenomConfig, params, model: phenom.PhenomModel) -> dict:
    """Manifest fields of a new phenom run: its mode, trained parameters and presentations."""
    mask = phenom.trainable_mask(params, model)
    return {
        "mode": cfg.train.mode,
        "n_params": sum(int(np.prod(v.shape)) for k, v in params.items() if mask[k]),
        "steps": cfg.train.steps,
        "presentations": (
            "counted"
            if cfg.train.mode == "stochastic"
            else "expected: floor(step * batch * p + 0.5); exact value in expected_presentations"
        ),
    }


# The names before `train-phenom` (issue 17): "fit" now means fitting a model to a run only.
_RENAMED = {"FitConfig": "PhenomConfig", "fit_phenom": "train_phenom"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"phenomjax.phenom.train.{name} is deprecated; use {new}",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
