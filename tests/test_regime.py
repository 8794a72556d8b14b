"""The regime map end to end at tiny size: runs and fits are made once and reused, the tables
hold every regime x model x seed, and the discrepancy is the pre-registered one."""

import pandas as pd
import pytest

from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.regime import RegimeConfig, regimes

TINY = """
[map]
sizes = [{ n_layer = 1, n_head = 1, head_dim = 4 }]
K = [16, 32]
L = 8
seeds = [0, 1]
fits = ["GRID"]
[train]
steps = 200
batch = 16
num_evals = 6
max_chunk = 100
eval_chunk = 32
"""

GRID = """
[grid]
mode = ["expected"]
w = [3]
d = [2]
scale = [0.1]
refit_seeds = 1
num_evals = 6
[[optimizers]]
name = "adam"
lr = [1e-2]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("regime")
    (root / "grid.toml").write_text(GRID)
    cfg = root / "regime.toml"
    cfg.write_text(TINY.replace("GRID", str(root / "grid.toml")))
    assert main(["regime", str(cfg), "--out", str(root / "out")]) == 0
    return root, cfg


@pytest.mark.slow  # a whole tiny map (runs, fits, predictions): about 35 s
def test_every_regime_model_and_seed_is_in_the_tables(tiny):
    root, cfg = tiny
    lags = pd.read_csv(root / "out" / "regime_lags.csv")
    assert set(lags.regime) == {r.name for r in regimes(load_config(RegimeConfig, cfg))}
    assert set(lags.model) == {"transformer", "grid"}
    t = lags[lags.model == "transformer"]
    assert set(t.seed) == {0, 1}
    assert (lags.x > 0).all() and (lags.n_params > 0).all()
    verdicts = pd.read_csv(root / "out" / "regime_verdicts.csv")
    assert len(verdicts) == 2 and set(verdicts.K) == {16, 32}
    assert set(verdicts.columns) >= {"agrees", "transformer_lags"}
    for name in ("regime_map.png", "regime_map.pdf", "regime_map.csv", "regime_discrepancy.csv"):
        assert (root / "out" / name).stat().st_size > 0
    pred = pd.read_csv(root / "out" / "regime_predictions.csv")
    assert set(pred.source) == {"l1h1d4-K16"} and set(pred.target) == {"l1h1d4-K32"}
    curve = pred[pred.verdict == "curve"]
    assert len(curve) and curve.z.notna().any()


@pytest.mark.slow  # a second whole map; runs.reuse has its own tests
def test_a_second_call_reuses_runs_and_fits(tiny, capsys):
    root, cfg = tiny
    before = {p: p.stat().st_mtime_ns for p in (root / "out" / "runs").rglob("evals.parquet")}
    assert main(["regime", str(cfg), "--out", str(root / "out")]) == 0
    after = {p: p.stat().st_mtime_ns for p in (root / "out" / "runs").rglob("evals.parquet")}
    assert before == after and len(before) == 4


def test_a_bad_map_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[map]\nseeds = [0, 0]\n")
    assert main(["regime", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "map.seeds" in err and "\n" not in err


def test_the_capacity_table_of_phenomjax_capacity_is_read(tmp_path):
    from phenomjax.regime import _capacity

    path = tmp_path / "capacity_sizes.csv"
    path.write_text("model,size,capacity\ntransformer,1x1x8,507.5\nphenom,w6 d2,1202.0\n")
    assert _capacity(str(path)) == {"l1h1d8": 507.5}
    path.write_text("model,size,capacity\ntransformer,big,1.0\n")
    with pytest.raises(Exception, match="expected n_layer x n_head x head_dim"):
        _capacity(str(path))


def test_the_shipped_regime_map_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(RegimeConfig, root / "experiments" / "regime_cpu.toml")
    cfg.map.validate()
    assert len(regimes(cfg)) == 6 and len(cfg.map.seeds) >= 3
