"""The phenomenological model (docs/design.md §6): its fields and the hooks of its variant.

`PhenomModel` holds the fields every variant shares (N, d, w, param, embedding, init_scale),
`variant` (a name of phenom/variants.VARIANTS; "stated" is the model as stated) and every
variant's knobs (`forget`, `readout_scale`, `D_eff`, ...; a knob of another variant keeps its
default). The functions below dispatch to the named variant: `init_params`, `trainable_mask`,
`post_update`, `kernels_of` (its loss_and_grad and sequence_metrics). The stated model's own
functions (`logits`, `loss`, `loss_and_grad`, `tables`, ...; phenom/linear.py) are
re-exported here, as before the registry.
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType

import jax
import numpy as np
import optax

from ..errors import ConfigError
from . import variants
from .linear import (  # noqa: F401  (the stated model's functions, re-exported)
    contributions,
    effective_table,
    logits,
    loss,
    loss_and_grad,
    sequence_metrics,
    tables,
    window_bits,
)

PARAMS = ("full", "shared", "relative")
EMBEDDINGS = ("random", "learned", "spin")


class _Fields:
    N: int  # bits per sequence (= L); bits 1..N-1 are predicted
    d: int = 8  # width of the embedding and of each A[n, i]; spin forces 1
    w: int = 1  # window: bits per embedded token (2^w rows of E per position); spin forces 1
    param: str = "full"  # "full" (one A per (n, i)), "shared" (a[n, i] W), "relative" (A[n - i])
    embedding: str = "random"  # "random" (fixed Gaussian/sqrt(d)), "learned", "spin" (xi = 2x - 1)
    init_scale: float = 0.1  # std of the initial A (or a, W) and B entries; sets the plateau length
    variant: str = "stated"  # a name of phenom/variants.VARIANTS; its knobs follow

    def __post_init__(self) -> None:
        if self.embedding == "spin":  # spin is defined only for single bits in one dimension
            object.__setattr__(self, "d", 1)
            object.__setattr__(self, "w", 1)
        if self.variant in variants.VARIANTS:  # old configs: "stated" with forget set
            object.__setattr__(self, "variant", variants.resolve(self.variant, self.knobs()))

    def knobs(self) -> dict:
        """{knob: value} over every variant's knobs."""
        return {k: getattr(self, k) for k in variants.knob_names()}

    def validate(self, where: str = "model") -> None:
        """Raise a ConfigError naming the field when a value is out of range."""

        def bad(field: str, expected: str) -> ConfigError:
            value = getattr(self, field)
            return ConfigError(f"{where}.{field}: expected {expected}, got {value!r}")

        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(self.N) or self.N < 2:
            raise bad("N", "an integer >= 2")
        if not is_int(self.d) or self.d < 1:
            raise bad("d", "an integer >= 1")
        if not is_int(self.w) or not 1 <= self.w <= 12:
            raise bad("w", "an integer in [1, 12] (E has 2^w rows per position)")
        if self.param not in PARAMS:
            raise bad("param", f"one of {list(PARAMS)}")
        if self.embedding not in EMBEDDINGS:
            raise bad("embedding", f"one of {list(EMBEDDINGS)}")
        if not (isinstance(self.init_scale, (int, float)) and math.isfinite(self.init_scale)):
            raise bad("init_scale", "a finite number > 0")
        if self.init_scale <= 0:
            raise bad("init_scale", "a finite number > 0")
        if self.variant not in variants.VARIANTS:
            raise bad("variant", f"one of {list(variants.VARIANTS)}")
        other = variants.foreign(self.variant, self.knobs())
        if other is not None:
            raise bad(other, f"its default for variant {self.variant!r} "
                      f"(it is a knob of {variants.owner(other)!r})")  # fmt: skip
        for mod in variants.modules(self.variant):
            own = mod.Knobs(**{f.name: getattr(self, f.name)
                               for f in dataclasses.fields(mod.Knobs)})  # fmt: skip
            if hasattr(own, "check"):
                own.check(bad)


# Shared fields, `variant`, then every variant's knobs (phenom/variants): one frozen dataclass.
PhenomModel = dataclasses.make_dataclass(
    "PhenomModel",
    [(f.name, f.type, dataclasses.field(default=f.default)) for f in variants.knob_fields()],
    bases=(dataclasses.dataclass(frozen=True)(_Fields),),
    frozen=True,
    namespace={"__module__": __name__},
)
PhenomModel.__doc__ = "The model's fields: the shared ones, `variant` and every variant's knobs."


def variant_of(model) -> ModuleType:
    """The module of the model's variant (phenom/variants)."""
    return variants.get(model.variant)


def init_params(key: jax.Array, model, scale: float | None = None) -> dict:
    """Initial parameters of the model's variant. `scale` (default model.init_scale) may be a
    traced scalar, so sweeps can vmap over it."""
    model.validate()
    return variant_of(model).init(key, model, scale)


def trainable_mask(params: dict, model) -> dict:
    """True for leaves the optimizer updates (the stated model: E only when learned)."""
    return variant_of(model).trainable_mask(params, model)


def post_update(model) -> optax.GradientTransformation | None:
    """The variant's transformation after the optimizer (readout_forget: the forgetting)."""
    return variant_of(model).post_update(model)


def kernels_of(model) -> tuple:
    """(loss_and_grad, sequence_metrics) of the model's variant."""
    mod = variant_of(model)
    return mod.loss_and_grad, mod.sequence_metrics
