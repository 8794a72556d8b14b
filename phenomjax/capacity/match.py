"""Capacity matching for V1 (phenom/variants/deflation.py): its memorized bits on uniform data,
measured the way `phenomjax capacity` measures a transformer's, and the D_eff whose measured
capacity equals a target in bits (a transformer's), so that D_eff is set, not fitted.

V1's readout is a logistic model on fixed features, so its training is convex and full-batch
Adam reaches the plateau in a few thousand steps: unlike the transformer's, its capacity is a
converged measurement at every D_eff. Its capacity grows about linearly in D_eff (one readout
weight per feature), which `match_d_eff` uses to place D_eff and then checks by measuring.
"""

from __future__ import annotations

import numpy as np

from ..analysis.summaries import sequence_bits
from ..bayes import per_sequence_floor
from ..data import make_bits
from ..errors import PhenomjaxError

MAX_FEATURE_BYTES = 1 << 30  # the (K, L - 1, D_eff) features are held at once: refuse above


def v1_params(D_eff: int, L: int, seed: int) -> dict:
    """V1's parameters at D_eff for sequences of L bits: the fixed map G of its seed and a zero
    readout (phenom.model.init_params at scale 0)."""
    import jax

    from ..phenom.model import PhenomModel, init_params

    model = PhenomModel(N=L, variant="v1", D_eff=D_eff)
    return init_params(jax.random.PRNGKey(seed), model, scale=0.0)


def v1_memorized(
    D_eff: int, K: int, L: int, *, seed: int = 0, steps: int = 3000, lr: float = 0.05
) -> dict:
    """V1 at D_eff trained full batch on K uniform random sequences of L bits (Adam, cosine to
    0, readout from 0): memorized bits (per sequence, clipped at 0, as analysis.summaries),
    the Bayes ceiling, the dataset bits, the final mean loss in nats and the readout b."""
    import jax
    import jax.numpy as jnp
    import optax

    from ..phenom.variants import deflation

    need = 4 * K * (L - 1) * D_eff
    if need > MAX_FEATURE_BYTES:
        raise PhenomjaxError(
            f"v1_memorized: K {K} x (L - 1) {L - 1} x D_eff {D_eff} features need {need >> 20}"
            f" MiB; expected at most {MAX_FEATURE_BYTES >> 20}"
        )
    bits = make_bits(seed, K, L)
    params = v1_params(D_eff, L, seed)
    phi = jax.jit(deflation.features)(params["G"], bits)
    y = jnp.asarray(bits[:, 1:], jnp.float32)
    w = jnp.full((K,), 1.0 / K, jnp.float32)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    @jax.jit
    def fit(b):
        def step(carry, _):
            b, s = carry
            _, g = deflation.readout_loss_and_grad(b, phi, y, w)
            u, s = opt.update(g, s, b)
            return (optax.apply_updates(b, u), s), None

        (b, _), _ = jax.lax.scan(step, (b, opt.init(b)), None, length=steps)
        return b

    params["b"] = fit(params["b"])
    loss, _ = jax.jit(deflation.sequence_metrics)(params, bits)
    loss = np.asarray(loss, np.float64)  # per sequence, nats
    floor, _ = per_sequence_floor(bits, np.full(K, 1.0 / K))
    return {
        "D_eff": D_eff,
        "K": K,
        "memorized_bits": float(np.clip(sequence_bits(loss, L), 0.0, None).sum()),
        "bits_ceiling": float(np.clip(sequence_bits(floor, L), 0.0, None).sum()),
        "dataset_bits": K * (L - 1),
        "loss": float(loss.mean()),
        "b": np.asarray(params["b"]),
    }


def v1_capacity(D_eff: int, L: int, *, seed: int = 0, ratios=(1, 2, 4), **kw) -> dict:
    """V1's capacity at D_eff: the peak of memorized bits over K with K (L - 1) at each ratio
    times D_eff (the peak of a linear readout sits a few times its width)."""
    rows = [v1_memorized(D_eff, max(2, round(r * D_eff / (L - 1))), L, seed=seed, **kw)
            for r in ratios]  # fmt: skip
    best = max(rows, key=lambda r: r["memorized_bits"])
    return {"D_eff": D_eff, "capacity": best["memorized_bits"], "K": best["K"],
            "by_K": {r["K"]: r["memorized_bits"] for r in rows}}  # fmt: skip


_MEASURED: dict = {}  # (D_eff, L, settings) -> capacity: matching several targets measures once


def _measured(D_eff: int, L: int, kw: dict) -> float:
    key = (D_eff, L, tuple(sorted(kw.items())))
    if key not in _MEASURED:
        _MEASURED[key] = v1_capacity(D_eff, L, **kw)["capacity"]
    return _MEASURED[key]


def match_d_eff(
    target_bits: float,
    L: int,
    *,
    probe: int = 64,
    verify_max: int = 4096,
    rounds: int = 4,
    rel_tol: float = 0.05,
    **kw,
) -> dict:
    """The D_eff whose V1 capacity equals `target_bits`. Bits per feature are measured at
    `probe` and D_eff = target / that (within [1, 65536]); while D_eff is at most `verify_max`,
    its capacity is measured and D_eff moved by a secant in log-log (capacity is close to, not
    exactly, linear in D_eff) for up to `rounds` rounds or until within rel_tol. A D_eff above
    `verify_max` is placed by the bits per feature measured at verify_max (V1's bits per
    feature fall with D_eff, so the probe's would place it too low) and reported with
    measured_bits NaN; `how` says which: "measured" or "linear from D_eff <verify_max>"."""
    if not np.isfinite(target_bits) or target_bits <= 0:
        raise PhenomjaxError(f"match_d_eff: target_bits: expected a positive number, got "
                             f"{target_bits}")  # fmt: skip
    per = _measured(probe, L, kw) / probe
    D = int(np.clip(round(target_bits / per), 1, 1 << 16))
    tried = {probe: per * probe}
    for _ in range(rounds):
        if D > verify_max or D in tried:
            break
        tried[D] = _measured(D, L, kw)
        if abs(tried[D] / target_bits - 1) <= rel_tol:
            break
        # a secant in log-log through the last two: capacity is a power of D_eff locally
        (d0, c0), (d1, c1) = list(tried.items())[-2:]
        e = np.clip(np.log(c1 / c0) / np.log(d1 / d0), 0.2, 2.0) if c0 > 0 and c1 > 0 else 1.0
        D = int(np.clip(round(d1 * (target_bits / c1) ** (1 / e)), 1, 1 << 16))
    best = min(tried, key=lambda d: abs(tried[d] - target_bits))
    how = "measured"
    if D > verify_max:
        if verify_max not in tried:
            tried[verify_max] = _measured(verify_max, L, kw)
        top = tried[verify_max] / verify_max
        best = int(np.clip(round(target_bits / top), verify_max, 1 << 16))
        how = f"linear from D_eff {verify_max}"
    return {"target_bits": float(target_bits), "D_eff": best, "bits_per_feature": per,
            "measured_bits": tried.get(best, float("nan")), "how": how,
            "tried": tried}  # fmt: skip
