"""The phenomenological model (docs/design.md §6): linear attention over embedded bit windows
with a sigmoid readout.

- `model`: the model's fields and its variant's hooks; `variants`: the registry of variants
  (the model as stated, readout_forget, v1), read without JAX; `linear`, `kernels`: the model
  as stated and its fused loss/gradient core;
- `modes`: the expected and stochastic training steps;
- `train`: one model from a config (`PhenomConfig`, `train_phenom`; `phenomjax train-phenom`);
- `cost`: what a run or a sweep group costs (`phenomjax plan`, and the refusal before a run);
- `sweep`: vmapped sweeps over its knobs (`phenomjax sweep`).

Scoring against an empirical run and fitting to it (`phenomjax fit`) live in phenomjax.fitting.

The model's functions are re-exported here, `phenomjax.phenom.logits(params, bits)`, loaded on
first use, so that `phenomjax.phenom.variants` imports no JAX.
"""

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


def __getattr__(name: str):
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
