"""Every test runs on several CPU devices with rank promotion refused.

Strict dtype promotion (Equinox's habit) is not set: optax itself mixes int32 step counts with
float32 decays (bias correction), which strict mode rejects.
"""

import os

# Tests compile hundreds of small programs and run each for a few steps, so compiling is most of
# the suite's time. At -O1 XLA's CPU backend compiles 1.3-3.6x faster than at its default -O2
# (a threefry draw 3.4 s -> 0.9 s) and runs these programs as fast (-O0 compiles faster still
# but runs 3.7x slower). Rounding differs from -O2 (a training run's curve drifts by ~0.1 nats
# over 500 steps), so no test compares with numbers made at another level; the package itself
# keeps XLA's default.
FAST_COMPILE = "--xla_backend_optimization_level=1"  # subprocess tests add it to their flags
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"
