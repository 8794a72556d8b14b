"""Figures readable at every K: axis limits hold every curve and reference, legends sit outside
the axes at a readable size, floors are per curve (merged where they coincide), curves start at
one presentation, remnant bins are marked, palettes and colour bars follow the number of
curves, paper scale draws a log-spaced subset, one tick style per log axis; the heatmap's floor
panels and the lag figure's marked points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phenomjax.analysis import figstyle, lag, plots
from phenomjax.analysis.binning import bin_by_rank, default_edges
from phenomjax.analysis.groups import lag_summary
from phenomjax.analysis.settings import PlotSettings

plots.use_backend(False)
PLOT = PlotSettings(formats=("png",), dpi=40)


def bin_curves(K: int, acc_low: float = 0.3, fresh: bool = False) -> pd.DataFrame:
    """Rank-bin curves of default_edges(K) with a floor and ceiling per bin."""
    e = default_edges(K)
    rows = []
    steps = np.arange(1, 9)
    for i, (lo, hi) in enumerate(zip(e[:-1], e[1:], strict=True)):
        pres = steps * 2e5 / (lo + 1)  # every bin presented at least once
        loss = 0.7 * np.exp(-pres / 1e4) + 0.01 * (i + 1)
        acc = acc_low + (1 - acc_low) * (1 - np.exp(-pres / 1e4))
        rows.append(pd.DataFrame({"step": steps, "rank_lo": lo, "rank_hi": hi,
                                  "presentations": pres, "loss": loss, "accuracy": acc,
                                  "floor": 0.1 + 0.6 * i / len(e), "ceiling": 0.98,
                                  "n_sequences": hi - lo}))  # fmt: skip
    c = plots.curves_from_bins(pd.concat(rows, ignore_index=True))
    c.attrs["run"] = {"fresh_bits": fresh}
    return c


def figure(curves, metric, **kw):
    return plots.metric_figure(curves, metric, plot=PLOT, title="t", keep=True, **kw)


def test_accuracy_axis_holds_every_curve_and_the_ceiling():
    d = figure(bin_curves(1000, acc_low=0.3), "accuracy")
    lo, hi = d.figure.axes[0].get_ylim()
    assert lo <= d.data["accuracy"].min() and hi >= 0.98 and hi >= d.data["accuracy"].max()
    assert lo < 0.45  # the configured 0.45 is widened, never clipping a curve


def test_seventeen_bins_legend_outside_and_one_dotted_floor_per_bin():
    import matplotlib.pyplot as plt

    d = figure(bin_curves(12000), "loss")
    fig = d.figure
    ax = fig.axes[0]
    fig.canvas.draw()
    curves_legend = [a for a in ax.artists if a.__class__.__name__ == "Legend"][0]
    assert len(curves_legend.get_texts()) == 17
    box, axbox = curves_legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= axbox.x1  # outside the axes, covering no curve
    floors = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    spans = [p for p in ax.patches]
    assert len(floors) + len(spans) >= 10  # per bin, not one merged band
    curve_colours = {tuple(ln.get_color()) for ln in ax.get_lines() if ln.get_linestyle() == "-"}
    assert {tuple(ln.get_color()) for ln in floors} <= curve_colours | {(0.4, 0.4, 0.4)}
    # the style legend: black dotted handle, says what the floor is
    style = ax.get_legend()
    text = [t.get_text() for t in style.get_texts()]
    assert text[0] == "dotted: " + figstyle.FLOOR_LABEL
    handle = style.legend_handles[0]
    assert handle.get_linestyle() == ":" and handle.get_color() == "k"
    plt.close(fig)


def test_fresh_bits_floor_is_labelled():
    d = figure(bin_curves(1000, fresh=True), "loss")
    text = [t.get_text() for t in d.figure.axes[0].get_legend().get_texts()]
    assert any("fresh bits" in t for t in text)


def test_paper_scale_draws_a_log_spaced_subset_and_says_so():
    c = bin_curves(100000)
    n = c["curve"].nunique()
    d = figure(c, "loss")
    drawn = d.data["curve"].nunique()
    assert drawn <= figstyle.MAX_BIN_CURVES < n
    assert f"{drawn} of {n} rank bins" in d.figure.axes[0].get_title()
    assert {"ranks 0-4", "ranks 99000-99999"} <= set(d.data["curve"])


def test_few_rank_curves_distinct_colours_many_a_rank_colorbar():
    c = bin_curves(1000)
    few = figure(c, "loss")
    colours = {tuple(ln.get_color()) for ln in few.figure.axes[0].get_lines()
               if ln.get_linestyle() == "-"}  # fmt: skip
    assert len(colours) == 6 and len(few.figure.axes) == 1  # no colour bar
    ranks = pd.concat(
        [
            c[c.rank_lo == 0].drop(columns=["rank_lo", "rank_hi"]).assign(rank=r)
            for r in [*range(10), *range(30, 40)]
        ]
    )
    many = figure(plots.curves_from_ranks(ranks, list(ranks["rank"].unique())), "loss")
    assert len(many.figure.axes) == 2 and many.figure.axes[1].get_ylabel() == "rank"


def test_log_axes_use_one_tick_style():
    d = figure(bin_curves(1000), "loss")
    ax = d.figure.axes[0]
    d.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)]
    labels = [t for t in labels if t]
    assert labels and all("times" not in t and "^" not in t for t in labels), labels
    xminor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert xminor == []
    assert ax.get_xlabel() == "presentations (count)" and ax.get_ylabel() == "loss (nats)"


def test_references_that_coincide_are_drawn_once():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    # within 5 %: one grey line at their mean; 0.2 alone keeps its colour
    assert plots.draw_references(ax, [(0.5, "r"), (0.505, "g"), (0.51, "b"), (0.2, "k")])
    lines = sorted(ax.get_lines(), key=lambda ln: ln.get_ydata()[0])
    assert len(ax.patches) == 0 and len(lines) == 2 and lines[0].get_color() == "k"
    assert lines[1].get_ydata()[0] == pytest.approx(0.505)
    # a chain of neighbours within 5 % that spans more: one band over its range
    fig2, ax2 = plt.subplots()
    assert plots.draw_references(ax2, [(0.30, "r"), (0.31, "g"), (0.325, "b"), (0.34, "c")])
    assert len(ax2.patches) == 1 and len(ax2.get_lines()) == 0
    span = ax2.patches[0]
    assert (span.get_y(), span.get_y() + span.get_height()) == pytest.approx((0.30, 0.34))
    # distinct floors stay distinct, each in its curve's colour
    fig3, ax3 = plt.subplots()
    assert not plots.draw_references(ax3, [(0.34, "r"), (0.39, "g"), (0.43, "b")])
    assert [ln.get_color() for ln in ax3.get_lines()] == ["r", "g", "b"]
    for f in (fig, fig2, fig3):
        plt.close(f)


@given(st.lists(st.floats(1e-3, 10.0), max_size=30), st.floats(0.0, 0.2))
def test_reference_groups_partition_and_neighbours_coincide(values, rel):
    groups = figstyle.group_references(values, rel)
    assert sorted(i for g in groups for i in g) == list(range(len(values)))
    for g in groups:
        v = [values[i] for i in g]
        assert v == sorted(v)
        assert all(b <= a * (1 + rel) + 1e-12 for a, b in zip(v, v[1:], strict=False))
    for a, b in zip(groups, groups[1:], strict=False):  # between groups: a gap of more than rel
        assert values[b[0]] > values[a[-1]] * (1 + rel)


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=200, unique=True),
       st.integers(2, 30))  # fmt: skip
def test_thin_orders_is_a_log_spaced_subset(orders, most):
    got = figstyle.thin_orders(orders, most)
    o = sorted(orders)
    assert got == sorted(set(got)) and set(got) <= set(o) and len(got) <= max(most, 1)
    if len(o) <= most:
        assert got == o
        return
    assert got[0] == o[0] and got[-1] == o[-1]
    # NumPy reference: the nearest order (in log(rank + 1)) to each of `most` even targets
    x = np.log1p(np.asarray(o, float))
    want = sorted({o[int(np.argmin(np.abs(x - t)))] for t in np.linspace(x[0], x[-1], most)})
    assert got == want


@pytest.mark.parametrize("lo,hi", [(0, 69), (30, 39), (0, 99999)])
def test_colorbar_ticks_are_within_range_and_ordered(lo, hi):
    t = figstyle.nice_ranks(lo, hi)
    assert t[0] == lo and t[-1] == hi and t == sorted(set(t))


def _texts(fig) -> list:
    """Every legend text and tick label of a drawn figure."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        out += [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        legends = [a for a in ax.artists if a.__class__.__name__ == "Legend"]
        legends += [ax.get_legend()] if ax.get_legend() else []
        out += [t for leg in legends for t in leg.get_texts()]
    out += [t for leg in fig.legends for t in leg.get_texts()]
    return out


