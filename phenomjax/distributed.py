"""Several devices and several hosts on JAX's own machinery (docs/design.md §7).

One 1-D `jax.sharding.Mesh` per job: transformer batches and evaluation chunks are split over
its axis as "data", sweep members as "sweep". Arrays are annotated with sharding constraints
inside jit and XLA's SPMD partitioner inserts the collectives, so the numbers match one device
within float tolerance. Several hosts join through `jax.distributed.initialize()`; only
process 0 writes the run directory and prints.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .errors import ConfigError

ENV_FLAG = "PHENOMJAX_DISTRIBUTED"  # "1": call jax.distributed.initialize() from the environment


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    devices: int = 1  # devices in the mesh; 0 = every visible device (all hosts), 1 = no mesh
    initialize: bool = (
        False  # call jax.distributed.initialize() (multi-host); also env PHENOMJAX_DISTRIBUTED=1
    )
    coordinator: str = ""  # "host:port" of process 0; empty = let JAX read SLURM / TPU env
    num_processes: int = 0  # total processes; 0 = from the environment
    process_id: int = -1  # this process's index; -1 = from the environment

    def validate(self) -> None:
        if self.devices < 0:
            raise ConfigError(f"devices: expected >= 0, got {self.devices}")
        if self.num_processes < 0:
            raise ConfigError(f"num_processes: expected >= 0, got {self.num_processes}")


_initialized = False


def initialize(cfg: DistributedConfig | None = None) -> None:
    """Join a multi-process job when the config or PHENOMJAX_DISTRIBUTED asks for it. Idempotent."""
    global _initialized
    cfg = cfg or DistributedConfig()
    if _initialized or not (cfg.initialize or os.environ.get(ENV_FLAG) == "1"):
        return
    kwargs = {}
    if cfg.coordinator:
        kwargs["coordinator_address"] = cfg.coordinator
    if cfg.num_processes:
        kwargs["num_processes"] = cfg.num_processes
    if cfg.process_id >= 0:
        kwargs["process_id"] = cfg.process_id
    # CPU collectives across processes need gloo; GPU/TPU bring their own and ignore this.
    # (Asking jax.default_backend() here would start the backend before initialize may.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    _initialized = True


def is_main() -> bool:
    """Only process 0 writes files and prints progress."""
    return jax.process_index() == 0


def make_mesh(devices: int, axis: str) -> Mesh | None:
    """A 1-D mesh over `devices` devices (0 = all); None for a single device."""
    avail = jax.devices()
    n = len(avail) if devices == 0 else devices
    if n > len(avail):
        raise ConfigError(f"distributed.devices: asked for {n}, only {len(avail)} visible")
    if n <= 1:
        return None
    return Mesh(np.asarray(avail[:n]), (axis,))


def check_divisible(size: int, mesh: Mesh | None, what: str) -> None:
    if mesh is not None and size % mesh.size:
        raise ConfigError(f"{what}: {size} is not divisible by the {mesh.size} devices of the mesh")


def rows(mesh: Mesh | None) -> NamedSharding | None:
    """Split the leading axis over the mesh."""
    return None if mesh is None else NamedSharding(mesh, P(mesh.axis_names[0]))


def replicated(mesh: Mesh | None) -> NamedSharding | None:
    return None if mesh is None else NamedSharding(mesh, P())


def constrain_rows(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside jit: ask for x's leading axis split over the mesh (no-op without a mesh)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, rows(mesh))


def place(tree, sharding: NamedSharding | None):
    """Place a pytree of host-identical values on a (possibly multi-host) sharding.

    Each process supplies only its own shards (make_array_from_callback), which works where
    device_put of a process-local array cannot: across hosts. Typed PRNG keys travel as their
    raw key data and are re-wrapped.
    """
    if sharding is None:
        return tree

    def one(leaf):
        is_key = jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        host = np.asarray(jax.random.key_data(leaf) if is_key else leaf)
        spec = tuple(sharding.spec)[: host.ndim]
        sh = NamedSharding(sharding.mesh, P(*spec))
        arr = jax.make_array_from_callback(host.shape, sh, lambda idx: host[idx])
        return jax.random.wrap_key_data(arr, impl=jax.random.key_impl(leaf)) if is_key else arr

    return jax.tree_util.tree_map(one, tree)


def gather(x) -> np.ndarray:
    """A (possibly multi-host sharded) array as one NumPy array on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
