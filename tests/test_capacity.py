"""The capacity experiment: the plateau rule, the fits, the stop hook, the ladder end to end
(CSV columns, figures, reuse), the presentations-to-memorize table and bad configs."""

from __future__ import annotations

import dataclasses
import json

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from scipy import stats

from phenomjax.capacity import (
    CapacityConfig,
    PhenomSize,
    PlateauSection,
    capacity_by_size,
    converged_step,
    fit_capacity,
    plan,
    plateaued,
    power_law,
    run_capacity,
    slope_through_origin,
)
from phenomjax.capacity.config import LadderSection, PhenomSection, QuickSection, Size, ZipfSection
from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.data import DataConfig, log_spaced_steps
from phenomjax.errors import ConfigError
from phenomjax.runs import RunDir
from phenomjax.transformer.model import GPTConfig
from phenomjax.transformer.train import LoopConfig, TrainConfig, train

LN2 = float(np.log(2.0))
RULE = PlateauSection(window=4, rel_tol=0.01, min_steps=200)
REQUIRED = [
    "params",
    "K",
    "L",
    "alpha",
    "dataset_bits",
    "memorized_bits",
    "bits_per_param",
    "converged",
    "steps",
    "final_loss",
    "memorized_bits_unclipped",
]


# -- the plateau rule ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(2000, 50000),
    floor=st.floats(0.0, 0.68),
    tau_frac=st.floats(1e-3, 0.02),
    n=st.integers(40, 100),
)
def test_a_curve_that_flattens_is_detected(total, floor, tau_frac, n):
    steps = log_spaced_steps(total, n)
    loss = floor + (LN2 + 0.001 - floor) * np.exp(-steps / (tau_frac * total))
    assert np.all(np.diff(loss) <= 0)  # monotone
    assert plateaued(steps, loss, RULE)
    first = converged_step(steps, loss, RULE)
    assert first is not None and first >= RULE.min_steps


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(2000, 50000),
    gain=st.floats(0.02, 0.69),
    n=st.integers(40, 100),
    shape=st.sampled_from(["log", "linear"]),
)
def test_a_steadily_falling_curve_is_not(total, gain, n, shape):
    steps = log_spaced_steps(total, n)
    frac = np.log1p(steps) / np.log1p(total) if shape == "log" else steps / total
    loss = LN2 - gain * frac  # gains a steady share per log-step (or per step)
    assert not plateaued(steps, loss, RULE)
    assert converged_step(steps, loss, RULE) is None


def test_the_initial_plateau_near_ln2_is_not_convergence():
    steps = log_spaced_steps(5000, 60)
    flat_above = np.full(len(steps), LN2 + 1e-4)  # no gain yet
    assert converged_step(steps, flat_above, RULE) is None
    early = steps[steps < RULE.min_steps]
    assert not plateaued(early, np.full(len(early), 0.5), RULE)  # flat but before min_steps


def test_min_presentations_tells_the_initial_plateau_from_the_final_one():
    # K far above capacity: stuck just below ln 2 early, which by the loss alone looks final
    rule = dataclasses.replace(RULE, min_presentations=100.0)
    steps = log_spaced_steps(5000, 60)
    loss = np.full(len(steps), LN2 - 0.002)
    presentations = steps * 128 / 4096  # batch 128, K = 4096
    assert plateaued(steps, loss, RULE)
    first = converged_step(steps, loss, rule, presentations)
    assert first == steps[np.argmax(presentations >= 100)]
    assert not plateaued(
        steps[steps < first], loss[steps < first], rule, presentations[steps < first]
    )


# -- the fits against NumPy references ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    slope=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 12),
)
def test_slope_through_origin_matches_lstsq(slope, seed, n):
    rng = np.random.default_rng(seed)
    x = rng.uniform(1e3, 1e5, n)
    y = slope * x * rng.lognormal(0.0, 0.2, n)
    f = slope_through_origin(x, y)
    (b,), res, *_ = np.linalg.lstsq(x[:, None], y, rcond=None)
    np.testing.assert_allclose(f["slope"], b, rtol=1e-10)
    rss = float(res[0]) if len(res) else float(np.sum((y - b * x) ** 2))
    se = np.sqrt(rss / (n - 1) / np.sum(x**2))
    np.testing.assert_allclose(f["se"], se, rtol=1e-8)
    t = stats.t.ppf(0.975, n - 1)
    np.testing.assert_allclose([f["lo"], f["hi"]], [b - t * se, b + t * se], rtol=1e-8)


