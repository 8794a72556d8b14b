"""scripts/results.py's capacity section: the memorized bits of every (size, K) at each budget."""

import pandas as pd


def test_the_budget_table_has_a_row_per_size_K_and_a_column_per_budget(tmp_path, load_script):
    results = load_script("results")
    assert results._budget_lines(tmp_path / "runs.csv") == []  # no runs table: no section
    rows = [("transformer", "bracket", 1, 1, 8, 76, e, b) for e, b in ((1000, 654.4), (2000, 860))]
    rows += [("transformer", "bracket", 1, 2, 8, 251, 1000, 2323.0),
             ("transformer", "lr_sweep", 1, 2, 8, 251, 1000, 1588.0),
             ("phenom", "phenom", None, None, None, 251, None, 900.0)]  # fmt: skip
    cols = ["model", "role", "n_layer", "n_head", "head_dim", "K", "exposures", "memorized_bits"]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "runs.csv", index=False)
    text = "\n".join(results._budget_lines(tmp_path / "runs.csv"))
    assert "| size | K | 1000 | 2000 |" in text
    assert "| 1x1x8 | 76 | 654 | 860 |" in text
    assert "| 1x2x8 | 251 | 2323 | - |" in text  # the lr sweep's 1588 is not a budget of the chain