@pytest.mark.parametrize("K", [512, 1000, 100000])
def test_curves_start_at_one_presentation_and_text_is_readable(K):
    c = bin_curves(K)
    c = pd.concat([c.assign(presentations=c["presentations"] / 1e4, step=c["step"] - 10), c])
    for metric in ("loss", "accuracy"):
        d = figure(c, metric)
        assert d.data["presentations"].min() >= 1.0  # no bin mean below one presentation
        assert d.figure.axes[0].get_xlim()[0] >= 0.5
        sizes = [t.get_fontsize() for t in _texts(d.figure)]
        assert sizes and min(sizes) >= figstyle.FONT


def test_a_remnant_bin_is_dashed_and_says_how_few_sequences_it_holds():
    d = figure(bin_curves(512), "accuracy")
    ax = d.figure.axes[0]
    legend = [a for a in ax.artists if a.__class__.__name__ == "Legend"][0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert "ranks 500-511 (12 seq.)" in labels and "ranks 0-4" in labels  # top bins: not remnants
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_label() == "ranks 500-511 (12 seq.)"
    style = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("remnant bin of fewer than 20 sequences" in t for t in style)
    assert plots.remnant_bins(bin_curves(1000)) == {}


def test_blocks_of_consecutive_ranks_are_the_mean_over_their_ranks():
    rng = np.random.default_rng(1)
    ranks = pd.DataFrame({"step": np.repeat([0, 10, 20], 70), "rank": np.tile(np.arange(70), 3),
                          "presentations": rng.uniform(0, 100, 210), "loss": rng.random(210),
                          "accuracy": rng.random(210)})  # fmt: skip
    sel = [*range(0, 10), *range(30, 40), *range(60, 70)]
    assert plots.rank_blocks(sel) == [(0, 10), (30, 40), (60, 70)]
    c = plots.curves_from_blocks(ranks, sel)
    assert sorted(c["curve"].unique()) == ["ranks 0-9", "ranks 30-39", "ranks 60-69"]
    for (step, lo), g in c.groupby(["step", "rank_lo"]):
        want = ranks[(ranks.step == step) & (ranks["rank"] >= lo) & (ranks["rank"] < lo + 10)]
        assert g["loss"].iloc[0] == pytest.approx(want["loss"].mean())
        assert g["presentations"].iloc[0] == pytest.approx(want["presentations"].mean())


def test_heatmap_shows_the_floor_beside_the_loss():
    rng = np.random.default_rng(0)
    K, L = 40, 6
    rank, pos = np.repeat(np.arange(K), L - 1), np.tile(np.arange(1, L), K)
    floor = rng.uniform(0, 0.7, len(rank))
    loss = floor + rng.uniform(0, 0.3, len(rank))
    t = pd.DataFrame({"step": 5, "rank": rank, "position": pos, "presentations": 1.0,
                      "loss": loss, "accuracy": 0.5, "floor": floor,
                      "excess_loss": loss - floor})  # fmt: skip
    b = bin_by_rank(t, [0, 5, 10, 40])
    d = plots.heatmap_figure(b, plot=PLOT, title="t", keep=True)
    panels = [ax for ax in d.figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "loss",
        "Bayes floor",
        "excess loss (loss - floor)",
    ]
    for q in ("loss", "floor", "excess_loss"):
        got = d.data[d.data.quantity == q].sort_values(["rank_lo", "position"])
        want = b.sort_values(["rank_lo", "position"])[q].to_numpy()
        np.testing.assert_allclose(got["value"].to_numpy(), want)
    # one colour scale for all three, so equal colours are equal nats
    lims = {im.get_clim() for ax in panels for im in ax.get_images()}
    assert len(lims) == 1
    only = plots.heatmap_figure(b.drop(columns=["floor", "excess_loss"]), plot=PLOT, title="t")
    assert set(only.data["quantity"]) == {"loss"}


def test_lag_figure_marks_zero_ratios_and_points_one_seed_supports():
    rows = []
    for run, r5, r10 in (("a", 2.0, 0.0), ("b", 8.0, 0.0), ("c", 4.0, 0.0)):
        for lo, hi, ratio in ((0, 5, 1.0), (5, 10, r5), (10, 100, r10), (100, 200, np.nan)):
            rows.append({"run": run, "level": 0.5, "rank_lo": lo, "rank_hi": hi,
                         "lag_ratio": ratio})  # fmt: skip
    t = pd.DataFrame(rows)
    t.loc[(t.run == "a") & (t.rank_lo == 100), "lag_ratio"] = 3.0  # one seed only
    t["experiment"] = "g"
    d = plots.lag_figure(t, plot=PLOT, keep=True)
    ax = d.figure.axes[0]
    mean = d.data.set_index("rank_lo")
    assert mean.loc[5, "lag_ratio_mean"] == pytest.approx(lag_summary([2.0, 8.0, 4.0]).mean)
    assert mean.loc[10, "n_zero"] == 3 and mean.loc[10, "lag_ratio_n"] == 0
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white" and
              len(ln.get_xdata())]  # fmt: skip
    assert [list(ln.get_xdata()) for ln in hollow] == [[3]]
    tri = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert [list(ln.get_xdata()) for ln in tri] == [[2]]
    texts = [t.get_text() for leg in d.figure.legends for t in leg.get_texts()]
    assert "g: geo. mean [min, max] over 3 seeds (line, shaded)" in texts
    assert any("only one seed" in x for x in texts) and any("ratio 0" in x for x in texts)
    one = plots.lag_figure(lag.bin_lag(pd.DataFrame(
        {"rank": [0, 1, 7], "level": 0.5, "presentations": [10.0, 10.0, 30.0],
         "reached": True, "defined": True})), plot=PLOT)  # fmt: skip
    assert one.data["lag_ratio_mean"].tolist() == [1.0, 3.0]


