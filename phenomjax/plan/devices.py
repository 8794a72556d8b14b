"""Named accelerators, the roofline projection, and this machine's memory.

The projection of one step (or one evaluation) on an accelerator is

    t = max(flops / (peak * util), bytes / (bandwidth * util)) + kernels * launch_s

a roofline with one assumed utilization, plus a fixed cost per kernel launch (on GPUs a step of
a small model is many small kernels: for the paper's widths, 64 to 192, the launches, not the
arithmetic, set the pace). It is a projection, not a measurement; `scripts/accelerator_check.sh`
prints it next to the measured figures on the first accelerator run.
"""

from __future__ import annotations

import dataclasses

import jax

from ..host import host_memory_bytes  # noqa: F401  (re-exported: its old home)

# One utilization for every device: the fraction of peak FLOP/s and of peak bandwidth a step
# reaches. Stated in every report, since the projection is only as good as it.
UTILIZATION = 0.3


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: float  # dense bf16 FLOP/s from the vendor's data sheet
    bandwidth: float  # memory bandwidth, bytes/s
    memory: float  # device memory, bytes
    launch_s: float  # fixed cost per kernel in a step (GPU launch; TPU programs run fused)


DEVICES = (
    Accelerator("H100", 989e12, 3.35e12, 80 * 2**30, 5e-6),
    Accelerator("H200", 989e12, 4.8e12, 141e9, 5e-6),
    Accelerator("TPU v5e", 197e12, 819e9, 16 * 2**30, 1e-6),
)


def project_seconds(
    flops: float, nbytes: float, kernels: float, device: Accelerator, util: float = UTILIZATION
) -> float:
    """Seconds of one step on `device`: the roofline at `util` plus the kernel launches."""
    compute = flops / (device.peak_flops * util)
    memory = nbytes / (device.bandwidth * util)
    return max(compute, memory) + kernels * device.launch_s


def device_memory_bytes() -> tuple[int, str] | None:
    """(bytes, name) of the first accelerator's memory when JAX runs on one and reports it.

    Starts JAX's backend: call it only after jax.distributed.initialize (if any).
    """
    if jax.default_backend() == "cpu":
        return None
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if not stats or not stats.get("bytes_limit"):
        return None
    return int(stats["bytes_limit"]), f"{dev.device_kind} memory"
