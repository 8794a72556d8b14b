"""Figures readable at every K: axis limits hold every curve and reference, legends sit outside
the axes, floors are per curve (a band where they coincide), palettes and colour bars follow the
number of curves, paper scale draws a log-spaced subset, one tick style per log axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phenomjax.analysis import plots
from phenomjax.analysis.binning import default_edges
from phenomjax.analysis.settings import PlotSettings

plots.use_backend(False)
PLOT = PlotSettings(formats=("png",), dpi=40)


def bin_curves(K: int, acc_low: float = 0.3, fresh: bool = False) -> pd.DataFrame:
    """Rank-bin curves of default_edges(K) with a floor and ceiling per bin."""
    e = default_edges(K)
    rows = []
    steps = np.arange(1, 9)
    for i, (lo, hi) in enumerate(zip(e[:-1], e[1:], strict=True)):
        pres = steps * 1000.0 / (lo + 1)
        loss = 0.7 * np.exp(-pres / 50) + 0.01 * (i + 1)
        acc = acc_low + (1 - acc_low) * (1 - np.exp(-pres / 50))
        rows.append(pd.DataFrame({"step": steps, "rank_lo": lo, "rank_hi": hi,
                                  "presentations": pres, "loss": loss, "accuracy": acc,
                                  "floor": 0.1 + 0.6 * i / len(e), "ceiling": 0.98}))  # fmt: skip
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
    assert text[0] == "dotted: " + plots.FLOOR_LABEL
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
    assert drawn <= plots.MAX_BIN_CURVES < n
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


def test_references_coinciding_become_one_band():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    band = plots.draw_references(ax, [(0.5, "r"), (0.505, "g"), (0.51, "b"), (0.2, "k")])
    assert band and len(ax.patches) == 1 and len(ax.get_lines()) == 1
    assert ax.get_lines()[0].get_color() == "k"
    plt.close(fig)


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=200, unique=True),
       st.integers(2, 30))  # fmt: skip
def test_thin_orders_is_a_log_spaced_subset(orders, most):
    got = plots.thin_orders(orders, most)
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
    t = plots.nice_ranks(lo, hi)
    assert t[0] == lo and t[-1] == hi and t == sorted(set(t))
