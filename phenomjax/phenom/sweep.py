"""Vmapped sweeps of the phenomenological model (docs/design.md §6, "Fitting to an empirical run").

    phenomjax sweep experiments/phenom.toml --lr 3e-3,1e-2 --scale 0.03,0.1 --seeds 0,1 --w 4,6

Learning rates, initial scales and seeds are one jitted program: vmap over seeds (each seed has
its own bits, init key and batch key, exactly those of `fit_phenom` with data.seed = seed; no seed
axis when there is one seed) around vmap over (lr, scale) pairs (the rate lives in the optimizer
state, optax.inject_hyperparams, built once outside vmap). w, d and the parameterization change
shapes, and the optimizer (its name, betas / momentum and weight decay) changes the update rule,
so they are outer Python loops ("groups"), one compiled program each; so are the variant knobs
(`forgets`: the per-step shrink of A; `readout_scales`: the initial scale of B).

A member whose loss or update turns non-finite is frozen at its last finite parameters and marked
`diverged` (its curves after that step describe the frozen model); the sweep goes on. Only when
every member of a group has diverged does the group stop early.

Output folder:
    sweep.json      base config, axes, column notes
    sweep.parquet   one row per member: settings, final losses, `curves` (where its rows are)
    curves/         parquet dataset, one file per (group, eval) (each written atomically), one row
                    per (member, step, rank): member, step, rank, presentations (int64),
                    expected_presentations (float), loss, accuracy. Per-sequence rows are always
                    kept (the fitter bins them as it needs); read_sweep(out, members=[...]) reads
                    the rows of a few members only, which keeps K = 100000 sweeps readable.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..config import to_dict
from ..data import key_streams, log_spaced_steps, make_bits, zipf_weights
from ..distributed import gather, is_main, make_mesh, place
from ..errors import ConfigError, NonFiniteLossError
from ..optim import OptimConfig, make_injectable, schedule, set_learning_rate
from ..plan.memory import require_fits
from ..runs import atomic_write_json, atomic_write_parquet, drive
from ..runs.lifecycle import make_advance
from . import model as phenom
from .modes import (
    FitData,
    expected_presentations,
    freeze_untrained,
    init_state,
    make_data,
    make_step,
    rounded_presentations,
)
from .train import FitConfig, build_model

CURVES = "curves"


def sweep_optimizer(cfg: FitConfig) -> optax.GradientTransformation:
    """The injectable optimizer; a configured warm-up / decay becomes a shape multiplying each
    member's rate (every optimizer of phenomjax.optim scales its update by the rate last)."""
    tx = make_injectable(cfg.optimizer)
    o = cfg.optimizer
    if o.warmup_steps > 0 or o.decay != "none":
        shape = schedule(o, cfg.train.steps)
        tx = optax.chain(tx, optax.scale_by_schedule(lambda c: shape(c) / o.lr))
    return tx


def _finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _guarded(step):
    """Wrap a fit step so a member that goes non-finite keeps its last finite parameters."""

    def guarded(state, data: FitData):
        new, loss = step(state, data)
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


