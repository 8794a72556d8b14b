"""scripts/v3_transformer.py: its Zipf arm is the regime map's own run, number for number (the
hand-written loop trains what `phenomjax train` trains), and the cut arm trains on head + 1."""

import numpy as np

from phenomjax.analysis.lag import bin_lag, rank_crossings
from phenomjax.config import load_config
from phenomjax.data import make_bits, zipf_weights
from phenomjax.regime import RegimeConfig, lag_of, regimes, train_regime

TOML = """
[map]
sizes = [{ n_layer = 1, n_head = 1, head_dim = 8 }]
K = [64]
L = 8
seeds = [0]
fits = ["fit_demo"]
[train]
steps = 60
batch = 16
num_evals = 5
max_chunk = 25
"""


def test_the_zipf_arm_is_the_run_and_the_cut_arm_keeps_the_head(tmp_path, load_script):
    v3 = load_script("v3_transformer")
    path = tmp_path / "regime.toml"
    path.write_text(TOML)
    (r,) = regimes(load_config(RegimeConfig, path))
    cfg = r.configs[0]
    bits, w = make_bits(0, 64, 8), zipf_weights(64, 1.0)
    ev = v3.train_arm(cfg, bits, w, "zipf")
    run = train_regime(r, tmp_path / "out", progress=False) / "seed-0"
    ref = lag_of(run, 64)
    mine = bin_lag(rank_crossings(ev), K=64)
    np.testing.assert_allclose(mine["median_presentations"], ref["median_presentations"],
                               rtol=1e-5)  # fmt: skip
    t = v3.measure(str(path), "l1h1d8-K64")
    assert set(t["data"]) == {"zipf", "head + constant tail"}
    assert len(t) == 2 * 3  # two arms x three levels, ranks 5-9 only
    assert "seeds" in v3.summary(t).columns
    assert v3.main(["--config", str(path), "--regime", "nope"]) == 2
