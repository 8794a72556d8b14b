"""The trainer: learning, exact presentation counts, resume equivalence, determinism, NaN
handling, chunked evaluation, configs and the CLI."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from phenomjax import cli, per_sequence_floor
from phenomjax.config import load_config
from phenomjax.configs import packaged
from phenomjax.data import key_streams, make_bits, sample_ranks, zipf_cdf, zipf_weights
from phenomjax.errors import ConfigError, NonFiniteLossError, RunDirError
from phenomjax.runs import RunDir
from phenomjax.transformer import model as gpt
from phenomjax.transformer.train import (
    TrainConfig,
    _chunked_grad,
    branch_state,
    evaluate,
    evaluate_positions,
    init_state,
    make_advance,
    train,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = load_config(TrainConfig, packaged("tiny"))


def _recount(cfg: TrainConfig, steps: int) -> np.ndarray:
    """NumPy recount of the ranks drawn at steps 0..steps-1 (each drawn on its own here)."""
    cdf = zipf_cdf(zipf_weights(cfg.data.K, cfg.data.alpha))
    key = key_streams(cfg.data.seed)["batches"]
    draw = jax.jit(lambda s: sample_ranks(jax.random.fold_in(key, s), cdf, cfg.train.batch))
    ranks = np.concatenate([np.zeros(0, np.int32)] + [np.asarray(draw(s)) for s in range(steps)])
    return np.bincount(ranks, minlength=cfg.data.K)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return train(TINY, tmp_path_factory.mktemp("full") / "run", progress=False)


def test_run_directory_contents(full_run):
    m = full_run.manifest()
    assert m["kind"] == "transformer" and m["status"] == "complete"
    assert m["config"]["model"]["n_head"] == 2 and m["n_params"] > 0
    ev = full_run.read_evals()
    steps = sorted(ev.step.unique())
    assert steps[0] == 0 and steps[-1] == TINY.train.steps
    assert ev.groupby("step").size().eq(TINY.data.K).all()
    pos = full_run.read_positions()
    assert len(pos) == len(ev) * (TINY.data.L - 1)
    # per-sequence loss = mean over positions
    mean = pos.groupby(["step", "rank"]).loss.mean().to_numpy()
    np.testing.assert_allclose(mean, ev.sort_values(["step", "rank"]).loss, rtol=1e-5)
    tr = full_run.read_train()
    assert list(tr.step) == list(range(1, TINY.train.steps + 1))
    assert np.all(np.isfinite(tr.train_loss)) and np.all(tr.learning_rate > 0)


def test_presentations_exact(full_run):
    ev = full_run.read_evals()
    for s in (0, int(ev.step.max())):
        counts = ev[ev.step == s].sort_values("rank").presentations.to_numpy()
        assert counts.sum() == s * TINY.train.batch
        np.testing.assert_array_equal(counts, _recount(TINY, s))


def test_loss_falls_on_memorization_task():
    cfg = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=300))
    bits = jnp.asarray(make_bits(cfg.data.seed, cfg.data.K, cfg.data.L), jnp.int32)
    state = init_state(cfg)
    before, _ = evaluate(state["params"], bits, cfg)
    advance = make_advance(cfg, bits)
    while int(state["step"]) < 300:
        state, losses = advance(state, 16)
    after, acc = evaluate(state["params"], bits, cfg)
    # the p-weighted loss (what training minimises) closes much of its gap to the Bayes floor,
    # and the most frequent rank is memorized far below ln 2
    p = zipf_weights(cfg.data.K, cfg.data.alpha)
    floor, _ = per_sequence_floor(np.asarray(bits), p)
    gap_before, gap_after = p @ (before - floor), p @ (after - floor)
    assert gap_after < 0.6 * gap_before, (gap_before, gap_after)
    assert after[0] < 0.2 < 0.6 < before[0] and acc[0] > 0.9
    assert int(state["counts"].sum()) == int(state["step"]) * cfg.train.batch


def test_resume_gives_the_uninterrupted_numbers(full_run, tmp_path):
    out = tmp_path / "run"
    stopped = train(TINY, out, progress=False, stop_at=8)  # 8 is an evaluation step of 60
    assert stopped.manifest()["status"] == "running"
    assert sorted(stopped.read_evals().step.unique())[-1] == 8
    resumed = train(TINY, out, resume=True, progress=False)
    assert resumed.manifest()["status"] == "complete"
    pd.testing.assert_frame_equal(resumed.read_evals(), full_run.read_evals())
    pd.testing.assert_frame_equal(resumed.read_positions(), full_run.read_positions())
    pd.testing.assert_frame_equal(resumed.read_train(), full_run.read_train())


def test_deterministic_for_a_seed(full_run, tmp_path):
    again = train(TINY, tmp_path / "again", progress=False)
    pd.testing.assert_frame_equal(again.read_evals(), full_run.read_evals())
    # another seed, trained: other bits, draws and initialisation give other numbers
    short = dataclasses.replace(TINY.train, steps=12, num_evals=2)
    other = dataclasses.replace(TINY, data=dataclasses.replace(TINY.data, seed=1), train=short)
    same = dataclasses.replace(TINY, train=short)
    runs = {name: train(cfg, tmp_path / name, progress=False)
            for name, cfg in (("other", other), ("same", same))}  # fmt: skip
    ev = {name: r.read_evals().sort_values(["step", "rank"]) for name, r in runs.items()}
    assert list(ev["other"].step.unique()) == list(ev["same"].step.unique())
    for step in ev["same"].step.unique():
        a, b = (ev[n][ev[n].step == step] for n in ("other", "same"))
        assert not np.allclose(a.loss, b.loss), f"same losses at step {step} for seeds 0, 1"
    assert not np.array_equal(ev["other"].presentations, ev["same"].presentations)
    tr = {name: r.read_train().train_loss.to_numpy() for name, r in runs.items()}
    assert not np.allclose(tr["other"], tr["same"])


def test_resume_refuses_another_config(full_run):
    other = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, batch=4))
    with pytest.raises(RunDirError, match="train.batch"):
        train(other, full_run.path, resume=True, progress=False)
    with pytest.raises(RunDirError, match="already exists"):
        train(TINY, full_run.path, progress=False)


def test_nan_loss_stops_and_keeps_earlier_evals(tmp_path):
    cfg = load_config(TrainConfig, packaged("tiny"), ["optimizer.name=sgd", "optimizer.lr=1e38"])
    with pytest.raises(NonFiniteLossError, match="step"):
        train(cfg, tmp_path / "nan", progress=False)
    run = RunDir(tmp_path / "nan")
    assert run.manifest()["status"] == "failed"
    assert 0 in set(run.read_evals().step)


def test_chunked_evaluation_matches_one_batch():
    bits = make_bits(3, 13, TINY.data.L)  # 13 sequences: chunks of 8 leave a ragged tail
    params = init_state(TINY)["params"]
    nll, acc = evaluate_positions(params, bits, TINY)
    whole_nll, whole_acc = jax.jit(gpt.position_losses, static_argnames="cfg")(
        params, jnp.asarray(bits, jnp.int32), TINY.model
    )
    np.testing.assert_allclose(nll, whole_nll, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(acc, whole_acc)
    loss, accuracy = evaluate(params, bits, TINY)
    np.testing.assert_allclose(loss, nll.mean(1), rtol=1e-6)
    assert loss.shape == accuracy.shape == (13,)


@pytest.mark.parametrize("chunk", [1, 3, 5, 13, 20])
def test_gradient_in_chunks_matches_one_batch(chunk):
    bits = jnp.asarray(make_bits(4, 13, TINY.data.L), jnp.int32)  # 13 rows: ragged chunks
    params = init_state(TINY)["params"]
    loss, grads = jax.value_and_grad(gpt.loss_fn)(params, bits, TINY.model)
    c_loss, c_grads = _chunked_grad(chunk)(params, bits, TINY.model)
    np.testing.assert_allclose(c_loss, loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(c_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_full_batch_in_chunks_follows_the_same_run(tmp_path):
    base = dataclasses.replace(
        TINY,
        data=dataclasses.replace(TINY.data, K=12),
        train=dataclasses.replace(TINY.train, steps=30, batch=12, full_batch=True),
    )
    chunked = dataclasses.replace(base, train=dataclasses.replace(base.train, grad_chunk=5))
    a = train(base, tmp_path / "a", progress=False).read_evals()
    b = train(chunked, tmp_path / "b", progress=False).read_evals()
    np.testing.assert_array_equal(a["presentations"], b["presentations"])
    # rounding only: Adam carries it on, 30 steps move a loss by ~1e-4
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(  # capacity_cpu and regime_cpu are a CapacityConfig and a RegimeConfig
    "path",
    sorted(
        p
        for p in (ROOT / "experiments").glob("*_cpu.toml")
        if p.stem not in ("capacity_cpu", "regime_cpu")
    )
    + [packaged("demo")],
)
def test_shipped_configs_load(path):
    cfg = load_config(TrainConfig, path)
    assert cfg.optimizer.name == "adamw" and cfg.data.K >= 512


def test_paper_configs_keep_design_relations():
    def get(name):
        return load_config(TrainConfig, ROOT / "experiments" / f"{name}.toml")

    for suffix in ("", "_cpu"):
        s, m, r, lr = (get(n + suffix) for n in ("small", "medium", "large_rope", "large_lr"))
        assert s.model.n_head * 2 == m.model.n_head and s.model.n_head * 3 == r.model.n_head
        assert s.model.n_layer * 2 == m.model.n_layer and s.model.n_layer * 3 == r.model.n_layer
        assert r.model.positions == "rope" and lr.model.positions == "learned"
        assert lr.model == dataclasses.replace(r.model, positions="learned")
        assert lr.optimizer.lr == pytest.approx(r.optimizer.lr / 10)
        assert s.model.head_dim == 8


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.n_heads"):
        load_config(TrainConfig, packaged("tiny"), ["model.n_heads=3"])
    with pytest.raises(ConfigError, match="train.per_position"):
        load_config(TrainConfig, packaged("tiny"), ["train.per_position=maybe"])
    with pytest.raises(ConfigError, match="optimizer.name"):
        load_config(TrainConfig, packaged("tiny"), ["optimizer.name=adamax"])


def test_cli_one_line_errors_and_run(tmp_path, capsys):
    tiny = str(packaged("tiny"))
    assert cli.main(["train", tiny, "--set", "model.bogus=1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.bogus" in err
    assert cli.main(["train", tiny, "--set", "train.steps=-3"]) == 2
    assert "train.steps" in capsys.readouterr().err
    out = tmp_path / "cli"
    argv = ["train", "tiny", "--out", str(out), "--no-progress", "--set", "train.steps=10"]
    assert cli.main(argv) == 0
    assert "ranks 0-9" in capsys.readouterr().out
    assert RunDir(out).manifest()["status"] == "complete"
    assert cli.main(argv + ["--resume"]) == 0  # a complete run resumes to itself


def _wsd(steps: int, decay_steps: int, extra: tuple[int, ...] = ()) -> TrainConfig:
    """TINY on a warmup-stable-decay schedule of `steps` steps (linear decay over the last
    decay_steps), evaluated also at `extra`."""
    opt = dataclasses.replace(TINY.optimizer, warmup_steps=5, decay="linear",
                              decay_steps=decay_steps)  # fmt: skip
    loop = dataclasses.replace(TINY.train, steps=steps, eval_steps=extra)
    return dataclasses.replace(TINY, optimizer=opt, train=loop)


def test_a_branch_from_a_longer_run_gives_the_numbers_of_its_own_run(tmp_path):
    # the 40-step budget shares its stable phase (steps 0..31) with the 60-step one, so
    # starting it from the long run's state at step 32 is training it from step 0
    short, long = _wsd(40, 8), _wsd(60, 12, extra=(32,))
    own = train(short, tmp_path / "own", progress=False)
    trunk = train(long, tmp_path / "trunk", progress=False, stop_at=32)
    assert trunk.manifest()["status"] == "running"
    start = branch_state(short, trunk.path, 32)
    branch = train(short, tmp_path / "branch", progress=False, start=start)
    m = branch.manifest()
    assert m["status"] == "complete" and (m["branched_from"], m["branch_step"]) == ("trunk", 32)
    a, b = (r.read_evals() for r in (own, branch))
    last = a.step.max()
    pd.testing.assert_frame_equal(a[a.step == last].reset_index(drop=True),
                                  b[b.step == last].reset_index(drop=True))  # fmt: skip
    assert b.step.min() >= 32  # the branch evaluates only from where it began
    # the trunk goes on to its own end; a branch point it has passed cannot be read any more
    train(long, trunk.path, resume=True, progress=False)
    with pytest.raises(RunDirError, match="expected 32"):
        branch_state(short, trunk.path, 32)


def test_eval_steps_are_evaluated_and_checked():
    with pytest.raises(ConfigError, match="eval_steps"):
        _wsd(40, 8, extra=(41,)).train.validate()
