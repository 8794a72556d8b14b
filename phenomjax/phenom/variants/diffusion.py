"""V2, SGD-noise diffusion between presentations (issue 18): V1's finite shared readout
(variants/deflation.py, its D_eff features and kernels) with a diffusion knob.

Mechanism. After every optimizer step the readout b takes a Gaussian step of std `diffusion`
per coordinate (an optax add_noise after the optimizer, on b only: the map G stays fixed). It
stands for the minibatch noise of SGD, whose per-step variance is about lr^2 / B times the
gradient variance. Between two presentations of rank k, which come about 1 / (B p_k) steps
apart, b diffuses away from what rank k needs; each presentation pulls it back with a force
proportional to lr p_k.

Prediction. Near a minimum with Hessian H = sum_k p_k H_k, the stationary spread of b is
diffusion^2 / (2 lr) H^{-1} (equipartition), so rank k keeps an excess loss of about
diffusion^2 rank(H_k) / (4 lr p_k): a floor proportional to 1 / p_k. One association with soft
target 1/2 and unit feature, under SGD, has b_k -> b_k (1 - a_k) + noise with a_k = lr p_k / 4,
so its excess loss is exactly diffusion^2 / (8 a_k (2 - a_k)) in the quadratic regime
(tests/phenom/test_diffusion.py). Rare ranks settle on higher floors, so the lag grows at
deeper levels (its slope across levels is positive, where V1's is 0) and is small at shallow
ones; with SGD's own noise the floor goes as lr / (B p_k): it grows with lr and shrinks with
batch. diffusion = 0 is V1, number for number.

The noise draws come from a fixed key (0), the same for every member of a sweep, so members
differ only by their knobs and, in stochastic mode, their batches.
"""

from __future__ import annotations

import dataclasses
import math

from . import deflation
from .deflation import (  # noqa: F401  (the hooks this variant shares with V1)
    can_memorize,
    features_width,
    init,
    loss_and_grad,
    row_flops,
    sequence_metrics,
    table_floats,
    table_flops,
    trainable_mask,
)

USES = (deflation,)  # its knobs include V1's (D_eff): the same readout, matched the same way


@dataclasses.dataclass(frozen=True)
class Knobs:
    diffusion: float = 0.0  # std of b's Gaussian step per optimizer step, per coordinate; 0: V1

    def check(self, bad) -> None:
        """`bad(field, expected)` names the field of an out-of-range value."""
        s = self.diffusion
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s < math.inf):
            raise bad("diffusion", "a finite number >= 0")


def post_update(model):
    """Chained after the optimizer: adds N(0, diffusion^2) to b's update (G keeps)."""
    if model.diffusion == 0:
        return None
    import optax  # JAX: the registry and the knobs are read without it

    noise = optax.add_noise(float(model.diffusion) ** 2, 0.0, key=0)
    return optax.masked(noise, lambda params: {k: k == "b" for k in params})
