"""The model as stated (docs/design.md §6) as a variant: no knobs of its own, no post-update.

Its arithmetic is phenom/linear.py (imported inside the hooks: the registry and the knobs are
read without JAX, by the fit report among others); its cost is below.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Knobs:
    """The model as stated has no knobs beyond the shared ones (w, d, param, ...)."""


def init(key, model, scale=None) -> dict:
    from .. import linear

    return linear.init_params(key, model, scale)


def trainable_mask(params: dict, model) -> dict:
    """True for leaves the optimizer updates: E only when the embedding is learned."""
    return {k: (k != "E" or model.embedding == "learned") for k in params}


def loss_and_grad(params: dict, bits, weights):
    from .. import linear

    return linear.loss_and_grad(params, bits, weights)


def sequence_metrics(params: dict, bits, *, per_position: bool = False, chunk: int = 4096):
    from .. import linear

    return linear.sequence_metrics(params, bits, per_position=per_position, chunk=chunk)


def post_update(model):
    """Nothing after the optimizer's update."""
    return None


# -- its cost (phenom/cost.py asks these) -------------------------------------------------------


def features_width(model) -> int:
    """F: the width of the per-row features the logits are a product of (kernels.py)."""
    P, V, d = model.N - 1, 2**model.w, model.d
    if V > max(d, 2):
        return P * d  # gathered embeddings
    return P if V == 2 else P * V


def table_flops(model) -> float:
    """FLOPs of building the (F, P) table from A, B, E (independent of the rows)."""
    P, V, d = model.N - 1, 2**model.w, model.d
    if model.param == "full":  # the causal blocks only (linear.pack)
        contrib = P * (P + 1) * d * d
    elif model.param == "shared":
        contrib = 2 * d * d + 2 * P * P * d
    else:
        contrib = 2 * P * d * d + P * P * d
    if V > max(d, 2):
        return float(contrib)
    return float(contrib + 2 * P * P * (V if V > 2 else 2) * d)


def row_flops(model, train: bool) -> float:
    """FLOPs per row of the GEMMs: logits (and, training, the table's gradient and, for
    gathered embeddings, the features' gradient)."""
    F, P = features_width(model), model.N - 1
    if not train:
        return 2.0 * F * P
    return float((6 if 2**model.w > max(model.d, 2) else 4) * F * P)


def table_floats(model) -> int:
    """Floats of the (F, P) logit table (its gradient is as large)."""
    return features_width(model) * (model.N - 1)
