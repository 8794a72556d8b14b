"""This machine's RAM and what the analysis holds in it, without JAX, on the ground floor: the
run directory's checks, the analysis and plan/ (devices.py, memory.py) all read it here.

floor_bytes is the peak of load.bayes_reference, the one allocation of the analysis that grows
with a manifest's K x L rather than with the tables on disk: the refusal in analysis/load.py
compares it with the memory this process may use before make_bits runs.
"""

from __future__ import annotations

import os


def host_memory_bytes() -> int:
    """Total RAM of this machine (os.sysconf, else /proc/meminfo); 0 when neither answers."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def floor_bytes(K: int, L: int) -> float:
    """Peak bytes of the Bayes floor and ceiling of K sequences of L bits (load.bayes_reference):
    the bits (uint8) with check_bits' copy and masks (5 bytes a bit), the float64 loss and
    accuracy tables and their float32 copies (24 bytes a predicted bit), and ~16 arrays of K
    per-sequence group ids, codes and weights in bayes_tables (128 bytes a sequence)."""
    k, n = float(K), float(L)
    return 5 * k * n + 24 * k * (n - 1) + 128 * k