def _group(
    cfg, model, lrs, scales, seeds, first: int, out: Path | None, gid: int, progress, devices=1
):
    """Run one (w, d, param) group of len(seeds) x len(lrs) x len(scales) members."""
    K, L, tr = cfg.data.K, cfg.data.L, cfg.train
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
    hyper = list(itertools.product(lrs, scales))
    lr_H = jnp.asarray([h[0] for h in hyper], jnp.float32)
    scale_H = jnp.asarray([h[1] for h in hyper], jnp.float32)

    like = jax.eval_shape(lambda k: phenom.init_params(k, model), init_keys[0])
    tx = freeze_untrained(sweep_optimizer(cfg), like, model)

    def init_member(key, lr, scale):
        st = init_state(key, model, tx, mode=tr.mode, K=K, scale=scale)
        st["opt_state"] = set_learning_rate(st["opt_state"], lr)
        st["live"] = jnp.array(True)
        st["diverged_step"] = jnp.array(-1, jnp.int32)
        st["train_loss"] = jnp.array(jnp.nan, jnp.float32)
        return st

    init_members = jax.vmap(init_member, (None, 0, 0))
    member_step = _guarded(make_step(tx, mode=tr.mode, batch=tr.batch))
    members_step = jax.vmap(member_step, (0, None))

    def metrics_one(params, bits):
        return phenom.sequence_metrics(params, bits, chunk=min(tr.eval_chunk, K))

    members_metrics = jax.vmap(metrics_one, (0, None))
    if flat:
        state = jax.jit(init_members)(init_keys[0], lr_H, scale_H)
        vstep, metrics = members_step, jax.jit(members_metrics)
    else:
        state = jax.jit(jax.vmap(init_members, (0, None, None)))(init_keys, lr_H, scale_H)
        data_axes = FitData(bits=0, weights=None, cdf=None, batches_key=0)
        vstep = jax.vmap(members_step, (0, data_axes))
        # lax.map over seeds bounds evaluation memory to one seed's members at a time (jax #1923)
        metrics = jax.jit(lambda p, b: jax.lax.map(lambda pb: members_metrics(*pb), (p, b)))
    state, data = _shard_members(state, data, len(seeds), len(hyper), devices, flat)
    advance = make_advance(vstep, tr.max_chunk, loss_of=jnp.nanmin)  # progress: best member
    S, H = len(seeds), len(hyper)
    ids = first + np.arange(S * H)
    last: dict = {}

    def evaluate(s, t: int) -> None:
        loss, acc = (gather(x).reshape(S * H, K) for x in metrics(s["params"], data.bits))
        if tr.mode == "stochastic":
            pres = gather(s["counts"]).astype(np.int64).reshape(S * H, K)
            expected = pres.astype(np.float64)
        else:
            expected = np.broadcast_to(expected_presentations(t, tr.batch, weights), (S * H, K))
            pres = rounded_presentations(expected)
        last.update(step=t, loss=loss, acc=acc)
        if out is None or not is_main():
            return
        df = pd.DataFrame(
            {
                "member": np.repeat(ids, K).astype(np.int32),
                "step": np.full(S * H * K, t, np.int64),
                "rank": np.tile(np.arange(K, dtype=np.int32), S * H),
                "presentations": pres.ravel().astype(np.int64),
                "expected_presentations": expected.ravel().astype(np.float64),
                "loss": loss.ravel().astype(np.float32),
                "accuracy": acc.ravel().astype(np.float32),
            }
        )
        atomic_write_parquet(out / CURVES / f"g{gid:03d}-step{t:010d}.parquet", df)

    held = {"state": state}

    def adv(s, n):
        s, buf = advance(s, jnp.int32(n), data)
        held["state"] = s
        return s, buf

    try:
        drive(
            state,
            step=0,
            total_steps=tr.steps,
            eval_steps=log_spaced_steps(tr.steps, tr.num_evals),
            advance=adv,
            evaluate=evaluate,
            max_chunk=tr.max_chunk,
            batch=S * H * (tr.batch if tr.mode == "stochastic" else K),
            desc=f"sweep {tr.mode} {cfg.optimizer.name} w={model.w} d={model.d} {model.param} "
            + (f"forget={model.forget:g} " if model.forget else "")
            + f"({S * H} members)",
            progress=progress,
        )
    except NonFiniteLossError:
        warnings.warn(
            f"sweep group w={model.w} d={model.d} {model.param}: every member diverged; "
            "stopped early",
            stacklevel=2,
        )
    s = held["state"]
    live = gather(s["live"]).reshape(-1)
    train_loss = gather(s["train_loss"]).reshape(-1)
    diverged_step = gather(s["diverged_step"]).reshape(-1)
    rows = []
    for j, (i_seed, (lr, scale)) in enumerate(itertools.product(range(S), hyper)):
        ok = bool(live[j])
        lo, ac = last["loss"][j], last["acc"][j]
        rows.append(
            {
                "member": int(ids[j]),
                "w": model.w,
                "d": model.d,
                "param": model.param,
                "forget": model.forget,
                "readout_scale": model.readout_scale,
                "embedding": model.embedding,
                "lr": float(lr),
                "scale": float(scale),
                "seed": int(seeds[i_seed]),
                "mode": tr.mode,
                "optimizer": cfg.optimizer.name,
                "b1": cfg.optimizer.momentum,  # adam-type b1, or the momentum coefficient
                "b2": cfg.optimizer.b2,
                "weight_decay": cfg.optimizer.weight_decay,
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


def sweep(
    base_cfg: FitConfig,
    *,
    lrs: Sequence[float] | None = None,
    scales: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    ws: Sequence[int] | None = None,
    ds: Sequence[int] | None = None,
    params: Sequence[str] | None = None,
    optimizers: Sequence[OptimConfig] | None = None,
    forgets: Sequence[float] | None = None,
    readout_scales: Sequence[float] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    devices: int = 1,
) -> pd.DataFrame:
    """Train every member of lrs x scales x seeds (one vmapped program) for each (w, d, param).

    Axes left as None take the base config's value; `optimizers` (configs whose lr is ignored:
    the rates come from `lrs`) is an outer loop like w, d and param, and so is `forgets` (the
    model's per-step shrink; 0 is the model as stated) and `readout_scales` (B's initial scale;
    0: the member's scale). Returns the member table
    (also written to out/sweep.parquet when `out` is given, with the curves under out/curves).
    `devices` > 1 (0 = all) splits the members over a device mesh; the numbers equal one
    device's.
    """
    m = base_cfg.model
    lrs = tuple(float(x) for x in (lrs or (base_cfg.optimizer.lr,)))
    scales = tuple(float(x) for x in (scales or (m.init_scale,)))
    seeds = tuple(int(x) for x in (seeds or (base_cfg.data.seed,)))
    ws, ds, params = tuple(ws or (m.w,)), tuple(ds or (m.d,)), tuple(params or (m.param,))
    optimizers = tuple(optimizers or (base_cfg.optimizer,))
    forgets = tuple(float(x) for x in (forgets or (m.forget,)))
    readouts = tuple(float(x) for x in (readout_scales or (m.readout_scale,)))
    for name, vals in (("lrs", lrs), ("scales", scales)):
        if not all(np.isfinite(v) and v > 0 for v in vals):
            raise ConfigError(f"sweep {name}: expected finite values > 0, got {list(vals)}")
    members, groups = len(lrs) * len(scales) * len(seeds), itertools.product(ws, ds, params)
    require_fits(base_cfg, members=members, seeds=len(seeds), groups=groups)  # before allocating
    outp = Path(out) if out is not None else None
    if outp is not None:
        if (outp / "sweep.parquet").exists() or (outp / CURVES).exists():
            raise ConfigError(f"{outp}: a sweep already exists here; choose another --out")
        atomic_write_json(
            outp / "sweep.json",
            {
                "base_config": to_dict(base_cfg),
                "axes": {
                    "lr": lrs,
                    "scale": scales,
                    "seed": seeds,
                    "w": ws,
                    "d": ds,
                    "param": params,
                    "optimizer": [to_dict(o) for o in optimizers],
                    # only when swept: otherwise base_config holds it, and the axes stay those
                    # of the stated model (which fit's sweep cache compares)
                    **({"forget": forgets} if forgets != (m.forget,) else {}),
                    **({"readout_scale": readouts} if readouts != (m.readout_scale,) else {}),
                },
                "curves": "per (member, step, rank); presentations int64 = floor(t B p + 0.5) "
                "in expected mode, counts in stochastic mode; expected_presentations float",
            },
        )
    rows: list[dict] = []
    groups = itertools.product(optimizers, forgets, readouts, ws, ds, params)
    for gid, (opt, forget, readout, w, d, param) in enumerate(groups):
        cfg = dataclasses.replace(
            base_cfg,
            model=dataclasses.replace(
                m, w=w, d=d, param=param, forget=forget, readout_scale=readout
            ),
            optimizer=dataclasses.replace(base_cfg.optimizer, **_optim_fields(opt)),
        )
        cfg.optimizer.validate()
        cfg.validate()
        model = build_model(cfg)
        rows += _group(cfg, model, lrs, scales, seeds, len(rows), outp, gid, progress, devices)
        table = pd.DataFrame(rows)
        if outp is not None:
            atomic_write_parquet(outp / "sweep.parquet", table)
    return pd.DataFrame(rows)


def _optim_fields(opt: OptimConfig) -> dict:
    return {f.name: getattr(opt, f.name) for f in dataclasses.fields(OptimConfig) if f.name != "lr"}


def read_sweep(
    out: str | Path, members: Sequence[int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(members table, curves) of a sweep folder; `members` restricts the curve rows read."""
    outp = Path(out)
    if not (outp / "sweep.parquet").is_file():
        raise ConfigError(f"{outp}: no sweep.parquet; is this a sweep folder?")
    table = pd.read_parquet(outp / "sweep.parquet")
    filters = [("member", "in", [int(x) for x in members])] if members is not None else None
    curves = pd.read_parquet(outp / CURVES, filters=filters)
    curves = curves.sort_values(["member", "step", "rank"], kind="stable").reset_index(drop=True)
    return table, curves
