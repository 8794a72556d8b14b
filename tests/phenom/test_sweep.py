"""Vmapped sweeps: a member equals the same single fit, the member table and curves read back,
diverged members are frozen and flagged, schedules carry over, the CLI works."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenomjax.cli import main
from phenomjax.data import DataConfig, zipf_weights
from phenomjax.errors import ConfigError
from phenomjax.phenom import sweep as sweep_module
from phenomjax.phenom.sweep import describe, read_sweep, sweep
from phenomjax.phenom.train import (
    ModelSection,
    PhenomConfig,
    PhenomOptimConfig,
    TrainSection,
    train_phenom,
)
from phenomjax.workers import Workers, cores, shared_compilations


def base(mode="expected", **opt) -> PhenomConfig:
    return PhenomConfig(
        data=DataConfig(K=40, L=8, alpha=1.0, seed=0),
        model=ModelSection(w=2, d=4, init_scale=0.1),
        optimizer=PhenomOptimConfig(name="adam", lr=1e-2, **opt),
        train=TrainSection(mode=mode, steps=40, batch=8, num_evals=5, max_chunk=16),
    )


def single(cfg: PhenomConfig, tmp_path, *, lr, scale, seed, name):
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, seed=seed),
        model=dataclasses.replace(cfg.model, init_scale=scale),
        optimizer=dataclasses.replace(cfg.optimizer, lr=lr),
    )
    return train_phenom(cfg, tmp_path / name, progress=False).read_evals()


@pytest.mark.parametrize("mode", ["expected", "stochastic"])
def test_vmapped_member_equals_single_fit(mode, tmp_path):
    cfg = base(mode)
    table = sweep(
        cfg, {"lr": [3e-3, 1e-2], "scale": [0.05, 0.2], "seed": [0, 5]}, out=tmp_path / "sw",
        progress=False,
    )  # fmt: skip
    assert len(table) == 8 and table.member.tolist() == list(range(8))
    assert not table.diverged.any() and np.isfinite(table.final_loss).all()
    members, curves = read_sweep(tmp_path / "sw")
    assert len(curves) == 8 * 6 * 40  # members x evals (step 0 + 5) x K
    for lr, scale, seed in ((1e-2, 0.05, 5),):
        row = table[(table.lr == lr) & (table.scale == scale) & (table.seed == seed)].iloc[0]
        ref = single(cfg, tmp_path, lr=lr, scale=scale, seed=seed, name=f"{lr}-{seed}")
        mine = curves[curves.member == row.member]
        np.testing.assert_array_equal(mine.step, ref.step)
        np.testing.assert_array_equal(mine["rank"], ref["rank"])
        np.testing.assert_array_equal(mine.presentations, ref.presentations)
        np.testing.assert_allclose(mine.expected_presentations, ref.expected_presentations)
        np.testing.assert_allclose(mine.loss, ref.loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mine.accuracy, ref.accuracy, atol=1e-6)
        last = ref[ref.step == ref.step.max()]
        p = zipf_weights(40, 1.0)
        np.testing.assert_allclose(row.final_loss, p @ last.loss.to_numpy(), rtol=1e-5)
    # read back a subset of members only
    sub_members, sub = read_sweep(tmp_path / "sw", members=[1, 6])
    assert set(sub.member) == {1, 6} and len(sub_members) == 8
    if mode == "stochastic":
        per = curves[curves.step == 40].groupby("member").presentations.sum()
        assert (per == 40 * 8).all()
        assert curves.groupby("member").presentations.max().nunique() > 1  # own draws


def test_outer_loops_and_a_warmup_schedule_match_single_fits(tmp_path):
    cfg = base("expected", warmup_steps=10, decay="cosine", final_lr_frac=0.1)
    axes = {"lr": [1e-2], "scale": [0.1], "seed": [1], "w": [1, 2], "d": [3],
            "param": ["relative"]}  # fmt: skip
    table = sweep(cfg, axes, out=tmp_path / "sw", progress=False)
    assert len(table) == 2 and table.w.tolist() == [1, 2] and table.member.tolist() == [0, 1]
    assert (table.d == 3).all() and (table.param == "relative").all()
    row = table[(table.w == 1) & (table.d == 3) & (table.param == "relative")].iloc[0]
    _, curves = read_sweep(tmp_path / "sw", members=[int(row.member)])
    one = dataclasses.replace(cfg, model=ModelSection(w=1, d=3, param="relative"))
    ref = single(one, tmp_path, lr=1e-2, scale=0.1, seed=1, name="ref")
    np.testing.assert_allclose(curves.loss, ref.loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="already exists"):
        sweep(cfg, out=tmp_path / "sw", progress=False)


def test_an_optimizer_family_is_one_group_and_each_member_its_own_fit(tmp_path):
    """adam, adamw, sgd and momentum, each at its own rates (optimizer_lr), make two compiled
    groups (adamw's family, momentum's); every member equals the single fit of its settings."""
    from phenomjax.phenom.axes import groups, sweep_axes

    cfg = base("stochastic")
    opts = [PhenomOptimConfig(name="adam", b2=0.99), PhenomOptimConfig(name="sgd"),
            PhenomOptimConfig(name="adamw", weight_decay=0.5),
            PhenomOptimConfig(name="momentum", b1=0.7)]  # fmt: skip
    axes = {"optimizer": opts, "optimizer_lr": [[1e-2], [0.3, 1.0], [3e-3], [0.1]],
            "scale": [0.1]}  # fmt: skip
    assert [len(g.rates) for g in groups(cfg, sweep_axes(cfg, axes))] == [2, 3]
    table = sweep(cfg, axes, out=tmp_path / "sw", progress=False)
    assert table.optimizer.tolist() == ["adam", "adamw", "sgd", "sgd", "momentum"]
    assert table.lr.tolist() == [1e-2, 3e-3, 0.3, 1.0, 0.1]
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["axes"]["optimizer_lr"]
    _, curves = read_sweep(tmp_path / "sw")
    for m, opt in ((0, opts[0]), (1, opts[2]), (3, opts[1]), (4, opts[3])):
        row = table.iloc[m]
        one = dataclasses.replace(cfg, optimizer=dataclasses.replace(opt, lr=row.lr))
        ref = single(one, tmp_path, lr=row.lr, scale=0.1, seed=0, name=f"m{m}")
        np.testing.assert_allclose(curves[curves.member == m].loss, ref.loss, rtol=1e-5,
                                   atol=1e-6)  # fmt: skip
        assert (row.b1, row.b2, row.weight_decay) == (opt.b1, opt.b2, opt.weight_decay)
    with pytest.raises(ConfigError, match="one list per optimizer"):
        sweep(cfg, {**axes, "optimizer_lr": [[1e-2]]}, progress=False)


@pytest.mark.parametrize("embedding", ["learned", "spin"])
def test_a_learned_or_spin_embedding_member_equals_its_single_fit(embedding, tmp_path):
    """The members share the step counter always and the embedding only when it is frozen
    (spin); a learned E stays each member's own: both match the single fit."""
    model = ModelSection(w=2, d=4, init_scale=0.1, embedding=embedding)
    cfg = dataclasses.replace(base("stochastic"), model=model)
    table = sweep(cfg, {"lr": [3e-3, 3e-2]}, out=tmp_path / "sw", progress=False)
    _, curves = read_sweep(tmp_path / "sw", members=[1])
    ref = single(cfg, tmp_path, lr=3e-2, scale=0.1, seed=0, name="ref")
    np.testing.assert_allclose(curves.loss, ref.loss, rtol=1e-5, atol=1e-6)
    assert not table.diverged.any()


