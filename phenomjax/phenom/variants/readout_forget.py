"""The readout/forget variant for the lag (docs/design.md §6): the model as stated with two knobs.

- readout_scale > 0: B starts at readout_scale * N(0, 1) instead of init_scale. With a small B
  the bilinear product B^T A keeps every logit on a plateau whose length is counted in steps, so
  a frequent rank spends many presentations there (rank 0 gets ~9 per step at the demo's Zipf 1,
  batch 64) and rarer ranks look faster per presentation; a unit B removes that plateau.
- forget > 0: after every optimizer step the A-like tensor (A, or a when shared) shrinks by the
  factor 1 - forget, whatever the learning rate, so the logit table B^T A E fades by that factor
  per step. A rank seen every 1/(B p) steps loses about forget / (B p) of what it learned
  between two presentations, so rarer ranks need more presentations to reach the same loss (the
  transformer's lag); see `post_update`.

Prediction: the sign of the lag turns with readout_scale; forgetting makes it grow at deeper
levels (the cost of a presentation gap compounds). With both knobs 0 it is the stated model,
number for number. Everything but the initial B and the post-update is the stated model's.
"""

from __future__ import annotations

import dataclasses
import math

from .stated import (  # noqa: F401  (the hooks this variant shares with the stated model)
    features_width,
    loss_and_grad,
    row_flops,
    sequence_metrics,
    table_floats,
    table_flops,
    trainable_mask,
)


@dataclasses.dataclass(frozen=True)
class Knobs:
    forget: float = 0.0  # per-step shrink of A (or a) toward 0, lr-free; 0: no forgetting
    readout_scale: float = 0.0  # std of the initial B; 0: init_scale (as stated)

    def check(self, bad) -> None:
        """`bad(field, expected)` names the field of an out-of-range value."""
        r, f = self.readout_scale, self.forget
        if not (isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r < math.inf):
            raise bad("readout_scale", "a finite number >= 0 (0: init_scale)")
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f < 1):
            raise bad("forget", "a number in [0, 1)")


def init(key, model, scale=None) -> dict:
    """The stated init, with B at readout_scale when that is > 0 (the same random draws)."""
    from .. import linear  # JAX: the registry and the knobs are read without it

    r = model.readout_scale
    return linear.init_params(key, model, scale, b_scale=r if r > 0 else None)


def post_update(model):
    """Chained after the optimizer: adds -forget * A (or a) to the update, so a step maps A to
    (1 - forget) A + update. Not scaled by the learning rate (unlike adamw's decay, whose
    lr * wd is the same shrink for Adam at a constant rate, but which SGD lacks); B and E keep."""

    def mask(params: dict) -> dict:
        return {k: k in ("A", "a") for k in params}

    if model.forget == 0:
        return None
    import optax  # JAX, as in init

    return optax.add_decayed_weights(-float(model.forget), mask=mask)
