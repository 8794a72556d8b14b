"""The regime map end to end at tiny size: runs and fits are made once and reused, the tables
hold every regime x model x seed, and the discrepancy is the pre-registered one."""

import math

import pandas as pd
import pytest

from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.errors import DataError
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
    from phenomjax.regime_capacity import read_table

    path = tmp_path / "capacity_sizes.csv"
    path.write_text(
        "model,size,capacity,estimate,params\n"
        "transformer,1x1x8,507.5,converged,1050\nphenom,w6 d2,1202.0,lower bound,902\n"
    )
    assert read_table(str(path)) == {"l1h1d8": (507.5, "converged", 1050)}
    path.write_text("model,size,capacity,estimate,params\ntransformer,big,1.0,converged,3\n")
    with pytest.raises(DataError, match="expected n_layer x n_head x head_dim"):
        read_table(str(path))
    path.write_text("model,size,capacity\ntransformer,1x1x8,507.5\n")
    with pytest.raises(DataError, match="capacity_sizes.csv with columns"):
        read_table(str(path))
    with pytest.raises(DataError, match="missing.csv"):
        read_table(str(tmp_path / "missing.csv"))


def test_a_size_takes_its_capacity_from_the_table_else_the_rule():
    from phenomjax.regime_capacity import size_capacity

    table = {"l1h1d8": (507.5, "converged", 1050)}
    cap = size_capacity("l1h1d8", 1050, table, 2.0)
    assert (cap.bits, cap.source, cap.fitted) == (507.5, "table (converged)", False)
    cap = size_capacity("l2h2d8", 6914, table, 1.5)
    assert cap.bits == pytest.approx(1.5 * 6914) and cap.source == "rule 1.5 bits/param"
    cap = size_capacity("l2h2d8", 6914, table, 0.0)
    assert math.isnan(cap.bits) and cap.source == ""
    # a table measured at another L counts other parameters (positions): refused, one line
    with pytest.raises(DataError, match="expected a table measured at the map's L"):
        size_capacity("l1h1d8", 1178, table, 1.0)


def test_matching_sets_d_eff_and_refuses_one_past_the_cost_cap():
    from phenomjax.regime_capacity import SizeCapacity, matched

    said = []
    cap = matched(SizeCapacity(300.0, "table (converged)"), 16, 16384, said.append)
    assert cap.fitted and cap.how == "measured"
    assert cap.v1_bits == pytest.approx(300.0, rel=0.05)
    row = cap.row()
    assert row["D_eff"] == cap.D_eff and row["capacity_bits"] == 300.0
    # far past the cap: placed by the rule from the largest measured D_eff, and not fitted
    cap = matched(SizeCapacity(1e6, "rule 10 bits/param"), 16, 64, said.append)
    assert not cap.fitted and "max_D_eff: not fitted" in cap.how
    assert math.isnan(cap.row()["D_eff"]) and "exceeds map.max_D_eff 64" in said[-1]
    assert matched(SizeCapacity(math.nan, ""), 16, 64).how == "no capacity: not matched"


def test_the_shipped_regime_map_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(RegimeConfig, root / "experiments" / "regime_cpu.toml")
    cfg.map.validate()
    assert len(regimes(cfg)) == 6 and len(cfg.map.seeds) >= 3


@pytest.mark.parametrize("name", ["fit_v1", "fit_v2", "fit_variant"])
def test_the_shipped_fit_grids_load_and_their_variants_own_their_knobs(name):
    from pathlib import Path

    from phenomjax.fitting.grid import FitGridConfig, grid_cost

    root = Path(__file__).resolve().parents[1]
    grid = load_config(FitGridConfig, root / "experiments" / f"{name}.toml", [])
    grid.validate()
    assert grid_cost(grid, K=256).groups >= 1
