"""scripts/match_v1.py: a capacity table in, V1's matched D_eff per transformer size out."""

import pandas as pd
import pytest


def test_matches_each_transformer_row(load_script, tmp_path):
    sizes = tmp_path / "capacity_sizes.csv"
    pd.DataFrame({"model": ["transformer", "phenom"], "size": ["1x1x8", "w6 d2"],
                  "params": [1178, 3846], "capacity": [300.0, 80.0],
                  "estimate": ["converged", "lower bound"]}).to_csv(sizes, index=False)  # fmt: skip
    assert load_script("match_v1").main([str(sizes), "--length", "16"]) == 0
    out = pd.read_csv(tmp_path / "v1_match.csv")
    assert list(out["size"]) == ["1x1x8"]
    assert out["v1_bits"].iloc[0] == pytest.approx(300.0, rel=0.05)


def test_bad_table_is_one_line(load_script, tmp_path, capsys):
    bad = tmp_path / "capacity_sizes.csv"
    bad.write_text("a,b\n1,2\n")
    assert load_script("match_v1").main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected columns" in err
