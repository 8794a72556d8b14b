"""The analysis path imports no JAX, and what replaced JAX on it computes the same numbers.

Every check of `sys.modules` runs in a fresh interpreter: this test process imported JAX in
conftest. Runs are written here (RunDir.create records the JAX environment) and read there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from fitting.reports import synthetic_report, write_fit_folder
from fixtures.legacy_logs import write_legacy_log
from fixtures.run_dirs import make_run_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.analysis import binning
from phenomjax.data import key_streams, make_bits

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "jaxlib", "pandas", "numpy", "matplotlib", "pyarrow")


def _fresh(code: str, cwd: Path) -> dict:
    """Run `code` (indented or not) in a new interpreter, then print the heavy modules it
    loaded and its OUT as one JSON line; returns that."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    code = textwrap.dedent(code) + LOADED
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOADED = f"""
import json, sys
print(json.dumps({{"loaded": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}),
                  "out": OUT}}))
"""


def test_the_analysis_path_imports_no_jax(tmp_path):
    write_legacy_log(tmp_path / "legacy.pkl", K=120, L=6, epochs=12, test_every=2)
    make_run_dir(tmp_path / "s3", seed=3)
    make_run_dir(tmp_path / "s4", seed=4)
    # a fit folder of s3 as `phenomjax fit` writes it: report.json naming the run, best/ a run
    make_run_dir(tmp_path / "s3-fit" / "best", seed=3)
    write_fit_folder(tmp_path / "s3-fit", synthetic_report(inputs=("s3",), K=16, L=8))
    code = f"""
    import io, runpy, sys
    from contextlib import redirect_stdout
    from pathlib import Path

    import phenomjax
    from phenomjax import bin_by_rank, load_run
    from phenomjax.analysis import groups, lag, plots, summaries
    from phenomjax.fitting import overlay
    from phenomjax.analysis.settings import PlotSettings
    from phenomjax.cli import main

    legacy = bin_by_rank(load_run("legacy.pkl"))
    run = load_run("s3")  # a run directory: its Bayes floor from make_bits, computed here
    pos = bin_by_rank(load_run("s3", per_position=True))
    bits = summaries.memorized_bits(run, 8)
    lags = lag.group_lag(lag.lag_table(groups.load_group(["s3", "s4"])))
    fig = plots.metric_figure(plots.curves_from_bins(bin_by_rank(run)), "loss",
                              plot=PlotSettings(), title="s3", out_dir=Path("figs"), name="m",
                              keep=False)
    ov = overlay.overlay_figure("s3", "s3-fit", "figs")
    with redirect_stdout(io.StringIO()) as text:
        try:
            main(["analyze", "--help"])
        except SystemExit:
            pass
        code = main(["analyze", "--run", "s3", "--run", "legacy.pkl", "--no-show-plots",
                     "--figures-dir", "figs", "--cache-dir", "cache"])
        sys.argv = ["analysis.py", "--help"]
        try:
            runpy.run_path({str(REPO / "scripts/analysis.py")!r}, run_name="__main__")
        except SystemExit:
            pass
    OUT = {{"legacy_bins": len(legacy), "floor": float(run["floor"].mean()),
           "positions": sorted(set(pos["position"].tolist())), "bits": bits["memorized_bits"],
           "lag_rows": len(lags), "figures": len(fig.paths) + len(ov.paths), "analyze": code,
           "printed": text.getvalue()}}
    """
    got = _fresh(code, tmp_path)
    assert [m for m in got["loaded"] if m.split(".")[0] in ("jax", "jaxlib")] == []
    out = got["out"]
    assert out["analyze"] == 0 and "memorized_bits" in out["printed"]
    assert "usage: phenomjax analyze" in out["printed"]  # both --help texts were printed
    assert out["legacy_bins"] > 0 and out["lag_rows"] > 0 and out["figures"] >= 4
    assert out["positions"] == list(range(1, 8))
    assert 0.0 < out["floor"] < np.log(2.0) and out["bits"] > 0.0
    assert len(list((tmp_path / "figs").glob("*.png"))) >= 3


def test_help_imports_neither_numpy_nor_pandas(tmp_path):
    """What keeps `phenomjax --help` and `phenomjax analyze --help` instant."""
    for argv in (["--help"], ["analyze", "--help"]):
        code = f"""
        import io
        from contextlib import redirect_stdout
        from phenomjax.cli import main
        with redirect_stdout(io.StringIO()) as text:
            try:
                main({argv!r})
            except SystemExit:
                pass
        OUT = text.getvalue()
        """
        got = _fresh(code, tmp_path)
        assert got["loaded"] == [], (argv, got["loaded"])
        assert got["out"].startswith("usage: phenomjax")


