"""The refusal of what cannot fit (docs/design.md §8): one line naming the fields, the estimate
and the memory, raised by the trainers and the sweep before anything is allocated.

    check_fits(TrainConfig(...).cost().parts, "run")
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..host import host_memory_bytes
from .devices import device_memory_bytes
from .estimate import Part, total


def available() -> tuple[float, float, str]:
    """(device bytes, host bytes, wording) of this machine: the accelerator's memory when JAX
    runs on one that reports it, else the host's RAM for both."""
    host = float(host_memory_bytes())
    dev = device_memory_bytes()
    if dev is None:
        return host, host, f"this machine's {gib(host)} of RAM"
    return float(dev[0]), host, f"the {dev[1]} of {gib(dev[0])} ({gib(host)} of host RAM)"


def fits(parts: Sequence[Part]) -> bool:
    """Whether the parts fit this machine (device and host apart where they are apart)."""
    device, host, _ = available()
    if device == host:  # CPU: one pool
        return total(parts) <= device
    return total(parts, "device") <= device and total(parts, "host") <= host


def check_fits(parts: Sequence[Part], what: str = "config") -> None:
    """Raise a ConfigError naming the largest part's fields when the estimate exceeds memory."""
    device, host, wording = available()
    shared = device == host
    need_dev = total(parts) if shared else total(parts, "device")
    need_host = 0.0 if shared else total(parts, "host")
    if (device and need_dev > device) or (host and not shared and need_host > host):
        where = None if shared else ("device" if need_dev > device else "host")
        big = max((p for p in parts if where in (None, p.where)), key=lambda p: p.nbytes)
        need = need_dev if where != "host" else need_host
        raise ConfigError(
            f"{', '.join(big.fields[:3])}: this {what} needs about {gib(need)} of memory "
            f"(largest part: {big.name}, {gib(big.nbytes)}), more than {wording}"
        )


def gib(n: float) -> str:
    """Bytes as GiB for a message: 3 significant digits, thousands separators beyond 1000."""
    g = n / 2**30
    return f"{g:,.0f} GiB" if g >= 1000 else f"{g:.3g} GiB"
