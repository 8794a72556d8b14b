"""Which K a size trains (docs/design.md §9): an adaptive bracket around its peak of memorized
bits, instead of one K ladder for every size.

Start from an estimate of its capacity (`guess` bits per parameter, K0 = guess * params / (L - 1)
sequences) and train K at `factors` times K0 (0.3x, 1x, 3x). Then, while the peak of memorized
bits over K sits at an edge of what was trained, step past that edge (`step` times K); once it
has a lower and a higher neighbour, bisect in log K on the wider side until both neighbours are
within `resolution` of the peak. A top K within `flat` of the K below it is a plateau (memorized
bits stop growing with K: that is the capacity) and counts as bracketed. At most `max_K` K.

    first_K(1178, 32, BracketSection())  # [23, 76, 228]
    next_K({23: 700.0, 76: 2100.0, 228: 1800.0}, BracketSection())  # 42, between 23 and 76
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .config import BracketSection


def estimate_K(params: int, L: int, rule: BracketSection) -> int:
    """K0 = guess * params / (L - 1): the K whose dataset holds the guessed capacity."""
    return max(rule.min_K, round(rule.guess * params / (L - 1)))


def first_K(params: int, L: int, rule: BracketSection) -> list[int]:
    """The first K of a size: factors x K0, K0 = guess * params / (L - 1), distinct, sorted."""
    k0 = rule.guess * params / (L - 1)
    return sorted({max(rule.min_K, round(f * k0)) for f in rule.factors})


def bracketed(bits: Mapping[int, float], rule: BracketSection) -> bool:
    """Whether the peak of memorized bits over K has a neighbour on each side, or sits on a
    plateau at the top K (within `flat` of the K below it)."""
    Ks = sorted(bits)
    i = max(range(len(Ks)), key=lambda j: (bits[Ks[j]], -Ks[j]))  # the smallest K of a tie
    if 0 < i < len(Ks) - 1:
        return True
    if i == len(Ks) - 1 and len(Ks) >= 2:
        return bits[Ks[-1]] <= (1 + rule.flat) * bits[Ks[-2]]
    return False


def next_K(bits: Mapping[int, float], rule: BracketSection) -> int | None:
    """The next K to train given memorized bits per K so far, or None when the peak is
    bracketed to `resolution`, `max_K` are spent, or no new K is left (see the module)."""
    if len(bits) >= rule.max_K or not bits:
        return None
    Ks = sorted(bits)
    i = max(range(len(Ks)), key=lambda j: (bits[Ks[j]], -Ks[j]))
    if not bracketed(bits, rule):
        if i == 0:
            k = math.floor(Ks[0] / rule.step)
            return k if k >= rule.min_K and k not in bits else None
        return math.ceil(Ks[-1] * rule.step)
    if i == len(Ks) - 1:  # a plateau at the top
        return None
    lo, peak, hi = Ks[i - 1], Ks[i], Ks[i + 1]
    below, above = peak / lo, hi / peak
    if max(below, above) <= rule.resolution:
        return None
    a, b = (lo, peak) if below >= above else (peak, hi)
    k = round(math.sqrt(a * b))
    return k if a < k < b and k not in bits else None