@settings(max_examples=40, deadline=None)
@given(
    k=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(3, 12),
)
def test_power_law_matches_polyfit(k, seed, n):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e3, 1e6, n) * rng.uniform(0.9, 1.1, n)
    y = 5.0 * x**k * rng.lognormal(0.0, 0.1, n)
    f = power_law(x, y)
    coef, cov = np.polyfit(np.log(x), np.log(y), 1, cov="unscaled")
    rss = np.sum((np.log(y) - np.polyval(coef, np.log(x))) ** 2)
    np.testing.assert_allclose(f["exponent"], coef[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(f["prefactor"], np.exp(coef[1]), rtol=1e-8)
    if n > 2:
        se = np.sqrt(cov[0, 0] * rss / (n - 2))
        np.testing.assert_allclose(f["se"], se, rtol=1e-6, atol=1e-12)


def test_fits_without_enough_points():
    one = slope_through_origin([1000.0], [3600.0])
    assert one["slope"] == pytest.approx(3.6) and np.isnan(one["lo"])
    assert np.isnan(power_law([1000.0], [5.0])["exponent"])
    assert np.isnan(power_law([1e3, 1e4], [1.0, 2.0])["lo"])  # two points: no interval


def test_capacity_by_size_takes_the_max_over_K_and_fits_saturated_sizes():
    rows = []
    for params, cap in ((1000, 3000.0), (4000, 13000.0), (16000, 50000.0)):
        for K, frac in ((8, 0.9), (64, 1.0), (512, 0.97)):
            dataset = K * 31
            mem = min(frac * cap, 0.8 * dataset)
            rows.append(
                {
                    "model": "transformer",
                    "n_layer": 1,
                    "n_head": params // 1000,
                    "head_dim": 8,
                    "w": None,
                    "d": None,
                    "params": params,
                    "K": K,
                    "alpha": 0.0,
                    "memorized_bits": mem,
                    "bits_ceiling": 0.8 * dataset,
                    "converged": True,
                    "status": "complete",
                }
            )
    failed = {**rows[0], "K": 4096, "memorized_bits": 1e9, "status": "failed"}
    table = pd.DataFrame([*rows, failed])  # a failed run is left out, not the max
    sizes = capacity_by_size(table)
    table = table[table.status == "complete"]
    ref = table.groupby("params")["memorized_bits"].max().to_numpy()
    np.testing.assert_allclose(sizes["capacity"], ref)
    big = table[table.K == 512].set_index("params")
    np.testing.assert_array_equal(
        sizes["saturated"], (big["memorized_bits"] < 0.5 * big["bits_ceiling"]).to_numpy()
    )
    fit = fit_capacity(sizes)
    use = sizes[sizes.saturated] if sizes.saturated.sum() >= 2 else sizes
    x, y = use["params"].to_numpy(float), use["capacity"].to_numpy(float)
    assert fit["bits_per_param"]["slope"] == pytest.approx(np.dot(x, y) / np.dot(x, x))


# -- the stop hook of train() -------------------------------------------------------------------


def _tiny_train(steps=40, **data):
    return TrainConfig(
        data=DataConfig(K=8, L=8, alpha=0.0, **data),
        model=GPTConfig(n_layer=1, n_head=1, head_dim=4),
        train=LoopConfig(steps=steps, batch=8, num_evals=10, max_chunk=8, per_position=False),
    )


def test_stop_hook_ends_the_run_as_complete(tmp_path):
    seen = []

    def stop(evals):
        seen.append(sorted(evals["step"].unique()))
        return evals["step"].max() >= 5

    run = train(_tiny_train(), tmp_path / "r", progress=False, stop=stop)
    m = run.manifest()
    assert m["status"] == "complete" and m["stopped_early"] is True
    ev = run.read_evals()
    assert m["stopped_step"] == ev["step"].max() >= 5 and ev["step"].max() < 40
    assert seen[-1] == sorted(ev["step"].unique())  # the hook saw every evaluation so far
    assert set(ev.columns) >= {"step", "rank", "presentations", "loss", "accuracy"}
    # a finished run is returned as it is
    assert train(_tiny_train(), tmp_path / "r", resume=True, progress=False).manifest() == m


# -- the ladder end to end ----------------------------------------------------------------------


def _tiny_capacity() -> CapacityConfig:
    return CapacityConfig(
        ladder=LadderSection(sizes=(Size(1, 1, 4),), K=(8, 32), L=8),
        train=LoopConfig(steps=30, batch=16, num_evals=10, max_chunk=30, per_position=False),
        plateau=PlateauSection(window=2, rel_tol=0.01, min_steps=10),
        zipf=ZipfSection(K=(32,), edges=(0, 4, 32)),
        phenom=PhenomSection(sizes=(PhenomSize(w=2, d=2),), steps=20, num_evals=6),
        quick=QuickSection(sizes=1, K=(8,), phenom_sizes=0),
    )


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("capacity")
    cfg = _tiny_capacity()
    calls = []
    result, paths = run_capacity(cfg, out, on_run=lambda *a: calls.append(a[3]))
    return cfg, out, result, paths, calls


def test_ladder_writes_the_table_and_figures(ladder):
    cfg, out, result, paths, calls = ladder
    assert calls == ["trained"] * 5  # 2 uniform + 1 Zipf transformer runs, 2 phenom
    df = pd.read_csv(out / "capacity.csv")
    assert set(REQUIRED) <= set(df.columns)
    assert set(df["model"]) == {"transformer", "phenom"}
    np.testing.assert_array_equal(df["dataset_bits"], df["K"] * (df["L"] - 1))
    np.testing.assert_allclose(df["bits_per_param"], df["memorized_bits"] / df["params"])
    assert (df["memorized_bits"] >= 0).all()
    assert (df["memorized_bits"] >= df["memorized_bits_unclipped"] - 1e-9).all()
    for name in ("capacity_memorized", "capacity_params"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
    text = (out / "capacity_fit.json").read_text()
    fit = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    assert fit["transformer"]["reference_bits_per_param"] == 3.6
    for name in df["run"]:  # every run is an ordinary run directory with its verdict
        m = RunDir(out / "runs" / name).manifest()
        assert m["status"] == "complete" and isinstance(m["converged"], bool)
    # the gain over the last doubling of steps, recomputed by hand from one run's evaluations
    row = df[df["model"] == "transformer"].iloc[0]
    ev = RunDir(out / "runs" / row["run"]).read_evals()
    steps = np.sort(ev["step"].unique())
    half = steps[np.argmin(np.abs(steps - steps[-1] / 2))]

    def bits(step):
        loss = ev[ev["step"] == step].groupby("rank")["loss"].mean().to_numpy()
        return np.clip((row["L"] - 1) * (1 - loss / np.log(2)), 0, None).sum()

    assert row["gain_last_doubling"] == pytest.approx(bits(steps[-1]) / bits(half) - 1, rel=1e-6)


def test_ladder_reuses_finished_runs(ladder):
    cfg, out, result, _, _ = ladder
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/evals.parquet")}
    calls = []
    again, _ = run_capacity(cfg, out, on_run=lambda *a: calls.append(a[3]))
    assert calls == ["reused"] * 5
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/evals.parquet")}
    assert after == before
    pd.testing.assert_frame_equal(again.table, result.table)


def test_presentations_to_memorize_from_the_zipf_runs(ladder):
    _, _, result, _, _ = ladder
    p = result.presentations
    assert list(p["alpha"].unique()) == [1.0] and list(p["rank_lo"]) == [0, 4]
    assert (p["n_reached"] <= p["n_ranks"]).all()
    finite = p["median_presentations"].dropna()
    assert (finite > 0).all()


def test_plan_quick_and_names():
    cfg = _tiny_capacity()
    full, quick = plan(cfg), plan(cfg, quick=True)
    assert len(full) == 5 and len(quick) == 1 and quick[0].data.K == 8
    assert len({j.name for j in full}) == len(full)
    changed = dataclasses.replace(cfg, plateau=PlateauSection(rel_tol=0.02))
    assert plan(changed)[0].name != full[0].name  # the rule decides where a run ends


# -- bad configs --------------------------------------------------------------------------------


def test_bad_configs_name_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nn_layer = 3\n")
    with pytest.raises(ConfigError, match="model.n_layer"):
        load_config(CapacityConfig, bad)
    bad.write_text("[ladder]\nsizes = []\n")
    with pytest.raises(ConfigError, match="ladder.sizes"):
        load_config(CapacityConfig, bad)
    bad.write_text("[ladder]\nK = [0, 8]\n")
    with pytest.raises(ConfigError, match="ladder.K"):
        load_config(CapacityConfig, bad)


def test_cli_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[plateau]\nrel_tol = 0\n")
    assert main(["capacity", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phenomjax capacity: error:") and "plateau.rel_tol" in err
    assert "\n" not in err


def test_shipped_configs_load():
    for name in ("capacity_cpu", "capacity"):
        cfg = load_config(CapacityConfig, f"experiments/{name}.toml")
        assert len(plan(cfg, quick=True)) >= 2
