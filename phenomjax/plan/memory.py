"""Peak memory of a run, estimated from its config before anything is allocated, and the refusal
of what cannot fit (docs/design.md §8: one line naming the fields, the estimate and the memory).

A breakdown is a list of (part, bytes, fields): `fields` names the config fields that part grows
with, so a refusal can say which to lower. Host and device parts are listed apart; on a CPU they
share the same RAM and are summed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from ..errors import ConfigError
from ..runs.rundir import wants_positions
from . import counts
from .counts import F32


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    nbytes: float
    fields: tuple[str, ...]  # the config fields this part grows with
    where: str = "device"  # "device" or "host"


def total(parts: Iterable[Part], where: str | None = None) -> float:
    return float(sum(p.nbytes for p in parts if where is None or p.where == where))


def bits_parts(K: int, L: int, copies: int = 1, device_itemsize: int = 4) -> list[Part]:
    """The K x L bits: drawn as float32 uniforms then bools (transient), kept as uint8 on the host
    and as `device_itemsize`-byte integers on the device."""
    kl = float(K) * float(L) * copies
    return [
        Part("bits: sampling (uniforms, transient)", 5 * kl / copies, ("data.K", "data.L"), "host"),
        Part("bits: host copy (uint8)", kl, ("data.K", "data.L"), "host"),
        Part("bits: device copy", device_itemsize * kl, ("data.K", "data.L")),
    ]


def transformer_parts(cfg, n_params: int, opt_bytes: int) -> list[Part]:
    """Peak memory of `phenomjax train` for a TrainConfig, part by part."""
    d, m, t = cfg.data, cfg.model, cfg.train
    K, L, D, H, NL = d.K, d.L, m.width, m.n_head, m.n_layer
    chunk = min(t.eval_chunk, K)
    rows = math.ceil(K / chunk) * chunk
    evals = t.num_evals + 1
    per_position = wants_positions(t.per_position, K, L)
    model = ("model.n_layer", "model.n_head", "model.head_dim")
    parts = [
        Part("parameters", F32 * n_params, model),
        Part("optimizer state", opt_bytes, model + ("optimizer.name",)),
        Part("gradients", F32 * n_params, model),
        Part(
            "activations of one batch (forward kept for backward)",
            counts.transformer_activation_bytes(t.batch, L, D, H, NL),
            ("train.batch", "data.L") + model,
        ),
        Part(
            "evaluation chunk activations",
            counts.transformer_eval_chunk_bytes(chunk, L, D, H),
            ("data.L", "train.eval_chunk", "model.n_head", "model.head_dim"),
        ),
        # loss and accuracy of every (sequence, position): on the device, then on the host
        Part("per-position tables (device)", 2 * F32 * rows * (L - 1), ("data.K", "data.L")),
        Part("per-position tables (host)", 2 * F32 * K * (L - 1), ("data.K", "data.L"), "host"),
        Part("presentation counts", F32 * K, ("data.K",)),
        Part(
            "evaluation rows (all evaluations)",
            28.0 * K * evals,
            ("data.K", "train.num_evals"),
            "host",
        ),  # fmt: skip
        *bits_parts(K, L),
    ]
    if per_position:  # the accumulated positions.parquet rows, and one copy while it is written
        parts.append(
            Part(
                "per-position rows (all evaluations)",
                2 * 30.0 * K * (L - 1) * evals,
                ("data.K", "data.L", "train.num_evals", "train.per_position"),
                "host",
            )
        )
    return parts


def phenom_parts(
    cfg, model, param_bytes: int, opt_bytes: int, members: int = 1, seeds: int = 1
) -> list[Part]:
    """Peak memory of a phenomenological fit (members = 1) or of one sweep group of `members`
    vmapped members over `seeds` seeds (each seed has its own bits)."""
    K, L, tr = cfg.data.K, cfg.data.L, cfg.train
    P, F = model.N - 1, counts.phenom_features(model)
    M = K if tr.mode == "expected" else tr.batch
    rows = min(max(128, min(2048, (1 << 18) // max(F, 1))), M)
    chunk = min(tr.eval_chunk, K)
    per_seed = max(1, members // max(seeds, 1))
    width = ("model.w", "model.d", "data.L")
    sweep = ("sweep members",) if members > 1 else ()
    parts = [
        Part("parameters", members * param_bytes, width + sweep),
        Part("optimizer state", members * opt_bytes, width + ("optimizer.name",) + sweep),
        Part("gradients", members * param_bytes, width + sweep),
        # the (F, P) table and its gradient, and one block of features, logits and their grads
        Part("logit tables and their gradients", members * 2 * F32 * F * P, width + sweep),
        Part(
            "one block of rows (features, logits)",
            members * F32 * rows * (F + 4 * P),
            width + sweep,
        ),  # fmt: skip
        # evaluation: a lax.map over seeds bounds it to one seed's members at a time
        Part(
            "evaluation chunk activations",
            per_seed * F32 * chunk * (F + 3 * P),
            ("train.eval_chunk",) + width,
        ),
        Part("per-sequence results (device, host)", 4 * F32 * members * K, ("data.K",) + sweep),
        *bits_parts(K, L, copies=seeds, device_itemsize=1),
    ]
    if tr.mode == "stochastic":
        parts.append(Part("presentation counts", members * F32 * K, ("data.K",) + sweep))
    if members > 1:  # one evaluation's curve rows, built as a DataFrame per (group, eval)
        parts.append(Part("curve rows of one evaluation", 40.0 * members * K, ("data.K",) + sweep,
                          "host"))  # fmt: skip
    else:
        evals = tr.num_evals + 1
        parts.append(Part("evaluation rows (all evaluations)", 36.0 * K * evals,
                          ("data.K", "train.num_evals"), "host"))  # fmt: skip
        if wants_positions(tr.per_position, K, L):
            parts.append(
                Part(
                    "per-position tables and rows",
                    2 * F32 * K * P + 2 * 30.0 * K * P * evals,
                    ("data.K", "data.L", "train.num_evals", "train.per_position"),
                    "host",
                )
            )
    return parts


# -- the refusal ---------------------------------------------------------------------------------


def available() -> tuple[float, float, str]:
    """(device bytes, host bytes, wording) of this machine: the accelerator's memory when JAX
    runs on one that reports it, else the host's RAM for both."""
    from .devices import device_memory_bytes, host_memory_bytes

    host = float(host_memory_bytes())
    dev = device_memory_bytes()
    if dev is None:
        return host, host, f"this machine's {gib(host)} of RAM"
    return float(dev[0]), host, f"the {dev[1]} of {gib(dev[0])} ({gib(host)} of host RAM)"