@pytest.mark.slow  # tests/phenom/test_variants.py checks a variant member against its run
def test_variant_axes_match_single_fits_and_are_recorded(tmp_path):
    """The variant knobs are outer loops; a member equals the single fit with those knobs,
    and forget = 0 is the model as stated (the same numbers as a sweep without the axis)."""
    cfg = base("stochastic")
    axes = {"lr": [1e-2], "forget": [0.0, 0.05], "readout_scale": [0.0, 1.0]}
    table = sweep(cfg, axes, out=tmp_path / "sw", progress=False)
    table = table[table.readout_scale == 0.0]
    assert table.forget.tolist() == [0.0, 0.05] and table.member.tolist() == [0, 2]
    members, curves = read_sweep(tmp_path / "sw")
    assert members.readout_scale.tolist() == [0.0, 1.0, 0.0, 1.0]
    one = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, forget=0.05))
    ref = single(one, tmp_path, lr=1e-2, scale=0.1, seed=0, name="ref")
    np.testing.assert_allclose(curves[curves.member == 2].loss, ref.loss, rtol=1e-5, atol=1e-6)
    both = dataclasses.replace(one, model=dataclasses.replace(one.model, readout_scale=1.0))
    ref = single(both, tmp_path, lr=1e-2, scale=0.1, seed=0, name="both")
    np.testing.assert_allclose(curves[curves.member == 3].loss, ref.loss, rtol=1e-5, atol=1e-6)
    plain = sweep(cfg, {"lr": [1e-2]}, out=tmp_path / "plain", progress=False)
    _, plain_curves = read_sweep(tmp_path / "plain")
    np.testing.assert_array_equal(curves[curves.member == 0].loss, plain_curves.loss)
    assert plain.forget.tolist() == [0.0]
    forgot, kept = (curves[curves.member == m].loss.to_numpy() for m in (2, 0))
    assert not np.allclose(forgot[40:], kept[40:])  # the shrink changes the curves after step 0


def test_diverged_members_are_frozen_and_flagged(tmp_path):
    cfg = dataclasses.replace(base(), optimizer=PhenomOptimConfig(name="sgd", lr=1e-2))
    table = sweep(cfg, {"lr": [1e-1, 1e32], "scale": [0.1], "seed": [0]}, progress=False)
    ok, bad = table.iloc[0], table.iloc[1]
    assert not ok.diverged and np.isfinite(ok.final_loss) and ok.diverged_step == -1
    assert bad.diverged and np.isnan(bad.final_loss) and 1 <= bad.diverged_step <= 40
    with pytest.warns(UserWarning, match="every member diverged"):
        allbad = sweep(cfg, {"lr": [1e32], "seed": [0, 1]}, progress=False)
    assert allbad.diverged.all() and len(allbad) == 2
    with pytest.raises(ConfigError, match=r"sweep lr: expected finite values > 0"):
        sweep(cfg, {"lr": [-1.0]}, progress=False)


