"""train_phenom and its step functions: presentation counts, determinism, chunking, resume, NaN,
frozen leaves, configs and the CLI (train-phenom, and fit-phenom, its alias). Small K and L so
the file runs in well under a minute."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax import phenom
from phenomjax.bayes import per_sequence_floor
from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.data import DataConfig, key_streams, make_bits, sample_ranks, zipf_weights
from phenomjax.errors import ConfigError, NonFiniteLossError, RunDirError
from phenomjax.optim import OptimConfig, make_optimizer
from phenomjax.phenom import train as phenom_train
from phenomjax.phenom.modes import freeze_untrained, init_state, make_data, make_step
from phenomjax.phenom.train import (
    ModelSection,
    PhenomConfig,
    PhenomOptimConfig,
    TrainSection,
    train_phenom,
)
from phenomjax.runs import RunDir
from phenomjax.training import make_advance, runner


def small_cfg(mode="expected", steps=40, **train) -> PhenomConfig:
    return PhenomConfig(
        data=DataConfig(K=48, L=8, alpha=1.0, seed=3),
        model=ModelSection(w=2, d=4, init_scale=0.1),
        optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
        train=TrainSection(mode=mode, steps=steps, batch=8, num_evals=6, max_chunk=16, **train),
    )


def setup(cfg: PhenomConfig, opt: OptimConfig | None = None):
    """(state, step, data) for cfg, built the way train_phenom builds them."""
    K, L, seed = cfg.data.K, cfg.data.L, cfg.data.seed
    model = phenom_train.build_model(cfg)
    keys = key_streams(seed)
    data = make_data(make_bits(seed, K, L), zipf_weights(K, cfg.data.alpha), keys["batches"])
    like = phenom.init_params(keys["init"], model)
    tx = freeze_untrained(make_optimizer(opt or cfg.optimizer, cfg.train.steps), like, model)
    state = init_state(keys["init"], model, tx, mode=cfg.train.mode, K=K)
    return state, make_step(tx, mode=cfg.train.mode, batch=cfg.train.batch), data


@settings(max_examples=5, deadline=None)
@given(K=st.integers(1, 12), B=st.integers(1, 6), steps=st.integers(1, 20))
def test_stochastic_counts_sum_to_steps_times_batch_and_match_numpy(K, B, steps):
    cfg = dataclasses.replace(
        small_cfg("stochastic", steps), data=DataConfig(K=K, L=4, alpha=1.0, seed=K + B)
    )
    cfg = dataclasses.replace(cfg, model=ModelSection(w=1, d=2))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch=B, max_chunk=8))
    state, step, data = setup(cfg)
    advance = make_advance(step, 8)
    done = 0
    while done < steps:
        n = min(8, steps - done)
        state, _ = advance(state, jnp.int32(n), data)
        done += n
    counts = np.asarray(state["counts"])
    assert counts.sum() == steps * B and int(state["step"]) == steps
    # reference: redraw every batch with its fold_in(step) key and count with NumPy
    ref = np.zeros(K, np.int64)
    for t in range(steps):
        ranks = sample_ranks(jax.random.fold_in(data.batches_key, t), data.cdf, B)
        ref += np.bincount(np.asarray(ranks), minlength=K)
    np.testing.assert_array_equal(counts, ref)


@pytest.mark.parametrize("mode", ["expected", "stochastic"])
def test_chunked_loop_equals_python_loop_of_jitted_steps(mode):
    state, step, data = setup(small_cfg(mode))
    advance = make_advance(step, 7)
    s_chunk, losses = state, []
    for n in (7, 7, 3, 7, 6):  # 30 steps in uneven chunks
        s_chunk, buf = advance(s_chunk, jnp.int32(n), data)
        losses.append(np.asarray(buf)[:n])
    one = jax.jit(step)
    s_loop, ref = state, []
    for _ in range(30):
        s_loop, loss = one(s_loop, data)
        ref.append(float(loss))
    np.testing.assert_allclose(np.concatenate(losses), ref, rtol=1e-6, atol=0)
    for a, b in zip(jax.tree.leaves(s_chunk), jax.tree.leaves(s_loop), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-8)


def test_fixed_embedding_never_moves_and_learned_one_does():
    opt = OptimConfig(name="adamw", lr=1e-2, weight_decay=0.5)  # decay would move a frozen E
    for embedding, moves in (("random", False), ("learned", True)):
        cfg = dataclasses.replace(small_cfg(), model=ModelSection(w=2, d=4, embedding=embedding))
        state, step, data = setup(cfg, opt)
        out, _ = make_advance(step, 10)(state, jnp.int32(10), data)
        same = np.array_equal(np.asarray(out["params"]["E"]), np.asarray(state["params"]["E"]))
        assert same != moves
        assert not np.array_equal(np.asarray(out["params"]["B"]), np.asarray(state["params"]["B"]))


def test_expected_mode_run_directory(tmp_path):
    cfg = small_cfg("expected", steps=200)
    run = train_phenom(cfg, tmp_path / "r", progress=False)
    m = run.manifest()
    assert m["status"] == "complete" and m["kind"] == "phenom" and m["K"] == 48
    assert m["n_params"] > 0 and m["config"]["model"]["w"] == 2
    ev = run.read_evals()
    steps = sorted(ev.step.unique())
    assert steps[0] == 0 and steps[-1] == 200 and len(ev) == len(steps) * 48
    p = zipf_weights(48, 1.0)
    for t, g in ev.groupby("step"):
        exp = t * 8 * p
        np.testing.assert_allclose(g.expected_presentations, exp, rtol=1e-12)
        np.testing.assert_array_equal(g.presentations, np.floor(exp + 0.5).astype(np.int64))
    # the p-weighted loss falls, and never below the Bayes floor (no learner can beat it)
    wl = ev.groupby("step").apply(lambda g: float(p @ g.loss.to_numpy()), include_groups=False)
    assert wl.iloc[-1] < wl.iloc[0] - 0.1 and wl.is_monotonic_decreasing
    floor, _ = per_sequence_floor(make_bits(3, 48, 8), p)
    assert wl.iloc[-1] >= float(p @ floor) - 1e-4
    tr = run.read_train()
    np.testing.assert_array_equal(tr.step, np.arange(1, 201))
    assert np.allclose(tr.learning_rate, 1e-2) and tr.train_loss.iloc[-1] < tr.train_loss.iloc[0]
    # train_loss at step s+1 is the expected loss at step s's parameters = the eval at step s
    np.testing.assert_allclose(tr.train_loss.iloc[0], wl.iloc[0], rtol=1e-4)
    pos = run.read_positions()
    assert pos is not None and len(pos) == len(ev) * 7
    np.testing.assert_allclose(
        pos.groupby(["step", "rank"]).loss.mean().to_numpy(), ev.loss.to_numpy(), rtol=1e-5
    )


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    cfg = small_cfg("stochastic", steps=30)
    a = train_phenom(cfg, tmp_path / "a", progress=False).read_evals()
    b = train_phenom(cfg, tmp_path / "b", progress=False).read_evals()
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=4))
    c = train_phenom(other, tmp_path / "c", progress=False).read_evals()
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert not np.array_equal(a.loss.to_numpy(), c.loss.to_numpy())
    last = a[a.step == 30]
    assert last.presentations.sum() == 30 * 8
    np.testing.assert_array_equal(last.expected_presentations, last.presentations)


def test_resume_continues_to_the_same_numbers(tmp_path, monkeypatch):
    cfg = small_cfg("stochastic", steps=60)
    full = train_phenom(cfg, tmp_path / "full", progress=False)
    real_drive = runner.drive

    def interrupted(state, plan, **kw):
        save = kw["checkpoint"]

        def checkpoint(s, t):
            save(s, t)
            if t >= 10:
                raise KeyboardInterrupt

        return real_drive(state, plan, **{**kw, "checkpoint": checkpoint})

    monkeypatch.setattr(runner, "drive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_phenom(cfg, tmp_path / "cut", progress=False)
    cut = RunDir(tmp_path / "cut")
    # an interrupt leaves the run resumable (docs/design.md §4), not failed
    assert cut.manifest()["status"] == "running" and cut.read_evals().step.max() < 60
    monkeypatch.setattr(runner, "drive", real_drive)
    with pytest.raises(RunDirError, match="already exists"):
        train_phenom(cfg, tmp_path / "cut", progress=False)
    with pytest.raises(RunDirError, match="different config"):
        train_phenom(small_cfg("stochastic", steps=61), tmp_path / "cut", resume=True)
    resumed = train_phenom(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed.manifest()["status"] == "complete"
    np.testing.assert_array_equal(resumed.read_evals().to_numpy(), full.read_evals().to_numpy())
    np.testing.assert_array_equal(resumed.read_train().to_numpy(), full.read_train().to_numpy())


def test_nan_raises_and_keeps_earlier_evaluations(tmp_path):
    cfg = dataclasses.replace(
        small_cfg("expected", steps=50),
        optimizer=PhenomOptimConfig(name="sgd", lr=1e30, warmup_steps=40),
    )
    with pytest.raises(NonFiniteLossError, match="step"):
        train_phenom(cfg, tmp_path / "nan", progress=False)
    run = RunDir(tmp_path / "nan")
    m = run.manifest()
    assert m["status"] == "failed" and "NonFiniteLossError" in m["error"]
    ev = run.read_evals()
    assert 0 in set(ev.step) and np.isfinite(ev.loss).all() and ev.step.max() < 50


def test_config_errors_name_the_field(tmp_path):
    good = load_config(PhenomConfig, "experiments/phenom.toml")
    assert good.train.mode == "expected" and good.optimizer.name == "adam"
    path = tmp_path / "c.toml"
    path.write_text("[model]\nw = 2\n")
    assert load_config(PhenomConfig, path).optimizer.lr == 1e-2  # section defaults are the fit's
    cases = {
        "model.w=0": "model.w",
        "model.param=diag": "model.param",
        "train.mode=online": "train.mode",
        "train.stepz=3": "train.stepz",
        "train.steps=0": "train.steps",
        "optimizer.lr=-1": "optimizer.lr",
        "optimizer.name=adamax": "optimizer.name",
        "data.K=0": "data.K",
        "train.per_position=maybe": "train.per_position",
    }
    for override, field in cases.items():
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as e:
            load_config(PhenomConfig, path, [override])
        assert str(path) in str(e.value)


@pytest.mark.parametrize("command", ["train-phenom", "fit-phenom"])
def test_cli_train_phenom_and_its_alias(tmp_path, capsys, command):
    out = tmp_path / "cli"
    args = [command, "experiments/phenom.toml", "--out", str(out), "--no-progress"]
    sets = ["data.K=32", "data.L=6", "model.w=2", "model.d=2", "train.steps=5", "train.num_evals=2"]
    rc = main(args + [x for s in sets for x in ("--set", s)])
    captured = capsys.readouterr()
    assert rc == 0 and "step 5" in captured.out
    assert ("alias of `phenomjax train-phenom`" in captured.out) == (command == "fit-phenom")
    assert RunDir(out).manifest()["status"] == "complete"
    assert main(args + ["--set", "model.w=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.w" in err and len(err.splitlines()) == 1  # the alias too: one line


def test_the_old_names_still_import_and_warn():
    from phenomjax.phenom import train

    with pytest.warns(DeprecationWarning, match="use PhenomConfig"):
        assert train.FitConfig is PhenomConfig
    with pytest.warns(DeprecationWarning, match="use train_phenom"):
        assert train.fit_phenom is train_phenom
    with pytest.raises(AttributeError):
        train.no_such_name  # noqa: B018


def test_fit_phenom_help_says_it_is_an_alias(capsys):
    with pytest.raises(SystemExit):
        main(["fit-phenom", "--help"])
    assert "alias of train-phenom" in capsys.readouterr().out
