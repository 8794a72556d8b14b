"""Match V1's capacity knob D_eff to measured transformer capacities (capacity/match.py).

    python scripts/match_v1.py runs/capacity_cpu/capacity_sizes.csv --length 32

For each transformer row of a `phenomjax capacity` table: its capacity in bits (and whether it
converged or is a lower bound), the D_eff whose V1 capacity on uniform data of that length
matches it, and V1's capacity measured at that D_eff. Writes v1_match.csv beside the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from phenomjax.capacity.match import match_d_eff
from phenomjax.errors import PhenomjaxError
from phenomjax.runs import atomic_write


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", type=Path, help="a capacity_sizes.csv from phenomjax capacity")
    ap.add_argument("--length", type=int, default=32, help="L of the capacity runs (bits)")
    ap.add_argument("--seed", type=int, default=0, help="seed of V1's map and data")
    a = ap.parse_args(argv)
    try:
        table = pd.read_csv(a.sizes)
    except (OSError, ValueError) as e:
        print(f"phenomjax: {a.sizes}: expected a capacity_sizes.csv ({e})", file=sys.stderr)
        return 2
    need = {"model", "size", "params", "capacity", "estimate"}
    if not need <= set(table.columns):
        print(f"phenomjax: {a.sizes}: expected columns {sorted(need)}", file=sys.stderr)
        return 2
    rows = []
    try:
        for r in table[table["model"] == "transformer"].itertuples():
            m = match_d_eff(float(r.capacity), a.length, seed=a.seed)
            rows.append({"size": r.size, "params": r.params, "transformer_bits": r.capacity,
                         "transformer_estimate": r.estimate, "D_eff": m["D_eff"],
                         "v1_bits": m["measured_bits"], "how": m["how"],
                         "v1_bits_per_feature_at_64": m["bits_per_feature"]})  # fmt: skip
            print(f"{r.size}: transformer {r.capacity:.0f} bits ({r.estimate}) -> D_eff "
                  f"{m['D_eff']}, V1 {m['measured_bits']:.0f} bits", flush=True)  # fmt: skip
    except PhenomjaxError as e:
        print(f"phenomjax: {e}", file=sys.stderr)
        return 2
    out = a.sizes.with_name("v1_match.csv")
    df = pd.DataFrame(rows)
    atomic_write(out, lambda p: df.to_csv(p, index=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
