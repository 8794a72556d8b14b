"""Vmapped sweeps of the phenomenological model (docs/design.md §6, "Fitting to an empirical run").

    phenomjax sweep experiments/phenom.toml --lr 3e-3,1e-2 --scale 0.03,0.1 --seeds 0,1 --w 4,6

    table = sweep(cfg, {"lr": [3e-3, 1e-2], "seed": [0, 1], "w": [4, 6]}, out="runs/sw")

Learning rates, initial scales and seeds are one jitted program: vmap over seeds (each seed has
its own bits, init key and batch key, exactly those of `train_phenom` with data.seed = seed; no
seed axis when there is one seed) around vmap over (lr, scale) pairs (the rate lives in the
optimizer state, optax.inject_hyperparams, built once outside vmap). The optimizers of one
family (optim.family: adam and adamw, sgd and momentum) share the program too: their b1, b2 and
weight decay live in the state beside the rate, and each optimizer may have its own rates
(`optimizer_lr`). w, d and the parameterization change shapes, and an optimizer of another
family changes the update rule, so they are outer Python loops ("groups"), one compiled program
each; so are the variant (`variant`, a name of phenom/variants) and every variant's knobs (`forget`,
`readout_scale`, `D_eff`, ...: the fields of its Knobs); each variant sweeps its own knobs,
the others keep their defaults (variants.combinations).

A member whose loss or update turns non-finite is frozen at its last finite parameters and marked
`diverged` (its curves after that step describe the frozen model); the sweep goes on. Only when
every member of a group has diverged does the group stop early.

Output folder:
    sweep.json      base config, axes (recorded_axes), column notes: `describe`
    sweep.parquet   one row per member: settings, final losses, `curves` (where its rows are)
    curves/         parquet dataset, one file per (group, eval) (each written atomically), one row
                    per (member, step, rank): member, step, rank, presentations (int64),
                    expected_presentations (float), loss, accuracy. Per-sequence rows are always
                    kept (the fitter bins them as it needs); read_sweep(out, members=[...]) reads
                    the rows of a few members only, which keeps K = 100000 sweeps readable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ..data import key_streams, make_bits, zipf_weights
from ..distributed import gather, is_main, make_mesh, place
from ..errors import ConfigError, DataError, NonFiniteLossError
from ..optim import family_settings, make_family, schedule, set_hyperparams
from ..plan.memory import check_fits
from ..runs import atomic_write_json, atomic_write_parquet
from ..runs.reuse import claim
from ..runs.validate import read_parquet
from ..training import Schedule, chunk_length, drive, make_advance
from ..workers import Workers, check_jobs, cores
from . import cost as phenom_cost
from . import model as phenom
from .axes import Group, describe, sweep_axes
from .axes import groups as outer_groups
from .modes import (
    FitData,
    expected_presentations,
    freeze_untrained,
    make_data,
    make_step,
    rounded_presentations,
    state_of,
)
from .train import PhenomConfig

CURVES = "curves"
# What a sweep writes into its folder (--force writes beside anything else, keeping it).
SWEEP_NAMES = ("sweep.json", "sweep.parquet", CURVES)
# FLOPs of a sweep's groups from which `jobs=None` starts workers: each costs a few seconds to
# start (a process importing JAX) and compiles its own programs, several seconds of this work
WORKERS_WORTH = 3e10


def sweep_optimizer(cfg: PhenomConfig) -> optax.GradientTransformation:
    """The injectable optimizer of cfg's family (optim.make_family: its rate and settings in
    its state); a configured warm-up / decay becomes a shape multiplying each member's rate
    (every optimizer of phenomjax.optim scales its update by the rate last)."""
    tx = make_family(cfg.optimizer)
    o = cfg.optimizer
    if o.warmup_steps > 0 or o.decay != "none":
        shape = schedule(o, cfg.train.steps)
        tx = optax.chain(tx, optax.scale_by_schedule(lambda c: shape(c) / o.lr))
    return tx


def _finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _guarded(step):
    """Wrap a fit step so a member that goes non-finite keeps its last finite parameters."""

    def guarded(state, *data):
        new, loss = step(state, *data)
        ok = state["live"] & jnp.isfinite(loss) & _finite(new["params"])
        # only the parameters are held: a dead member's optimizer state may go non-finite, but
        # its parameters never move again (selecting the optimizer state too costs 2x the traffic)
        new["params"] = jax.tree_util.tree_map(
            lambda a, b: jnp.where(ok, a, b), new["params"], state["params"]
        )
        new["live"] = ok
        new["diverged_step"] = jnp.where(state["live"] & ~ok, new["step"], state["diverged_step"])
        new["train_loss"] = jnp.where(ok, loss, state["train_loss"])
        return new, jnp.where(ok, loss, jnp.nan)

    return guarded


def _vmapped_step(step, model, like) -> Callable:
    """The members' step, vmapped over their states (data shared). The members of a group step
    in lockstep from one batch key, so they read member 0's step counter: in stochastic mode
    they draw one batch, not one each. A frozen embedding E (not trained: the "random" and
    "spin" embeddings) is the same array in every member (one init key), so they read member
    0's too. The rows' features are then built once per step, not once per member, and the
    logits of all members are one GEMM (12 members, K = 512, L = 16, w = 8, d = 8, one core:
    2.38 -> 1.30 ms an expected-mode step, 0.84 -> 0.74 ms a stochastic one). Each member
    keeps its own E and counter."""
    frozen = "E" in like and not phenom.trainable_mask(like, model)["E"]

    def shared(state, data, E, t):
        params = {**state["params"], "E": E} if frozen else state["params"]
        new, loss = step({**state, "params": params, "step": t}, data)
        if frozen:  # the optimizer's zero update of E, dropped
            new["params"] = {**new["params"], "E": state["params"]["E"]}
        return new, loss

    members = jax.vmap(_guarded(shared), (0, None, None, None))
    E = (lambda s: s["params"]["E"][0]) if frozen else (lambda s: None)
    return lambda states, data: members(states, data, E(states), states["step"][0])


def _shard_members(state, data: FitData, S: int, H: int, devices: int, flat: bool = False):
    """Split the members over a "sweep" mesh (docs/design.md §7): the (lr, scale) axis when the
    devices divide it, else the seed axis. Each member keeps its own keys, so its numbers do not
    depend on where it runs (jax #40232); XLA partitions the vmapped step with no collective but
    the progress line's minimum. flat: one seed, no seed axis (the members lead)."""
    mesh = make_mesh(devices, "sweep")
    if mesh is None:
        return state, data
    if H % mesh.size == 0:
        spec, data_spec = (P("sweep") if flat else P(None, "sweep")), P()
    elif S % mesh.size == 0:
        spec, data_spec = P("sweep"), P("sweep")
    else:
        raise ConfigError(
            f"sweep devices: {mesh.size} devices divide neither the {H} (lr, scale) members "
            f"nor the {S} seeds"
        )
    state = place(state, NamedSharding(mesh, spec))
    data = data._replace(
        bits=place(data.bits, NamedSharding(mesh, data_spec)),
        batches_key=place(data.batches_key, NamedSharding(mesh, data_spec)),
        weights=place(data.weights, NamedSharding(mesh, P())),
        cdf=place(data.cdf, NamedSharding(mesh, P())),
    )
    return state, data


class _Members(NamedTuple):
    """One group's vmapped program: S seeds x H (optimizer setting, lr, scale) members, as
    placed on the mesh."""

    state: dict  # the members' states, stacked (S, H, ...) or, with one seed, (H, ...)
    data: FitData  # the seeds' bits and batch keys (stacked over seeds unless flat)
    advance: Callable  # jitted advance(state, n, data) -> (state, best member's losses)
    metrics: Callable  # jitted metrics(params, bits) -> (loss, accuracy), members leading
    S: int
    H: int
    rows: tuple[tuple, ...] = ()  # (seed, optimizer setting, lr, scale) per member, in order


def take_members(vm: _Members, keep: Sequence[int]) -> _Members:
    """The members `keep` (indices into the member axis) of a one-seed group, their states as
    they are: a smaller vmapped batch (the jitted programs retrace once for the new size)."""
    if vm.S != 1:
        raise ValueError("take_members: only a one-seed group has a flat member axis")
    idx = jnp.asarray(np.asarray(keep, np.int32))
    state = jax.tree_util.tree_map(lambda x: x[idx], vm.state)
    return vm._replace(state=state, H=len(keep), rows=tuple(vm.rows[int(i)] for i in keep))


def draw_params(model, key: jax.Array, scale_H: jax.Array) -> dict:
    """The initial parameters of H members from one init key at their scales, (H, ...): each
    exactly phenom.init_params(key, model, scale=s).

    Every variant draws a leaf either independently of the scale or as s times a draw (its
    init's contract), so the members scale one draw at scale 1: an entry that the draw at
    scale 0 leaves unchanged is kept, the others multiplied by s (bit for bit s * x). The
    draw (its threefry takes seconds to compile on CPU) compiles once per model, reused by
    every group of that shape whatever its number of members, optimizer or mode."""
    zero, unit = _unit_draws(model, key)
    return _scaled(zero, unit, scale_H)


@functools.partial(jax.jit, static_argnums=0)
def _unit_draws(model, key: jax.Array) -> tuple[dict, dict]:
    return phenom.init_params(key, model, scale=0.0), phenom.init_params(key, model, scale=1.0)


@jax.jit
def _scaled(zero: dict, unit: dict, scale_H: jax.Array) -> dict:
    def one(s):
        return jax.tree_util.tree_map(lambda z, u: jnp.where(z == u, u, s * u), zero, unit)

    return jax.vmap(one)(scale_H)


@functools.lru_cache(maxsize=32)
def _metrics_program(model, chunk: int, flat: bool) -> Callable:
    """metrics(params, bits) of every member, jitted once per (model, chunk) in a process:
    every group of a shape (each optimizer family and mode) evaluates with one compilation."""
    sequence_metrics = phenom.kernels_of(model)[1]
    members = jax.vmap(lambda p, b: sequence_metrics(p, b, chunk=chunk), (0, None))
    if flat:
        return jax.jit(members)
    # lax.map over seeds bounds evaluation memory to one seed's members at a time (jax #1923)
    return jax.jit(lambda p, b: jax.lax.map(lambda pb: members(*pb), (p, b)))


def _members(group: Group, ax: Mapping[str, tuple], devices: int) -> _Members:
    """Build one group's members: every seed's data and keys (exactly those of train_phenom with
    data.seed = seed), its (optimizer setting, lr) rates x scale, and the vmapped step and
    evaluation."""
    cfg, model = group.cfg, group.model
    K, L, tr, seeds = cfg.data.K, cfg.data.L, cfg.train, ax["seed"]
    weights = zipf_weights(K, cfg.data.alpha)
    # One seed: no seed axis at all. vmapping a size-1 axis over the data turns every batch
    # gather into a batched gather, 1.9-3.2x slower per step (bench_phenom.py --grid-only).
    flat = len(seeds) == 1
    streams = [key_streams(s) for s in seeds]
    if flat:
        data = make_data(make_bits(seeds[0], K, L), weights, streams[0]["batches"])
    else:
        data = make_data(np.stack([make_bits(s, K, L) for s in seeds]), weights, None)
        data = data._replace(batches_key=jnp.stack([k["batches"] for k in streams]))
    init_keys = jnp.stack([k["init"] for k in streams])
    hyper = [(o, lr, sc) for (o, lr), sc in itertools.product(group.rates, ax["scale"])]
    lr_H = jnp.asarray([h[1] for h in hyper], jnp.float32)
    scale_H = jnp.asarray([h[2] for h in hyper], jnp.float32)
    settings = [family_settings(h[0]) for h in hyper]
    hp_H = {k: jnp.asarray([s[k] for s in settings], jnp.float32) for k in settings[0]}

    like = jax.eval_shape(lambda k: phenom.init_params(k, model), init_keys[0])
    tx = freeze_untrained(sweep_optimizer(cfg), like, model)

    def init_member(params, lr, hp):
        st = state_of(params, tx, mode=tr.mode, K=K)
        st["opt_state"] = set_hyperparams(st["opt_state"], learning_rate=lr, **hp)
        st["live"] = jnp.array(True)
        st["diverged_step"] = jnp.array(-1, jnp.int32)
        st["train_loss"] = jnp.array(jnp.nan, jnp.float32)
        return st

    init_members = jax.vmap(init_member)
    step = make_step(tx, mode=tr.mode, batch=tr.batch, model=model)
    members_step = _vmapped_step(step, model, like)

    metrics = _metrics_program(model, min(tr.eval_chunk, K), flat)
    if flat:
        state = jax.jit(init_members)(draw_params(model, init_keys[0], scale_H), lr_H, hp_H)
        vstep = members_step
    else:
        params = jax.vmap(draw_params, (None, 0, None))(model, init_keys, scale_H)
        state = jax.jit(jax.vmap(init_members, (0, None, None)))(params, lr_H, hp_H)
        data_axes = FitData(bits=0, weights=None, cdf=None, batches_key=0)
        vstep = jax.vmap(members_step, (0, data_axes))
    state, data = _shard_members(state, data, len(seeds), len(hyper), devices, flat)
    chunk = chunk_length(tr.max_chunk, tr.steps)
    advance = make_advance(vstep, chunk, loss_of=jnp.nanmin)  # progress: the best member
    rows = tuple(
        (int(sd), o, float(lr), float(sc)) for sd, (o, lr, sc) in itertools.product(seeds, hyper)
    )
    return _Members(state, data, advance, metrics, len(seeds), len(hyper), rows)


def group_members(group: Group, ax, devices: int = 1) -> _Members:
    """One outer-loop group's (axes.Group) members at step 0 (seed x (setting, lr) x scale,
    vmapped)."""
    return _members(group, ax, devices)


def evaluator(cfg: PhenomConfig, vm: _Members, ids, out: Path | None, gid: int, last: dict,
              on_rows: Callable[[pd.DataFrame], None] | None = None) -> Callable:  # fmt: skip
    """evaluate(state, t): every member's per-sequence loss and accuracy at step t, kept in
    `last`, written to out/curves (one file per (group, eval)) and handed to `on_rows`."""
    tr, K = cfg.train, cfg.data.K
    weights = zipf_weights(K, cfg.data.alpha)

    def evaluate(s, t: int) -> None:
        loss, acc = (gather(x).reshape(-1, K) for x in vm.metrics(s["params"], vm.data.bits))
        last.update(step=t, loss=loss, acc=acc)
        if (out is None or not is_main()) and on_rows is None:
            return
        pres, expected = _presentations(s, t, tr, weights, len(ids))
        rows = _curve_rows(ids, t, pres, expected, loss, acc)
        if out is not None and is_main():
            atomic_write_parquet(out / CURVES / f"g{gid:03d}-step{t:010d}.parquet", rows)
        if on_rows is not None:
            on_rows(rows)

    return evaluate


def advance_members(cfg: PhenomConfig, model, vm: _Members, state, *, start: int, stop: int,
                    evaluate: Callable, progress: bool) -> tuple[Any, bool]:  # fmt: skip
    """Run the members from `state` at step `start` (an evaluation step already evaluated,
    or 0) to `stop`, evaluating on the run's log-spaced steps in (start, stop] (and at 0).
    Returns (state, stopped): stopped when every member diverged (the last state is kept)."""
    tr, n = cfg.train, vm.S * vm.H
    sched = Schedule.log_spaced(tr.steps, tr.num_evals, max_chunk=tr.max_chunk,
                                batch=n * (tr.batch if tr.mode == "stochastic" else cfg.data.K),
                                desc=_desc(cfg, model, n, [r[1] for r in vm.rows]),
                                stop_at=stop)  # fmt: skip
    held = {"state": state}

    def advance(s, k):
        s, buf = vm.advance(s, jnp.int32(k), vm.data)
        held["state"] = s
        return s, buf

    done = [e for e in sched.eval_steps if e <= start] if start > 0 else []
    try:
        state = drive(state, sched, step=start, advance=advance, evaluate=evaluate,
                      progress=progress, evaluated=done)  # fmt: skip
    except NonFiniteLossError:
        return held["state"], True
    return state, False


def _group(group, ax, first: int, out: Path | None, gid: int, progress: bool,
           devices: int = 1) -> list[dict]:  # fmt: skip
    """Run one outer-loop group (axes.Group) of seed x (setting, lr) x scale members; its
    member rows."""
    cfg, model = group.cfg, group.model
    vm = _members(group, ax, devices)
    ids = first + np.arange(vm.S * vm.H)
    last: dict = {}
    evaluate = evaluator(cfg, vm, ids, out, gid, last)
    state, stopped = advance_members(cfg, model, vm, vm.state, start=0, stop=cfg.train.steps,
                                     evaluate=evaluate, progress=progress)  # fmt: skip
    if stopped:
        warnings.warn(
            f"sweep group w={model.w} d={model.d} {model.param}: every member diverged; "
            "stopped early",
            stacklevel=3,
        )
    return member_rows(cfg, model, vm, state, last, ids)


def _desc(cfg: PhenomConfig, model, members: int, optimizers) -> str:
    own = [f.name for f in dataclasses.fields(phenom.variant_of(model).Knobs)]
    knobs = "".join(f"{k}={getattr(model, k):g} " for k in own if getattr(model, k))
    variant = "" if model.variant == "stated" else f"{model.variant} "
    names = sorted({o.name for o in optimizers})
    return (f"sweep {cfg.train.mode} {'+'.join(names)} w={model.w} d={model.d} "
            f"{model.param} {variant}{knobs}({members} members)")  # fmt: skip


def _presentations(s, t: int, tr, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(presentations int64, expected float64), (members, K), at step t."""
    if tr.mode == "stochastic":
        pres = gather(s["counts"]).astype(np.int64).reshape(n, -1)
        return pres, pres.astype(np.float64)
    expected = np.broadcast_to(expected_presentations(t, tr.batch, weights), (n, len(weights)))
    return rounded_presentations(expected), expected


def _curve_rows(ids, t: int, pres, expected, loss, acc) -> pd.DataFrame:
    """One evaluation's curve rows: one per (member, rank)."""
    n, K = loss.shape
    return pd.DataFrame(
        {
            "member": np.repeat(ids, K).astype(np.int32),
            "step": np.full(n * K, t, np.int64),
            "rank": np.tile(np.arange(K, dtype=np.int32), n),
            "presentations": pres.ravel().astype(np.int64),
            "expected_presentations": expected.ravel().astype(np.float64),
            "loss": loss.ravel().astype(np.float32),
            "accuracy": acc.ravel().astype(np.float32),
        }
    )


def member_rows(cfg: PhenomConfig, model, vm: _Members, s, last, ids) -> list[dict]:
    """The member table's rows of a group's members `ids` (vm.rows' settings), from their
    state and last evaluation."""
    tr = cfg.train
    weights = zipf_weights(cfg.data.K, cfg.data.alpha)
    live = gather(s["live"]).reshape(-1)
    train_loss = gather(s["train_loss"]).reshape(-1)
    diverged_step = gather(s["diverged_step"]).reshape(-1)
    rows = []
    for j, (seed, o, lr, scale) in enumerate(vm.rows):
        ok = bool(live[j])
        lo, ac = last["loss"][j], last["acc"][j]
        rows.append(
            {
                "member": int(ids[j]),
                "w": model.w,
                "d": model.d,
                "param": model.param,
                **model.knobs(),
                "embedding": model.embedding,
                "variant": model.variant,
                "lr": float(lr),
                "scale": float(scale),
                "seed": int(seed),
                "mode": tr.mode,
                "optimizer": o.name,
                "b1": o.b1,  # adam-type b1, or the momentum coefficient
                "b2": o.b2,
                "weight_decay": o.weight_decay,
                "steps": tr.steps,
                "batch": tr.batch,
                "final_step": int(last["step"]),
                "final_loss": float(weights @ lo) if ok else np.nan,  # p-weighted objective
                "final_mean_loss": float(lo.mean()) if ok else np.nan,  # plain mean over ranks
                "final_accuracy": float(ac.mean()) if ok else np.nan,
                "final_weighted_accuracy": float(weights @ ac) if ok else np.nan,
                "final_train_loss": float(train_loss[j]),
                "diverged": not ok,
                "diverged_step": int(diverged_step[j]),
                "curves": CURVES,
            }
        )
    return rows


# -- the sweep ------------------------------------------------------------------------------------


def open_sweep(base_cfg: PhenomConfig, axes: Mapping[str, Sequence] | None, out,
               schedule: dict | None = None, force: bool = False) -> tuple[dict, list]:  # fmt: skip
    """(axes, groups) of a sweep, every group checked against memory before anything is
    allocated; with `out`, its sweep.json written (refused where a sweep already is, and in a
    folder that is not phenomjax's own unless `force`: runs/reuse.claim)."""
    ax = sweep_axes(base_cfg, axes)
    groups = outer_groups(base_cfg, ax)
    seeds = len(ax["seed"])
    for g in groups:
        what = f"sweep group (w={g.model.w}, d={g.model.d}, {g.model.param})"
        members = len(g.rates) * len(ax["scale"]) * seeds
        check_fits(phenom_cost.memory(g.cfg, g.model, members, seeds), what)
    if out is not None:
        outp = Path(out)
        if os.path.lexists(outp / "sweep.parquet") or os.path.lexists(outp / CURVES):
            raise ConfigError(f"{outp}: a sweep already exists here; choose another --out")
        claim(outp, "a sweep", force=force, writes=SWEEP_NAMES)  # the user's folder is kept
        atomic_write_json(outp / "sweep.json", describe(base_cfg, axes, schedule))
    return ax, groups


def sweep(
    base_cfg: PhenomConfig,
    axes: Mapping[str, Sequence] | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    devices: int = 1,
    force: bool = False,
    jobs: int | None = 1,
    pool: Workers | None = None,
) -> pd.DataFrame:
    """Train every member of lr x scale x seed (one vmapped program) for each outer-loop group
    (optimizer x variant x its knobs x w x d x param); returns the member table.

    `axes` maps singular axis names to their values (sweep_axes); an axis left out takes the
    base config's value. `optimizer` values are configs whose lr is ignored (the rates come
    from `lr`); `variant` names phenom/variants entries and each variant knob (forget,
    readout_scale, D_eff, ...) is an axis of its own. With `out`, the table is also
    written to out/sweep.parquet, the curves under out/curves and the description
    (`describe`) to out/sweep.json. `devices` > 1 (0 = all) splits the members over a device
    mesh; the numbers equal one device's. `out` must be missing, empty or phenomjax's own
    (runs/reuse.claim); `force` accepts another folder that holds none of SWEEP_NAMES.
    `jobs` > 1 trains the groups side by side in that many worker processes, one core each
    (phenomjax.workers; the longest groups first): the same table and curves as one process.
    None: one per core when the groups' FLOPs reach WORKERS_WORTH, else here. `pool`: the
    groups run on these workers instead (`jobs` is then theirs), which several sweeps may
    share, side by side, the costliest group of any of them first.
    """
    if devices != 1 and jobs not in (1, None):
        raise ConfigError("jobs: expected 1 when the members are split over devices")
    if jobs is not None:
        check_jobs(jobs)
    ax, groups = open_sweep(base_cfg, axes, out, force=force)
    outp = Path(out) if out is not None else None
    sizes, work = _work(ax, groups)
    if jobs is None:  # auto: every core, when the work pays for starting the workers
        jobs = auto_jobs(sum(work), devices)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    done: dict[int, list[dict]] = {}
    lock = threading.Lock()
    own = Workers(min(jobs, len(groups))) if pool is None else None
    with own if own is not None else contextlib.nullcontext(pool) as pool:
        alone = pool.n == 1  # a worker's progress bars would overwrite another's
        bar = None if alone or not progress else _GroupBar(len(groups), pool.n)

        def one(gid: int) -> None:
            g = groups[gid]
            rows = pool.run(_group, g, ax, int(first[gid]), outp, gid, progress and alone,
                            devices, cost=work[gid])  # fmt: skip
            with lock:  # the table of the groups done so far, in member order
                done[gid] = rows
                if outp is not None:
                    table = [r for k in sorted(done) for r in done[k]]
                    atomic_write_parquet(outp / "sweep.parquet", pd.DataFrame(table))
                if bar is not None:
                    bar.update(_desc(g.cfg, g.model, sizes[gid], [o for o, _ in g.rates]))

        try:
            pool.map(one, range(len(groups)))
        finally:
            if bar is not None:
                bar.close()
    return pd.DataFrame([r for k in sorted(done) for r in done[k]])


def _work(ax: Mapping[str, tuple], groups: list[Group]) -> tuple[list[int], list[float]]:
    """(members, FLOPs) of each group."""
    sizes = [len(g.rates) * len(ax["scale"]) * len(ax["seed"]) for g in groups]
    return sizes, [n * group_flops(g) for n, g in zip(sizes, groups, strict=True)]


def sweep_flops(base_cfg: PhenomConfig, axes: Mapping[str, Sequence] | None) -> float:
    """The FLOPs of a sweep's groups, all members to the end (what auto_jobs weighs)."""
    ax = sweep_axes(base_cfg, axes)
    return float(sum(_work(ax, outer_groups(base_cfg, ax))[1]))


def auto_jobs(flops: float, devices: int = 1) -> int:
    """Workers for `flops` of sweep groups: one per core when they reach WORKERS_WORTH."""
    return len(cores()) if devices == 1 and flops >= WORKERS_WORTH else 1


class _GroupBar:
    """Progress of groups trained in workers (their own bars would overwrite each other): a
    tqdm bar of finished groups on a terminal, else one line per finished group."""

    def __init__(self, total: int, jobs: int):
        self.plain = not sys.stderr.isatty()
        self.total, self.n = total, 0
        self.bar = None if self.plain else tqdm(total=total, unit="group", dynamic_ncols=True,
                                                desc=f"sweep groups ({jobs} workers)")  # fmt: skip

    def update(self, what: str) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update()
        else:
            print(f"{what}: done ({self.n}/{self.total} groups)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def group_flops(group: Group) -> float:
    """One member's FLOPs over a group's run (its steps and evaluations): the longest groups
    go to the workers first."""
    c = group.cfg.cost()
    return c.step.flops * group.cfg.train.steps + c.evaluation.flops * group.cfg.train.num_evals


def read_sweep(
    out: str | Path, members: Sequence[int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(members table, curves) of a sweep folder; `members` restricts the curve rows read."""
    outp = Path(out)
    if not (outp / "sweep.parquet").is_file():
        raise ConfigError(f"{outp}: no sweep.parquet; is this a sweep folder?")
    table = read_parquet(outp / "sweep.parquet", str(outp / "sweep.parquet"), DataError,
                         contract=False)  # fmt: skip
    filters = [("member", "in", [int(x) for x in members])] if members is not None else None
    try:
        curves = pd.read_parquet(outp / CURVES, filters=filters)
    except Exception as e:  # pyarrow raises several types for a tampered dataset
        raise DataError(f"{outp / CURVES}: unreadable sweep curves ({type(e).__name__})") from None
    curves = curves.sort_values(["member", "step", "rank"], kind="stable").reset_index(drop=True)
    return table, curves