def test_cli_sweep(tmp_path, capsys):
    out = tmp_path / "cli"
    sets = ["data.K=24", "data.L=6", "train.steps=6", "train.num_evals=2", "model.d=2"]
    argv = [
        "sweep",
        "experiments/phenom.toml",
        "--lr",
        "1e-3,1e-2",
        "--scale",
        "0.1",
        "--seeds",
        "0,1",
        "--w",
        "2",
        "--param",
        "full,shared",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    assert "8 members" in capsys.readouterr().out
    members, curves = read_sweep(out)
    assert len(members) == 8 and len(curves) == 8 * 3 * 24
    assert sorted(members.lr.unique()) == [1e-3, 1e-2] and set(members.seed) == {0, 1}
    assert members.param.tolist() == ["full"] * 4 + ["shared"] * 4


def test_axis_names_are_singular_and_checked():
    with pytest.raises(ConfigError, match=r"unknown axis 'lrs'; expected one of \['lr'"):
        sweep(base(), {"lrs": [1e-2]}, progress=False)


def test_sweep_json_records_the_stated_axes_and_only_swept_variants(tmp_path):
    """sweep.json keeps the axes of the stated model whatever was swept (a fit's cache compares
    them), and records a variant axis only when it is swept: the base config holds it."""
    cfg = base()
    axes = {"lr": [1e-2, 3e-2], "seed": [0]}
    sweep(cfg, axes, out=tmp_path / "sw", progress=False)
    text = (tmp_path / "sw" / "sweep.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(describe(cfg, axes)))
    recorded = json.loads(text)["axes"]
    assert sorted(recorded) == ["d", "lr", "optimizer", "param", "scale", "seed", "w"]
    assert recorded["scale"] == [0.1] and recorded["w"] == [2] and recorded["param"] == ["full"]
    assert recorded["optimizer"][0]["b1"] == 0.9 and "momentum" not in recorded["optimizer"][0]
    swept = describe(cfg, {"forget": [0.0, 0.1], "readout_scale": [0.0]})["axes"]
    assert swept["forget"] == (0.0, 0.1) and "readout_scale" not in swept


def test_a_tampered_sweep_table_is_one_line(tmp_path):
    """sweep.parquet goes through the one read-back check (runs/validate): garbage, a FIFO or
    a deep schema is a DataError naming the file, never a traceback from pyarrow."""
    import os

    from phenomjax.errors import DataError

    (tmp_path / "sweep.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    with pytest.raises(DataError, match="sweep.parquet") as e:
        read_sweep(tmp_path)
    assert "\n" not in str(e.value)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "sweep.parquet")
    with pytest.raises(Exception, match="sweep"):
        read_sweep(fifo)


@pytest.mark.skipif(len(cores()) < 2, reason="two workers need two cores")
def test_groups_in_two_workers_give_the_one_process_sweep(tmp_path, capsys, monkeypatch):
    """Groups trained side by side in worker processes (longest first, so not in order): the
    member table and every curve row equal one process's, bit for bit; jobs=None starts them
    only when the sweep's FLOPs reach WORKERS_WORTH."""
    cfg = base("stochastic")
    axes = {"lr": [1e-2, 3e-2], "scale": [0.1], "seed": [0], "w": [1, 2, 3], "d": [2]}
    one = sweep(cfg, axes, out=tmp_path / "one", progress=False)
    with shared_compilations() as cache, Workers(2, cache=cache) as pool:  # as a fit runs it
        two = sweep(cfg, axes, out=tmp_path / "two", progress=True, pool=pool)
        assert any(Path(cache).iterdir())  # the workers' compilations, shared in one folder
    assert not Path(cache).exists()  # a temporary folder, removed
    assert one.member.tolist() == list(range(6)) and one.w.tolist() == [1, 1, 2, 2, 3, 3]
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(read_sweep(tmp_path / "one")[1], read_sweep(tmp_path / "two")[1])
    pd.testing.assert_frame_equal(read_sweep(tmp_path / "two")[0], two)
    assert "(3/3 groups)" in capsys.readouterr().err  # one line per group off a terminal
    sweep(cfg, axes, out=tmp_path / "small", progress=True, jobs=None)
    assert "groups)" not in capsys.readouterr().err  # this tiny sweep: in this process
    monkeypatch.setattr(sweep_module, "WORKERS_WORTH", 0.0)
    auto = sweep(cfg, axes, out=tmp_path / "auto", progress=True, jobs=None)
    assert "(3/3 groups)" in capsys.readouterr().err
    pd.testing.assert_frame_equal(one, auto)
    with pytest.raises(ConfigError, match="jobs: expected 1"):
        sweep(cfg, axes, out=tmp_path / "three", progress=False, jobs=2, devices=2)
    assert not (tmp_path / "three").exists()  # refused before anything is written