def check_fits(parts: list[Part], what: str = "config") -> None:
    """Raise a ConfigError naming the largest part's fields when the estimate exceeds memory."""
    device, host, wording = available()
    shared = device == host  # CPU: one pool
    need_dev = total(parts) if shared else total(parts, "device")
    need_host = 0.0 if shared else total(parts, "host")
    if (device and need_dev > device) or (host and not shared and need_host > host):
        where = None if shared else ("device" if need_dev > device else "host")
        big = max((p for p in parts if where in (None, p.where)), key=lambda p: p.nbytes)
        need = need_dev if where != "host" else need_host
        raise ConfigError(
            f"{', '.join(big.fields[:3])}: this {what} needs about {gib(need)} of memory "
            f"(largest part: {big.name}, {gib(big.nbytes)}), more than {wording}"
        )


def gib(n: float) -> str:
    """Bytes as GiB for a message: 3 significant digits, thousands separators beyond 1000."""
    g = n / 2**30
    return f"{g:,.0f} GiB" if g >= 1000 else f"{g:.3g} GiB"


def transformer_estimate(cfg) -> list[Part]:
    """The memory breakdown of a TrainConfig (shapes from the real init)."""
    params, opt = counts.transformer_shapes(cfg)
    return transformer_parts(cfg, counts.tree_size(params), counts.tree_bytes(opt))


def phenom_estimate(cfg, members: int = 1, seeds: int = 1, **changes) -> list[Part]:
    """The memory breakdown of a FitConfig, or of one sweep group (members, seeds, changes)."""
    model = counts.phenom_model(cfg, **changes)
    params, opt, _ = counts.phenom_shapes(cfg, model)
    return phenom_parts(
        cfg, model, counts.tree_bytes(params), counts.tree_bytes(opt), members, seeds
    )


def require_fits(cfg, *, members: int = 1, seeds: int = 1, groups: Iterable = ()) -> None:
    """Refuse (ConfigError, one line) a TrainConfig or FitConfig whose estimate exceeds memory.

    For a sweep, `groups` lists the (w, d, param) of each compiled group; each is checked.
    Called at the top of train, fit_phenom and sweep, before anything is allocated.
    """
    if hasattr(cfg.model, "n_layer"):
        check_fits(transformer_estimate(cfg), "run")
        return
    for w, d, param in list(groups) or [(cfg.model.w, cfg.model.d, cfg.model.param)]:
        what = "fit" if members == 1 else f"sweep group (w={w}, d={d}, {param})"
        check_fits(phenom_estimate(cfg, members, seeds, w=w, d=d, param=param), what)