def test_import_phenomjax_is_light_and_its_names_load_on_use(tmp_path):
    code = """
    import phenomjax
    before = sorted(m for m in __import__("sys").modules if m.split(".")[0] in ("numpy", "pandas"))
    names = [n for n in phenomjax.__all__ if getattr(phenomjax, n) is None]
    OUT = {"before": before, "none": names, "dir": set(phenomjax.__all__) <= set(dir(phenomjax))}
    """
    got = _fresh(code, tmp_path)
    assert got["out"] == {"before": [], "none": [], "dir": True}
    assert [m for m in got["loaded"] if m.split(".")[0] in ("jax", "jaxlib")] == []


@settings(max_examples=12, deadline=None)
@given(
    seed=st.one_of(st.integers(0, 2**31 - 1), st.integers(0, 2**32 - 1)),
    K=st.integers(1, 40),
    L=st.integers(2, 40),
    chunk=st.sampled_from([1, 7, 64, 1 << 16]),
)
def test_make_bits_is_bit_for_bit_jax_random(seed, K, L, chunk):
    """The NumPy Threefry stream equals jax.random.bernoulli on the "bits" stream, whatever the
    chunking (chunks of 1 and 7 cut through rows)."""
    want = np.asarray(jax.random.bernoulli(key_streams(seed)["bits"], 0.5, (K, L)), np.uint8)
    got = make_bits(seed, K, L, chunk=chunk)
    assert got.dtype == np.uint8 and got.shape == (K, L)
    np.testing.assert_array_equal(got, want)


def test_make_bits_at_scale_and_out_of_range_seeds():
    want = np.asarray(jax.random.bernoulli(key_streams(7)["bits"], 0.5, (3001, 100)), np.uint8)
    np.testing.assert_array_equal(make_bits(7, 3001, 100), want)
    assert 0.49 < want.mean() < 0.51
    for seed in (2**32, -1, 2**63):  # outside [0, 2^32): refused, never aliased mod 2^32
        with pytest.raises(ValueError, match=r"seed: expected an integer in \[0, 2\^32\)"):
            make_bits(seed, 4, 4)


@st.composite
def stored_tables(draw):
    """Tables stored as run directories and legacy logs store them: step by step, ranks
    ascending within a step (64 or more per step, so the binary search pays), with gaps in the
    ranks and NaN and infinite metrics."""
    K = draw(st.integers(64, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    parts = []
    for s in range(draw(st.integers(1, 4))):
        ranks = np.sort(rng.choice(K, draw(st.integers(64, K)), replace=False))
        n = len(ranks)
        loss = rng.random(n).astype(np.float32)
        loss[rng.random(n) < 0.05] = np.nan
        loss[rng.random(n) < 0.02] = np.inf
        parts.append(pd.DataFrame({"step": np.full(n, 5 * s, np.int64),
                                   "rank": ranks.astype(np.int32),
                                   "presentations": rng.integers(0, 1000, n),
                                   "loss": loss, "accuracy": rng.random(n).astype(np.float32),
                                   "epoch": np.full(n, s, np.int32)}))  # fmt: skip
    table = pd.concat(parts, ignore_index=True)
    edges = draw(st.sampled_from([None, [0, 1, K], [0, 5, 10, 100, K + 1]]))
    if edges is not None and np.any(np.diff(edges) <= 0):
        edges = None
    return table, edges


@settings(max_examples=40, deadline=None)
@given(stored_tables())
def test_stored_order_binning_equals_the_general_path_exactly(case):
    """bin_by_rank's binary search per step gives the general path's table bit for bit."""
    table, edges = case
    original, taken = binning._stored_groups, []

    def spy(*a):
        taken.append(original(*a) is not None)
        return original(*a)

    results = []
    for groups in (spy, lambda *a: None):  # the binary search, then the general path
        binning._stored_groups = groups
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                results.append((binning.bin_by_rank(table, edges), [str(w.message) for w in seen]))
        finally:
            binning._stored_groups = original
    assert taken == [True]
    (fast, fast_warned), (slow, slow_warned) = results
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert fast_warned == slow_warned
