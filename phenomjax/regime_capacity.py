"""Capacity matching on the regime map (issue 18, docs/design.md §6): each regime's transformer
capacity in bits, and the D_eff of V1 whose own measured capacity equals it, so that V1's
capacity knob is set by the transformer and only its dynamics (lr, scale, shift) are fitted.

A size's capacity comes from a capacity table (`phenomjax capacity`'s capacity_sizes.csv, at
the map's L: its parameter count must be the map's), else from a rate, bits_per_param x the
size's parameters (all of them, as the table's bits_per_param). The source is recorded with it.
V1's cost per row grows with D_eff (a tanh per feature and position), so a matched D_eff above
map.max_D_eff is not fitted: the regime says so instead of fitting V1 at a D_eff it was not
matched to.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from .errors import DataError

MATCHED = ("v1", "v2")  # variants with a capacity knob (D_eff) that the map sets by matching


@dataclasses.dataclass(frozen=True)
class SizeCapacity:
    """A transformer size's capacity and V1's D_eff matched to it."""

    bits: float  # the transformer's capacity in bits (nan: unknown)
    source: str  # "table (converged)", "rule 1.5 bits/param", or "" when unknown
    D_eff: int = 0  # V1's matched D_eff (0: not matched)
    v1_bits: float = math.nan  # V1's measured capacity at D_eff (nan: not measured)
    how: str = ""  # match_d_eff's "how", or why V1 is not fitted

    @property
    def fitted(self) -> bool:
        """V1 is fitted at this size: a D_eff was matched within the cost cap."""
        return self.D_eff > 0

    def row(self) -> dict:
        return {"capacity_bits": self.bits, "capacity_source": self.source,
                "D_eff": self.D_eff or math.nan, "v1_capacity_bits": self.v1_bits,
                "D_eff_how": self.how}  # fmt: skip


def read_table(path: str) -> dict[str, tuple[float, str, int]]:
    """size name (l<layers>h<heads>d<head_dim>) -> (capacity in bits, its estimate, params),
    from the transformer rows of a capacity_sizes.csv (size reads n_layer x n_head x head_dim)."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: expected a capacity_sizes.csv ({e})") from None
    need = ("model", "size", "capacity", "estimate", "params")
    if any(c not in table.columns for c in need):
        raise DataError(f"{path}: expected a capacity_sizes.csv with columns {list(need)}")
    out = {}
    for r in table[table["model"] == "transformer"].itertuples():
        try:
            n_layer, n_head, head_dim = (int(v) for v in str(r.size).split("x"))
        except ValueError:
            raise DataError(
                f"{path}: size {r.size!r}: expected n_layer x n_head x head_dim"
            ) from None
        out[f"l{n_layer}h{n_head}d{head_dim}"] = (float(r.capacity), str(r.estimate),
                                                  int(r.params))  # fmt: skip
    return out


def size_capacity(name: str, n_params: int, table: dict, bits_per_param: float,
                  where: str = "map.capacity") -> SizeCapacity:  # fmt: skip
    """The capacity of size `name` with n_params parameters: the table's row, else the rate's."""
    if name in table:
        bits, estimate, params = table[name]
        if params != n_params:
            raise DataError(
                f"{where}: size {name} has {params} parameters in the table but {n_params} in"
                f" the map's runs: expected a table measured at the map's L"
            )
        return SizeCapacity(bits, f"table ({estimate})")
    if bits_per_param > 0:
        return SizeCapacity(bits_per_param * n_params, f"rule {bits_per_param:g} bits/param")
    return SizeCapacity(math.nan, "")


def matched(cap: SizeCapacity, L: int, max_D_eff: int, emit=lambda _: None) -> SizeCapacity:
    """`cap` with V1's D_eff matched to its bits (capacity.match.match_d_eff), or with the reason
    it is not: unknown capacity, or a D_eff past max_D_eff (placed by the linear rule alone)."""
    from .capacity.match import match_d_eff

    if not math.isfinite(cap.bits):
        return dataclasses.replace(cap, how="no capacity: not matched")
    m = match_d_eff(cap.bits, L, verify_max=min(4096, max_D_eff))
    if m["D_eff"] > max_D_eff:
        emit(f"[regime] V1: D_eff {m['D_eff']} matched to {cap.bits:.0f} bits exceeds"
             f" map.max_D_eff {max_D_eff}: not fitted")  # fmt: skip
        return dataclasses.replace(cap, how=f"D_eff {m['D_eff']} > max_D_eff: not fitted")
    emit(f"[regime] V1: D_eff {m['D_eff']} matched to {cap.bits:.0f} bits ({m['how']})")
    return dataclasses.replace(cap, D_eff=int(m["D_eff"]), v1_bits=float(m["measured_bits"]),
                               how=m["how"])  # fmt: skip
