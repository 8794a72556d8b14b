"""V3 against V1 (issue 18 item 4): V1 trained on the Zipf data and on the same data with the
tail replaced by one constant sequence of the same mass (data.head_and_constant_tail).

V1 (a finite shared readout) predicts that the head's lag stays; V3 (cross-talk from the
unlearned tail) predicts that it vanishes. `lag_of` trains V1 in expected mode (SGD) and reads
the lag of ranks 5-9 against ranks 0-4 per presentation at one level.

    python scripts/v3_tail.py
"""

from __future__ import annotations

import jax
import numpy as np

from phenomjax.bayes import per_sequence_floor
from phenomjax.data import head_and_constant_tail, key_streams, make_bits, zipf_weights
from phenomjax.optim import OptimConfig, make_optimizer
from phenomjax.phenom import model as phenom
from phenomjax.phenom.modes import freeze_untrained, init_state, make_data, make_step


def lag_of(bits, weights, *, D_eff: int, steps: int, batch: int = 16, level: float = 0.5):
    """Presentations at which each rank's normalized excess loss first reaches `level` (the
    Bayes floor as 0), and the ratio median(ranks 5-9) / median(ranks 0-4)."""
    L = bits.shape[1]
    model = phenom.PhenomModel(N=L, variant="v1", D_eff=D_eff, init_scale=0.01)
    keys = key_streams(0)
    data = make_data(bits, weights.astype(np.float32), keys["batches"])
    like = jax.eval_shape(lambda: phenom.init_params(keys["init"], model))
    tx = freeze_untrained(make_optimizer(OptimConfig(name="sgd", lr=30.0), steps), like, model)
    state = init_state(keys["init"], model, tx, mode="expected", K=len(bits))
    step = jax.jit(make_step(tx, mode="expected", batch=batch, model=model))
    metrics = phenom.kernels_of(model)[1]
    floor = per_sequence_floor(bits, weights)[0]
    first = np.asarray(metrics(state["params"], bits)[0])
    reach = np.full(len(bits), np.inf)
    for t in range(1, steps + 1):
        state, _ = step(state, data)
        e = (np.asarray(metrics(state["params"], bits)[0]) - floor) / (first - floor)
        reach = np.where(np.isinf(reach) & (e <= level), t * batch * weights, reach)
    return reach, np.median(reach[5:10]) / np.median(reach[:5])


def main() -> None:
    """Measured, not tuned: the ratio on the Zipf data and on the head + constant tail."""
    bits, w = make_bits(0, 64, 8), zipf_weights(64, 1.0)
    for D_eff in (16, 64):
        _, full = lag_of(bits, w, D_eff=D_eff, steps=400)
        _, cut = lag_of(*head_and_constant_tail(bits, w), D_eff=D_eff, steps=400)
        print(
            f"V1 D_eff={D_eff}: lag ratio ranks 5-9 / 0-4 at 50%: zipf {full:.3g}, "
            f"head + constant tail {cut:.3g}"
        )


if __name__ == "__main__":
    main()
