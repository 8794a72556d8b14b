"""The phenomenological model (docs/design.md §6): linear attention over embedded bit windows
with a sigmoid readout.

- `model`, `kernels`: the model and its fused loss/gradient core;
- `modes`: the expected and stochastic training steps;
- `train`: one model from a config (`PhenomConfig`, `train_phenom`; `phenomjax train-phenom`);
- `cost`: what a run or a sweep group costs (`phenomjax plan`, and the refusal before a run);
- `sweep`: vmapped sweeps over its knobs (`phenomjax sweep`).

Scoring against an empirical run and fitting to it (`phenomjax fit`) live in phenomjax.fitting.

The model's functions are re-exported here: `phenomjax.phenom.logits(params, bits)`.
"""

from .model import (
    EMBEDDINGS,
    PARAMS,
    PhenomModel,
    contributions,
    effective_table,
    init_params,
    logits,
    loss,
    loss_and_grad,
    sequence_metrics,
    tables,
    trainable_mask,
    window_bits,
)

__all__ = [
    "EMBEDDINGS",
    "PARAMS",
    "PhenomModel",
    "contributions",
    "effective_table",
    "init_params",
    "logits",
    "loss",
    "loss_and_grad",
    "sequence_metrics",
    "tables",
    "trainable_mask",
    "window_bits",
]
