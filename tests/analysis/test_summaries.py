"""Summaries against direct NumPy computations."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from phenomjax.analysis.summaries import LN2, memorized_bits, sequence_bits, thresholds
from phenomjax.errors import DataError


def curves(on_presentations: bool) -> pd.DataFrame:
    rows = []
    for b, (lo, hi, rate) in enumerate([(0, 5, 100.0), (5, 10, 10.0), (10, 100, 1.0)]):
        for step in [1, 10, 100, 1000]:
            pres = rate * step
            loss = 1.0 / (1 + pres) if on_presentations else 1.0 / (1 + step) * (b + 1)
            acc = 1 - loss / 2
            rows.append({"run": "r", "step": step, "rank_lo": lo, "rank_hi": hi,
                         "presentations": pres, "loss": loss, "accuracy": acc})  # fmt: skip
    return pd.DataFrame(rows)


def test_thresholds_interpolate_on_log_axes():
    t = thresholds(curves(True), loss_threshold=0.01, accuracy_threshold=0.99)
    assert np.isfinite(t["presentations_to_loss_level"]).all()  # no floor column: floor 0
    # loss = 1/(1+n) crosses 0.01 at n = 99: the 0-5 bin (rate 100) is there at its first eval;
    # the 10-100 bin (rate 1) between n = 10 and n = 100, interpolated on log-log axes
    row = t[t.rank_lo == 0].iloc[0]
    assert row["presentations_to_loss"] == 100.0  # first eval already below: its presentations
    row = t[t.rank_lo == 10].iloc[0]
    x0, x1, y0, y1 = 10, 100, 1 / 11, 1 / 101
    want = np.exp(np.log(x0) + (np.log(0.01) - np.log(y0)) / (np.log(y1) - np.log(y0))
                  * (np.log(x1) - np.log(x0)))  # fmt: skip
    assert np.isclose(row["presentations_to_loss"], want)
    assert np.isclose(row["steps_to_loss"], want)  # rate 1: steps = presentations
    never = thresholds(curves(True), loss_threshold=1e-9, accuracy_threshold=1.0)
    assert never["presentations_to_loss"].isna().all()
    with pytest.raises(DataError, match=r"level: expected a share in \(0, 1\)"):
        thresholds(curves(True), 1.0)


def ref_level(x: np.ndarray, y: np.ndarray, ref: np.ndarray, level: float) -> float:
    """Loop reference: the first evaluation where (y - ref) / (y0 - ref) <= level, with y0 the
    first finite y, interpolated linearly in that share against log x from the one before."""
    first = next((i for i in range(len(y)) if np.isfinite(y[i])), None)
    if first is None or not y[first] - ref[first] > 0:
        return float("nan")
    e = [(y[i] - ref[i]) / (y[first] - ref[first]) for i in range(len(y))]
    for i in range(first + 1, len(y)):
        if e[i] <= level:
            if x[i - 1] <= 0 or not np.isfinite(e[i - 1]):
                return float(x[i])
            frac = 0.0 if e[i] == e[i - 1] else min(max((level - e[i - 1]) / (e[i] - e[i - 1]),
                                                        0.0), 1.0)  # fmt: skip
            return float(np.exp(np.log(x[i - 1]) + frac * (np.log(x[i]) - np.log(x[i - 1]))))
    return float("nan")


@st.composite
def binned_curves(draw):
    """Noisy decaying curves of a few bins with floors and ceilings; some NaN evaluations."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n_steps = draw(st.integers(2, 12))
    rows = []
    for b in range(draw(st.integers(1, 4))):
        pres = np.sort(rng.uniform(0, 2000, n_steps)) * (b + 1)
        pres[0] = 0.0
        floor, ceiling = rng.uniform(0.05, 0.4), rng.uniform(0.7, 1.0)
        loss = floor + (0.7 - floor) * np.exp(-pres / rng.uniform(10, 3000)) + rng.normal(
            0, 0.02, n_steps)  # fmt: skip
        acc = ceiling - (ceiling - 0.5) * np.exp(-pres / rng.uniform(10, 3000))
        loss[rng.random(n_steps) < 0.1] = np.nan
        rows.append(pd.DataFrame({"run": "r", "step": np.arange(n_steps) * 10, "rank_lo": 10 * b,
                                  "rank_hi": 10 * b + 10, "presentations": pres, "loss": loss,
                                  "accuracy": acc, "floor": floor, "ceiling": ceiling,
                                  "n_sequences": 10}))  # fmt: skip
    return pd.concat(rows, ignore_index=True), draw(st.floats(0.05, 0.95))


@settings(max_examples=60, deadline=None)
@given(binned_curves())
def test_levels_relative_to_the_floor_match_a_loop_reference(case):
    table, level = case
    t = thresholds(table, level).set_index("rank_lo")
    for lo, g in table.groupby("rank_lo"):
        x, st_ = g["presentations"].to_numpy(), g["step"].to_numpy(np.float64)
        loss, acc = g["loss"].to_numpy(), g["accuracy"].to_numpy()
        fl, ce = g["floor"].to_numpy(), g["ceiling"].to_numpy()
        np.testing.assert_allclose(t.loc[lo, "presentations_to_loss_level"],
                                   ref_level(x, loss, fl, level), equal_nan=True)  # fmt: skip
        np.testing.assert_allclose(t.loc[lo, "steps_to_loss_level"],
                                   ref_level(st_, loss, fl, level), equal_nan=True)  # fmt: skip
        np.testing.assert_allclose(t.loc[lo, "presentations_to_accuracy_level"],
                                   ref_level(x, -acc, -ce, level), equal_nan=True)  # fmt: skip
    assert "presentations_to_loss" not in t.columns  # absolute thresholds only when asked


