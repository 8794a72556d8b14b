"""scripts/match_v1.py: a capacity table in, V1's matched D_eff per transformer size out."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("match_v1", ROOT / "scripts" / "match_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matches_each_transformer_row(tmp_path):
    sizes = tmp_path / "capacity_sizes.csv"
    pd.DataFrame({"model": ["transformer", "phenom"], "size": ["1x1x8", "w6 d2"],
                  "params": [1178, 3846], "capacity": [300.0, 80.0],
                  "estimate": ["converged", "lower bound"]}).to_csv(sizes, index=False)  # fmt: skip
    assert _script().main([str(sizes), "--length", "16"]) == 0
    out = pd.read_csv(tmp_path / "v1_match.csv")
    assert list(out["size"]) == ["1x1x8"]
    assert out["v1_bits"].iloc[0] == pytest.approx(300.0, rel=0.05)


def test_bad_table_is_one_line(tmp_path, capsys):
    bad = tmp_path / "capacity_sizes.csv"
    bad.write_text("a,b\n1,2\n")
    assert _script().main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected columns" in err
