"""fitting.refine: the gradient of the surrogate through the training loop against central
finite differences (a small model), and the refinement lowering it from a grid member."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phenomjax.data import DataConfig, key_streams, make_bits, zipf_weights
from phenomjax.fitting.fit import _member_tables, phenom_config
from phenomjax.fitting.grid import GridSection
from phenomjax.fitting.inputs import read_input
from phenomjax.fitting.members import Member
from phenomjax.fitting.refine import (
    IMPROVES,
    _lag_targets,
    _split,
    _stalled,
    batch_counts,
    knob_names,
    objective_fn,
    parallel_parts,
    refine,
)
from phenomjax.fitting.scoring import ScoreConfig, score_member
from phenomjax.phenom.modes import make_data
from phenomjax.phenom.sweep import sweep
from phenomjax.phenom.train import (
    ModelSection,
    PhenomConfig,
    PhenomOptimConfig,
    TrainSection,
    train_phenom,
)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """A run of the phenom model (w 2, lr 1e-2, scale 0.1, forget 0.02) and a member off it."""
    cfg = PhenomConfig(
        data=DataConfig(K=24, L=6, alpha=1.0, seed=3),
        model=ModelSection(w=2, d=2, init_scale=0.1, forget=0.02),
        optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
        train=TrainSection(mode="expected", steps=40, batch=16, num_evals=8),
    )
    run = train_phenom(cfg, tmp_path_factory.mktemp("r") / "run", progress=False).path
    inp = read_input(run, ScoreConfig())
    m = Member(
        "x",
        0,
        3,
        "expected",
        "adam",
        0.9,
        0.999,
        0.0,
        "full",
        2,
        2,
        3e-3,
        0.03,
        variant="readout_forget",
        forget=0.05,
        readout_scale=0.0,
    )
    base = phenom_config(inp, GridSection(num_evals=8), "expected", m)
    return inp, m, base


def test_gradient_matches_finite_differences(problem):
    inp, m, base = problem
    sur = objective_fn(base, m, inp.ref, inp.edges, 1.1)
    f, th = sur.objective, sur.theta0
    assert knob_names(m) == ("lr", "scale", "shift", "forget") and len(th) == 4
    v, g = jax.jit(jax.value_and_grad(f))(th)
    assert np.isfinite(float(v)) and np.all(np.isfinite(g))
    v_fwd, g_fwd = parallel_parts(sur, 1, line=False)[0](jnp.asarray(th))  # forward, one call
    assert float(v_fwd) == pytest.approx(float(v), rel=1e-6)
    np.testing.assert_allclose(np.asarray(g_fwd), np.asarray(g), rtol=1e-4, atol=1e-6)
    # split over two programs side by side (3 training knobs: 2 + 2 rows, one of them padding)
    v_par, g_par = parallel_parts(sur, 2, line=False)[0](jnp.asarray(th))
    assert float(v_par) == pytest.approx(float(v), rel=1e-6)
    np.testing.assert_allclose(np.asarray(g_par), np.asarray(g), rtol=1e-4, atol=1e-6)
    eps = 1e-2
    fd = [(f(th + e) - f(th - e)) / (2 * eps) for e in np.eye(len(th), dtype=np.float32) * eps]
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), rtol=0.05, atol=2e-3)


@pytest.mark.parametrize("method", ["line", "adam"])
def test_refinement_lowers_the_surrogate(problem, method):
    inp, m, base = problem
    r = refine(base, m, 1.1, inp.ref, inp.edges, steps=6, method=method, lr=0.2)
    assert r.knobs == knob_names(m) and r.method == method and np.isfinite(r.grad_norm)
    assert r.steps == 6 if method == "adam" else 1 <= r.steps <= 6
    assert r.before[0] == pytest.approx(m.lr) and r.before[2] == pytest.approx(1.1)
    assert r.objective_after < r.objective_before
    assert len(r.trace) == r.steps + 1 and r.trace[0] == r.objective_before
    if method == "line":  # each step is the lowest point of its line, so the trace falls
        assert all(b < a for a, b in zip(r.trace, r.trace[1:], strict=False))


def test_the_line_search_walks_down_a_bowl_to_its_resolution(problem):
    """On sum((theta - c)^2) with c 0.45 from the start along one knob: steps of 0.3, 0.1,
    0.03 and 0.03 (LINE's lengths; the last overshoots by 0.01), and it stops where no point
    of its line is lower."""
    inp, m, base = problem
    th0 = jnp.log(jnp.asarray([m.lr, m.scale, 1.0, m.forget], jnp.float32))
    c = th0 + jnp.asarray([0.0, 0.45, 0.0, 0.0])
    r = refine(base, m, 1.0, inp.ref, inp.edges, steps=10,
               objective=lambda th: jnp.sum((th - c) ** 2))  # fmt: skip
    moved = np.log(r.after) - np.asarray(th0)
    np.testing.assert_allclose(moved, [0, 0.46, 0, 0], atol=1e-5)
    assert r.steps == 4 and r.trace == pytest.approx([0.45**2, 0.15**2, 0.05**2, 0.02**2,
                                                      0.01**2], rel=1e-3)  # fmt: skip


@given(st.lists(st.floats(0.1, 10.0), min_size=1, max_size=12), st.integers(0, 5))
def test_stalled_when_the_last_steps_never_beat_the_best_before_them(values, patience):
    """The rule against a direct reading: stalled iff `patience` >= 1 values follow at least
    one, and none of them is below the best before them by more than IMPROVES of it."""
    want = (patience >= 1 and len(values) > patience
            and all(v >= min(values[:-patience]) * (1 - IMPROVES)
                    for v in values[-patience:]))  # fmt: skip
    assert _stalled(values, patience) == want


def test_a_stalled_refinement_stops_early(problem):
    """An objective that every step from the start overshoots (its minimum 0.05 below the
    start in each knob, Adam's first step 0.5): with patience 2 the refinement stops after two
    steps without a lower value, keeps the start, and traces every value it computed."""
    inp, m, base = problem
    th0 = jnp.log(jnp.asarray([m.lr, m.scale, 1.0, m.forget], jnp.float32))

    def steep(theta):
        x = theta - th0
        return jnp.sum(x) + 10 * jnp.sum(x**2)

    r = refine(base, m, 1.0, inp.ref, inp.edges, steps=10, method="adam", lr=0.5, patience=2,
               objective=steep)  # fmt: skip
    assert r.steps == 2 and len(r.trace) == 3
    assert r.trace[0] == pytest.approx(0.0) and min(r.trace[1:]) > 0.0
    assert r.objective_after == pytest.approx(0.0)
    assert r.after == pytest.approx(r.before, rel=1e-6)
    full = refine(base, m, 1.0, inp.ref, inp.edges, steps=4, method="adam", lr=0.5, patience=0,
                  objective=lambda th: jnp.sum(th**2))  # fmt: skip
    assert full.steps == 4 and len(full.trace) == 5


def test_batch_counts_are_the_stochastic_runs_presentations(tmp_path):
    """The stochastic surrogate's presentations: each rank's count after each evaluation step
    equals what a stochastic train_phenom run records there."""
    cfg = PhenomConfig(
        data=DataConfig(K=30, L=6, alpha=1.0, seed=5),
        model=ModelSection(w=2, d=2),
        train=TrainSection(mode="stochastic", steps=90, batch=7, num_evals=6),
    )
    ev = train_phenom(cfg, tmp_path / "run", progress=False).read_evals()
    ev = ev[ev.step > 0]
    evals = np.sort(ev.step.unique())
    streams = key_streams(5)
    data = make_data(make_bits(5, 30, 6), zipf_weights(30, 1.0), streams["batches"])
    got = batch_counts(data, 7, evals)
    want = ev.pivot(index="step", columns="rank", values="presentations").to_numpy()
    np.testing.assert_array_equal(got, want)
    assert got[-1].sum() == 90 * 7


@pytest.mark.parametrize("mode", ["expected", "stochastic"])
def test_the_lag_term_enters_the_surrogate_and_its_gradient(tmp_path, mode):
    """On a run long enough that its bins reach the levels, the objective's lag term equals
    the score's lag_score (score_member on the member's own sweep: NumPy's rank_crossings and
    bin_lag), and the gradient of the total still matches central finite differences: in
    expected mode, and in stochastic mode with the batches fixed."""
    cfg = PhenomConfig(
        data=DataConfig(K=24, L=6, alpha=1.0, seed=3),
        model=ModelSection(w=2, d=2, init_scale=0.1),
        optimizer=PhenomOptimConfig(name="adam", lr=3e-2),
        train=TrainSection(mode="expected", steps=200, batch=16, num_evals=10),
    )
    inp = read_input(train_phenom(cfg, tmp_path / "run", progress=False).path, ScoreConfig())
    assert len(_lag_targets(inp.ref, inp.edges, np.asarray(ScoreConfig().levels))) == 6
    m = Member("x", 0, 3, mode, "adam", 0.9, 0.999, 0.0, "full", 2, 2, 1e-2, 0.05)
    base = phenom_config(inp, GridSection(num_evals=10), mode, m)
    sur = objective_fn(base, m, inp.ref, inp.edges, 1.1, floor=inp.floor, score=ScoreConfig())
    f, th = sur.objective, sur.theta0
    parts = objective_fn(base, m, inp.ref, inp.edges, 1.1, floor=inp.floor, terms=True).objective
    v, g = jax.jit(jax.value_and_grad(f))(th)
    v_fwd, g_fwd = parallel_parts(sur, 1, line=False)[0](jnp.asarray(th))  # lag term, forward
    assert float(v_fwd) == pytest.approx(float(v), rel=1e-6)
    np.testing.assert_allclose(np.asarray(g_fwd), np.asarray(g), rtol=1e-4, atol=1e-6)
    band, lag = (float(x) for x in parts(th))
    assert float(v) == pytest.approx(np.sqrt((band**2 + lag**2) / 2), rel=1e-5)
    # the lag term is the score's: the member swept and scored by score_member
    sweep(base, {"lr": [m.lr], "scale": [m.scale]}, out=tmp_path / "sw", progress=False)
    ((binned_, lag_),) = _member_tables(
        tmp_path / "sw", [0], inp, 10, ScoreConfig().levels
    ).values()
    scored = score_member(binned_, lag_, inp.ref, ScoreConfig())
    assert lag == pytest.approx(scored.lag_score, rel=1e-3)
    eps = 1e-2
    fd = [(f(th + e) - f(th - e)) / (2 * eps) for e in np.eye(len(th), dtype=np.float32) * eps]
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), rtol=0.05, atol=2e-3)


@given(st.integers(1, 9), st.integers(1, 4), st.integers(1, 3))
def test_split_parts_share_one_shape_and_keep_every_row(rows, parts, width):
    x = np.arange(rows * width, dtype=np.float32).reshape(rows, width) + 1
    got = _split(x, parts)
    assert len(got) == min(parts, rows) and len({p.shape for p in got}) == 1
    joined = np.concatenate(got)
    np.testing.assert_array_equal(joined[:rows], x)
    assert not joined[rows:].any()  # the padding is zero rows
