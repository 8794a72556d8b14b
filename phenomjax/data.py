"""The data of docs/design.md §2: Zipf weights, random bit sequences, on-device batch sampling and
exact presentation counts.

Rank k = 0..K-1, rank 0 most frequent, p_k proportional to (k+1)^-alpha.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ConfigError, DataError

# Named key streams, split once from the root key (Levanter style). Appending a name keeps the
# earlier streams unchanged; never reorder.
STREAMS = ("bits", "init", "batches", "eval", "sweep")

# Ranks, positions and presentation counts are int32 on the device.
INT32_MAX = 2**31 - 1


def check_sizes(K: int, L: int, alpha: float, *, where: str = "data") -> None:
    """Raise a DataError naming the field when K, L or alpha are out of range."""
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or not 1 <= K <= INT32_MAX:
        raise DataError(f"{where}.K: expected an integer in [1, {INT32_MAX}], got {K!r}")
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or not 2 <= L <= INT32_MAX:
        raise DataError(f"{where}.L: expected an integer in [2, {INT32_MAX}], got {L!r}")
    if not np.isfinite(alpha) or alpha < 0:
        raise DataError(f"{where}.alpha: expected a finite number >= 0, got {alpha!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    K: int = 1000  # number of sequences; rank k = 0..K-1, rank 0 the most frequent
    L: int = 32  # bits per sequence; positions 1..L-1 are predicted
    alpha: float = 1.0  # Zipf exponent of the sampling weights; 0 is uniform
    seed: int = 0  # root seed of every key stream (bits, init, batches, ...)

    def validate(self) -> None:
        try:
            check_sizes(self.K, self.L, self.alpha, where="data")
        except DataError as e:
            raise ConfigError(str(e)) from None


def key_streams(seed: int) -> dict[str, jax.Array]:
    """One root key, split once into the named streams of STREAMS."""
    keys = jax.random.split(jax.random.key(seed), len(STREAMS))
    return dict(zip(STREAMS, keys, strict=True))


def zipf_weights(K: int, alpha: float = 1.0) -> np.ndarray:
    """p_k = (k+1)^-alpha / sum_j (j+1)^-alpha, float64, shape (K,)."""
    check_sizes(K, 2, alpha)
    w = np.arange(1, K + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


def make_bits(seed: int, K: int, L: int) -> np.ndarray:
    """K i.i.d. uniform sequences of L bits, fixed by seed; uint8 array (K, L)."""
    check_sizes(K, L, 0.0)
    bits = jax.random.bernoulli(key_streams(seed)["bits"], 0.5, (K, L))
    return np.asarray(bits, dtype=np.uint8)


def check_bits(bits: np.ndarray, *, name: str = "bits") -> np.ndarray:
    """Validate a (K, L) array of bits in {0, 1}; returns it as uint8."""
    arr = np.asarray(bits)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
        raise DataError(f"{name}: expected shape (K >= 1, L >= 2), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: contains NaN or inf; expected bits in {{0, 1}}")
    if not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise DataError(f"{name}: expected bits in {{0, 1}}, found values {bad.tolist()}")
    return arr.astype(np.uint8)


def zipf_cdf(weights: np.ndarray) -> jax.Array:
    """float32 CDF for searchsorted sampling, computed in float64 then rounded once."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    return jnp.asarray(cdf, dtype=jnp.float32)


def sample_ranks(key: jax.Array, cdf: jax.Array, batch: int) -> jax.Array:
    """Draw `batch` ranks i.i.d. from the distribution with CDF `cdf`.

    searchsorted on the CDF is O(batch log K); jax.random.categorical would be O(batch K).
    """
    u = jax.random.uniform(key, (batch,), dtype=jnp.float32)
    ranks = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(ranks, cdf.shape[0] - 1).astype(jnp.int32)


def count_presentations(counts: jax.Array, ranks: jax.Array) -> jax.Array:
    """Add one presentation per drawn rank (repeats in a batch count each time)."""
    return counts.at[ranks].add(1)


def log_spaced_steps(total: int, n: int, *, include_zero: bool = True) -> np.ndarray:
    """About n distinct integer steps in [1, total], log-spaced, always ending at total.

    Every curve is read on log axes, so evaluations are spaced evenly in log(step).
    """
    if total < 1:
        raise DataError(f"steps: expected total >= 1, got {total}")
    if n < 1:
        raise DataError(f"num_evals: expected >= 1, got {n}")
    grid = np.unique(np.round(np.logspace(0.0, np.log10(total), n)).astype(np.int64))
    grid = np.unique(np.append(grid, total))
    if include_zero:
        grid = np.concatenate([[0], grid])
    return grid