def test_a_demo_like_run_reaches_its_relative_levels_where_an_absolute_one_is_below_its_floor(
    tmp_path,
):
    """The default summary reads loss against the floor: on a run whose every floor is above
    the old 0.1-nat default, the absolute column is NaN in every bin, the relative one finite
    wherever the bin's excess loss falls to the level."""
    from fixtures.run_dirs import make_run_dir

    from phenomjax import bin_by_rank, load_run
    from phenomjax.analysis.settings import SummarySettings

    run = make_run_dir(tmp_path / "r", K=64, L=10, steps=(0, 2, 8, 32, 128, 512))
    b = bin_by_rank(load_run(run.path))
    assert (b.groupby("rank_lo")["floor"].min() > 0.1).all()
    s = SummarySettings()
    t = thresholds(b, s.reach_level, loss_threshold=0.1).set_index("rank_lo")
    assert t["presentations_to_loss"].isna().all()
    for lo, g in b.sort_values("step").groupby("rank_lo"):
        e = (g["loss"] - g["floor"]) / (g["loss"].iloc[0] - g["floor"].iloc[0])
        assert np.isfinite(t.loc[lo, "presentations_to_loss_level"]) == bool(
            (e <= s.reach_level).any())  # fmt: skip
    assert np.isfinite(t["presentations_to_loss_level"]).sum() >= 2


def _table(loss: np.ndarray, floor: np.ndarray | None = None, step: int = 9) -> pd.DataFrame:
    """Per-position rows (K, P) at `step`, plus an earlier step the estimator must ignore."""
    K, P = loss.shape
    rank, position = np.repeat(np.arange(K), P), np.tile(np.arange(1, P + 1), K)
    pos = pd.DataFrame({"step": step, "rank": rank, "position": position, "loss": loss.ravel()})
    if floor is not None:
        pos["floor"] = floor.ravel()
    return pd.concat([pos.assign(step=0, loss=0.0), pos], ignore_index=True)


def test_memorized_bits_against_numpy_per_sequence_clipping():
    rng = np.random.default_rng(0)
    K, P = 20, 5
    loss = rng.uniform(0, 1.2, (K, P))
    floor = rng.uniform(0, 0.8, (K, P))
    m = memorized_bits(_table(loss, floor), L=P + 1, n_params=100)
    per_seq = P - loss.sum(1) / LN2  # (L-1) - summed nats / ln 2
    assert m["step"] == 9 and m["n_sequences"] == K and m["dataset_bits"] == K * P
    assert np.isclose(m["memorized_bits"], np.clip(per_seq, 0, None).sum())
    assert np.isclose(m["memorized_bits_unclipped"], per_seq.sum())
    assert np.isclose(m["bits_ceiling"], np.clip(P - floor.sum(1) / LN2, 0, None).sum())
    assert np.isclose(m["bits_per_param"], m["memorized_bits"] / 100)
    # per-position clipping (the old estimator) credits more than per-sequence clipping
    assert np.clip(1 - loss / LN2, 0, None).sum() > m["memorized_bits"]
    # the per-sequence table gives the same numbers (its loss is the mean over positions)
    seq = pd.DataFrame({"step": 9, "rank": np.arange(K), "loss": loss.mean(1)})
    m2 = memorized_bits(seq, L=P + 1)
    assert np.isclose(m2["memorized_bits"], m["memorized_bits"])
    assert np.isnan(m2["bits_ceiling"]) and np.isnan(m2["bits_per_param"])


def test_memorized_bits_bad_input_is_one_line():
    seq = pd.DataFrame({"step": [1], "rank": [0], "loss": [0.1]})
    with pytest.raises(DataError, match="L: expected"):
        memorized_bits(seq, L=None)
    with pytest.raises(DataError, match="lacks column 'loss'"):
        memorized_bits(seq.drop(columns="loss"), L=4)


losses = hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 6)),
                    elements=st.floats(0, 3, allow_nan=False))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(loss=losses)
def test_memorized_bits_properties(loss):
    K, P = loss.shape
    m = memorized_bits(_table(loss, np.minimum(loss, LN2)), L=P + 1)
    assert m["memorized_bits"] >= m["memorized_bits_unclipped"] - 1e-9
    assert m["memorized_bits"] >= 0 and m["memorized_bits"] <= K * P + 1e-9
    # clipping is per sequence: the clipped total is the sum of positive per-sequence values
    per_seq = sequence_bits(loss.mean(1), P + 1)
    assert np.isclose(m["memorized_bits"], per_seq[per_seq > 0].sum())
    # the floor here is below the loss, so the ceiling is at least the memorized bits
    assert m["bits_ceiling"] >= m["memorized_bits"] - 1e-9


@given(K=st.integers(1, 10), P=st.integers(1, 10))
def test_memorized_bits_uniform_and_perfect(K, P):
    uniform = memorized_bits(_table(np.full((K, P), LN2)), L=P + 1)
    assert abs(uniform["memorized_bits"]) < 1e-9 and abs(uniform["memorized_bits_unclipped"]) < 1e-9
    perfect = memorized_bits(_table(np.zeros((K, P))), L=P + 1)
    assert np.isclose(perfect["memorized_bits"], K * P)  # L - 1 bits per sequence
    assert np.allclose(sequence_bits(np.zeros(K), P + 1), P)
