"""Pytrees to named arrays and back, for checkpoints (typed PRNG keys included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import RunDirError


def pytree_to_arrays(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a pytree of arrays (typed PRNG keys included) to named numpy arrays."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    out = {}
    for i, leaf in enumerate(leaves):
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"{prefix}{i:05d}"] = np.asarray(leaf)
    return out


def arrays_to_pytree(like: Any, arrays: Mapping[str, np.ndarray], prefix: str = "") -> Any:
    """Inverse of pytree_to_arrays, shaped by `like` (a pytree or its eval_shape)."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten(like)
    names = sorted(k for k in arrays if k.startswith(prefix))
    if len(names) != len(leaves):
        raise RunDirError(
            f"checkpoint: holds {len(names)} arrays, the model expects {len(leaves)}; "
            "was it written by another config?"
        )
    out = []
    for leaf, name in zip(leaves, names, strict=True):
        a = arrays[name]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jnp.asarray(a)))
            continue
        if tuple(a.shape) != tuple(leaf.shape):
            raise RunDirError(f"checkpoint: {name} has shape {a.shape}, expected {leaf.shape}")
        out.append(jnp.asarray(a, dtype=leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)