def test_capacity_legend_says_which_fitted_sizes_did_not_converge(monkeypatch):
    """Issue 22: the fit's legend said "saturated sizes" beside hollow "not converged" points;
    it now names the sizes it used and how many are extrapolated or lower bounds, and every
    kind of point has its own legend entry (an extrapolated one with its interval bar)."""
    from phenomjax.analysis import capacity_plots

    sizes = pd.DataFrame({"model": ["transformer"] * 3, "params": [1e3, 2e3, 4e3],
                          "capacity": [900.0, 1800.0, 3500.0], "converged": [True, False, False],
                          "estimate": ["converged", "extrapolated", "lower bound"],
                          "capacity_lo": [np.nan, 1700.0, 3500.0],
                          "capacity_hi": [np.nan, 2000.0, np.inf],
                          "saturated": [True, True, False]})  # fmt: skip
    fit = {"model": "transformer", "used": "saturated sizes", "n_sizes": 2,
           "bits_per_param": {"slope": 0.9, "lo": 0.8, "hi": 1.0}}  # fmt: skip
    figs = []
    monkeypatch.setattr(capacity_plots, "save_figure", lambda fig, *a, **k: figs.append(fig) or [])
    capacity_plots.capacity_figure(sizes, fit, None)
    ax = figs[0].axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    line = next(t for t in texts if "bits/param" in t and "fit" in t)
    assert "over the 2 sizes the data did not limit; of them 1 extrapolated" in line
    assert "transformer" in texts  # the converged point, filled
    assert "transformer (extrapolated: bar = interval)" in texts
    assert "transformer (not converged: a lower bound)" in texts
    bars = [c for c in ax.collections if hasattr(c, "get_segments") and c.get_segments()]
    assert np.allclose(bars[0].get_segments()[0][:, 1], [1700.0, 2000.0])  # its interval
    every = capacity_plots.fit_basis(sizes, {**fit, "used": "all sizes"})
    assert "all 3 sizes; of them 1 extrapolated, 1 lower bound" in every
    import matplotlib.pyplot as plt

    plt.close("all")
