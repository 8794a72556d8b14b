"""The data of docs/design.md §2: Zipf weights, random bit sequences, on-device batch sampling and
exact presentation counts.

Rank k = 0..K-1, rank 0 most frequent, p_k proportional to (k+1)^-alpha.

The bits and the Zipf weights are NumPy, so the analysis (floors of a run on disk) never imports
JAX; the key streams and the on-device sampling import it when first called.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    import jax

# Named key streams, split once from the root key (Levanter style). Appending a name keeps the
# earlier streams unchanged; never reorder.
STREAMS = ("bits", "init", "batches", "eval", "sweep")

# Ranks, positions and presentation counts are int32 on the device.
INT32_MAX = 2**31 - 1
# Seeds: JAX's default keys take 32 bits, so any other integer would alias one of these.
SEED_RANGE = 2**32


def check_seed(seed: object, *, where: str = "data.seed") -> int:
    """`seed` as an int when it is an integer in [0, 2^32), else a DataError naming `where`.

    The one seed rule (train, train-phenom, sweep, analyze, fit): a seed outside the range would
    silently alias seed mod 2^32, and one run would be another's copy under a different name."""
    ok = isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))
    if not ok or not 0 <= int(seed) < SEED_RANGE:
        shown = repr(seed) if len(repr(seed)) <= 40 else repr(seed)[:40] + "..."
        raise DataError(f"{where}: expected an integer in [0, 2^32), got {shown}")
    return int(seed)


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
            check_seed(self.seed)
        except DataError as e:
            raise ConfigError(str(e)) from None


def key_streams(seed: int) -> dict[str, jax.Array]:
    """One root key, split once into the named streams of STREAMS."""
    import jax

    keys = jax.random.split(jax.random.key(check_seed(seed, where="seed")), len(STREAMS))
    return dict(zip(STREAMS, keys, strict=True))


def zipf_weights(K: int, alpha: float = 1.0) -> np.ndarray:
    """p_k = (k+1)^-alpha / sum_j (j+1)^-alpha, float64, shape (K,)."""
    check_sizes(K, 2, alpha)
    w = np.arange(1, K + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_U32 = 0xFFFFFFFF


def _threefry2x32(
    k1: int, k2: int, x0: np.ndarray, x1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash (20 rounds, Salmon et al. 2011) of the counter pairs (x0, x1)
    under the key (k1, k2), as jax.random's default threefry2x32 computes it; uint32 arrays."""
    ks = (k1, k2, k1 ^ k2 ^ 0x1BD11BDA)
    x0 = x0 + np.uint32(ks[0])
    x1 = x1 + np.uint32(ks[1])
    tmp = np.empty_like(x1)
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 += x1
            np.left_shift(x1, np.uint32(r), out=tmp)  # x1 = rotl(x1, r) ^ x0, in place
            x1 >>= np.uint32(32 - r)
            x1 |= tmp
            x1 ^= x0
        x0 += np.uint32(ks[(i + 1) % 3])
        x1 += np.uint32((ks[(i + 2) % 3] + i + 1) & _U32)  # key arithmetic in Python ints
    return x0, x1


def make_bits(seed: int, K: int, L: int, *, chunk: int = 1 << 16) -> np.ndarray:
    """K i.i.d. uniform sequences of L bits, fixed by seed; uint8 array (K, L).

    Bit for bit `jax.random.bernoulli(key_streams(seed)["bits"], 0.5, (K, L))` under JAX's
    defaults (threefry2x32, partitionable counters, 32-bit seeds: check_seed),
    computed in NumPy so that a floor never needs JAX. With the key (k1, k2) of the "bits"
    stream, element n is 1 exactly when the top bit of the two hashed words of the counter
    (n >> 32, n mod 2^32), xor-ed, is 0 (uniform() < 0.5 in float32). `chunk` bounds memory.
    """
    check_sizes(K, L, 0.0)
    seed = check_seed(seed, where="seed")
    zero = np.zeros(1, dtype=np.uint32)
    # jax.random.key(seed) is (0, seed mod 2^32) in 32-bit mode; split(key, 5)[i] hashes the
    # counter (0, i); "bits" is stream 0
    a, b = _threefry2x32(0, seed & _U32, zero, zero.copy())
    k1, k2 = int(a[0]), int(b[0])
    n = K * L
    out = np.empty(n, dtype=np.uint8)
    for s in range(0, n, chunk):
        count = np.arange(s, min(s + chunk, n), dtype=np.uint64)
        hi = (count >> np.uint64(32)).astype(np.uint32)
        x0, x1 = _threefry2x32(k1, k2, hi, count.astype(np.uint32))
        x0 ^= x1
        x0 >>= np.uint32(31)
        np.subtract(1, x0, out=out[s : s + len(count)], casting="unsafe")
    return out.reshape(K, L)


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
    import jax.numpy as jnp

    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    return jnp.asarray(cdf, dtype=jnp.float32)


def sample_ranks(key: jax.Array, cdf: jax.Array, batch: int) -> jax.Array:
    """Draw `batch` ranks i.i.d. from the distribution with CDF `cdf`.

    searchsorted on the CDF is O(batch log K); jax.random.categorical would be O(batch K).
    """
    import jax
    import jax.numpy as jnp

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


def head_and_constant_tail(
    bits: np.ndarray, weights: np.ndarray, head: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The V3 control (issue 18): ranks 0..head-1 kept, the tail replaced by ONE constant
    sequence (all zeros) carrying the tail's total mass. (head + 1, L) bits and weights.

    Cross-talk from an unlearned tail (V3) needs many tail sequences; one constant sequence
    has none of it, while a finite shared readout (V1) still deflates the rarer head ranks.
    """
    bits, weights = check_bits(bits), np.asarray(weights, np.float64)
    if not 1 <= head < len(bits):
        raise DataError(f"head: expected an integer in [1, {len(bits) - 1}], got {head!r}")
    tail = np.zeros((1, bits.shape[1]), np.uint8)
    return np.concatenate([bits[:head], tail]), np.append(weights[:head], weights[head:].sum())
