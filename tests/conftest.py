"""Every test runs on several CPU devices with rank promotion refused.

Strict dtype promotion (Equinox's habit) is not set: optax itself mixes int32 step counts with
float32 decays (bias correction), which strict mode rejects.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"
