"""What a run costs, in the words every model family answers in (docs/design.md §1).

A family (phenomjax.transformer.cost, phenomjax.phenom.cost) turns its config into a `Cost`:
parameter counts, the `Work` of one step and of one evaluation, and the peak memory as a list of
`Part`s. A config names its family by its `cost()` method, so the report (report.py) and the
refusal (memory.check_fits) never ask which model a config is.

A part is (name, bytes, fields): `fields` names the config fields that part grows with, so a
refusal can say which to lower. Host and device parts are listed apart; on a CPU they share the
same RAM and are summed. The parts of the bits and of the shared training loop (its per-chunk
loss buffer and train rows) are the same for every family and are built here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

from .timing import Probe

F32 = 4  # bytes of a float32


@dataclasses.dataclass(frozen=True)
class Work:
    """One unit of device work (a training step or a full evaluation)."""

    flops: float  # floating-point operations
    nbytes: float  # bytes read and written in device memory (roofline traffic)
    kernels: float  # kernel launches (for the per-launch cost of small models on GPUs)


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a run's peak memory."""

    name: str
    nbytes: float
    fields: tuple[str, ...]  # the config fields this part grows with
    where: str = "device"  # "device" or "host"


@dataclasses.dataclass(frozen=True)
class Cost:
    """What one run, or one sweep group of vmapped members, costs: from its config alone."""

    kind: str  # "transformer", "phenom" or "sweep": the report's kind
    what: str  # how the report names it, e.g. "transformer training"
    params: int  # parameters of one member
    trainable: int  # of which trained
    step: Work  # one member's optimizer step
    evaluation: Work  # one member's evaluation of all K sequences
    parts: tuple[Part, ...]  # peak memory, every member included
    members: int = 1
    seeds: int = 1
    probe: Callable[[], Probe] | None = None  # builds the real programs, to time them here


def total(parts: Iterable[Part], where: str | None = None) -> float:
    """Bytes of the parts (of one side, "device" or "host", when `where` says so)."""
    return float(sum(p.nbytes for p in parts if where is None or p.where == where))


def tree_bytes(tree: Any) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of a pytree."""
    return int(
        sum(
            int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
            for x in jax.tree_util.tree_leaves(tree)
            if hasattr(x, "dtype") and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        )
    )


def tree_size(tree: Any) -> int:
    """Elements of every leaf of a pytree."""
    return int(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree)))


def bits_parts(K: int, L: int, copies: int = 1, device_itemsize: int = 4) -> list[Part]:
    """The K x L bits: drawn as float32 uniforms then bools (transient), kept as uint8 on the host
    and as `device_itemsize`-byte integers on the device."""
    kl = float(K) * float(L) * copies
    return [
        Part("bits: sampling (uniforms, transient)", 5 * kl / copies, ("data.K", "data.L"), "host"),
        Part("bits: host copy (uint8)", kl, ("data.K", "data.L"), "host"),
        Part("bits: device copy", device_itemsize * kl, ("data.K", "data.L")),
    ]


# Bytes per train row, measured (tracemalloc, plus the device's step and rate arrays): ~33
# while one chunk's rows are built, ~49 at a flush, which concatenates every row kept so far
# (17 bytes each) and hands them to pyarrow.
CHUNK_ROW = 40
KEPT_ROW = 64


def loop_parts(chunk: int, steps: int, *, train_rows: bool = True) -> list[Part]:
    """The shared training loop (phenomjax.training): the per-step loss buffer of one chunk on
    the device and its copy on the host, and where the run logs them, the train rows of one
    chunk and of the whole run. `chunk` is the loss buffer's length (Schedule.chunk)."""
    sized = ("train.max_chunk", "train.steps")
    parts = [
        Part("per-step losses of one chunk (device)", F32 * float(chunk), sized),
        Part("per-step losses of one chunk (host copy)", F32 * float(chunk), sized, "host"),
    ]
    if train_rows:
        parts += [
            Part("train rows of one chunk", CHUNK_ROW * float(chunk), sized, "host"),
            Part(
                "train rows (all steps, at a flush)",
                KEPT_ROW * float(steps),
                ("train.steps",),
                "host",
            ),  # fmt: skip
        ]
    return parts
