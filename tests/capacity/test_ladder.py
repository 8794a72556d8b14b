"""capacity/ladder.py and search.py: full-batch runs, the two parameter counts, and the search
end to end on a tiny config (tables, figures, reuse, the ownership of the output folder)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from phenomjax.capacity import (
    BracketSection,
    CapacityConfig,
    PhenomSize,
    SaturationSection,
    first_K,
    param_counts,
    run_capacity,
)
from phenomjax.capacity.config import (
    LadderSection,
    PhenomSection,
    PlateauSection,
    Size,
    ZipfSection,
)
from phenomjax.capacity.ladder import chain_jobs, run_job
from phenomjax.config import load_config
from phenomjax.data import DataConfig
from phenomjax.errors import ConfigError
from phenomjax.runs import RunDir
from phenomjax.runs.reuse import ReuseError
from phenomjax.transformer.model import GPTConfig
from phenomjax.transformer.train import LoopConfig, TrainConfig, train


@pytest.mark.parametrize(("n_layer", "n_head", "head_dim", "L"), [(1, 1, 8, 32), (2, 2, 8, 16)])
def test_param_counts_match_the_formula(n_layer, n_head, head_dim, L):
    D = n_head * head_dim
    core = n_layer * (12 * D * D + 9 * D) + 2 * D + 2  # attention, MLP (+ biases), the head
    embed = 2 * D + L * D + n_layer * 4 * D + 2 * D  # tokens, positions, LayerNorm gains/biases
    model = GPTConfig(n_layer=n_layer, n_head=n_head, head_dim=head_dim)
    assert param_counts(model, L) == (core + embed, core)


def test_full_batch_presents_every_sequence_once_per_step(tmp_path):
    cfg = TrainConfig(
        data=DataConfig(K=6, L=6, alpha=1.0),  # Zipf weights are ignored: all K every step
        model=GPTConfig(n_layer=1, n_head=1, head_dim=4),
        train=LoopConfig(
            steps=9, batch=6, num_evals=4, max_chunk=9, full_batch=True, per_position=False
        ),  # fmt: skip
    )
    ev = train(cfg, tmp_path / "r", progress=False).read_evals()
    assert len(ev["step"].unique()) >= 3
    np.testing.assert_array_equal(ev["presentations"], ev["step"])  # exact counts


def test_full_batch_needs_batch_K(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text("[data]\nK = 10\n[train]\nbatch = 4\nfull_batch = true\n")
    with pytest.raises(ConfigError, match="train.batch: full_batch"):
        load_config(TrainConfig, bad)


def _tiny() -> CapacityConfig:
    return CapacityConfig(
        ladder=LadderSection(sizes=(Size(1, 1, 4),), L=6),
        bracket=BracketSection(guess=0.1, factors=(1.0, 3.0), max_K=2),
        saturation=SaturationSection(
            first_exposures=4,
            min_exposures=8,
            max_exposures=16,
            lrs=(0.03,),
            full_batch_max_K=8,
            resamples=20,
        ),  # fmt: skip
        train=LoopConfig(steps=12, batch=8, num_evals=4, max_chunk=64, per_position=False),
        plateau=PlateauSection(window=2, rel_tol=0.01, min_steps=4),
        zipf=ZipfSection(K=(16,), edges=(0, 4, 16)),
        phenom=PhenomSection(sizes=(PhenomSize(w=2, d=2),), steps=12, num_evals=4),
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("capacity") / "out"
    calls = []
    result, paths = run_capacity(_tiny(), out, on_run=lambda j, w, r: calls.append((j.role, w)))
    return out, result, paths, calls


@pytest.mark.slow  # a whole (tiny) search: bracket, saturation and summary have unit tests
def test_the_search_writes_its_tables(searched):
    out, result, paths, calls = searched
    # K0 and 3 K0 (full batch up to 8, then batches of 8); the sweep at K0 is K0's first budget
    cfg = _tiny()
    params, core = param_counts(GPTConfig(n_layer=1, n_head=1, head_dim=4), cfg.ladder.L)
    Ks = first_K(params, cfg.ladder.L, cfg.bracket)
    assert len(Ks) == 2 and Ks[0] <= 8 < Ks[1]
    assert calls[0] == ("lr_sweep", "trained") and calls[1] == ("bracket", "reused")
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["role"]) == {"lr_sweep", "bracket", "zipf", "phenom"}
    cap = pd.read_csv(out / "capacity.csv")
    t = cap[cap["model"] == "transformer"]
    assert sorted(t["K"]) == Ks and sorted(cap[cap["model"] == "phenom"]["K"]) == Ks
    assert (t["params"] == params).all() and (t["params_core"] == core).all()
    np.testing.assert_array_equal(cap["dataset_bits"], cap["K"] * (cap["L"] - 1))
    assert (t["exposures"] <= 16).all() and (t["n_budgets"] >= 2).all()
    # each transformer K: its last budget, and whether it converged or was extrapolated
    for _, r in t.iterrows():
        mine = runs[(runs["role"] == "bracket") & (runs["K"] == r["K"])].sort_values("exposures")
        assert r["memorized_bits"] == pytest.approx(mine["memorized_bits"].iloc[-1])
        g = mine["memorized_bits"].iloc[-1] / mine["memorized_bits"].iloc[-2] - 1
        assert r["gain_last_doubling"] == pytest.approx(g)
        assert r["converged"] == (g < 0.02 and r["exposures"] >= 8)
        assert r["extrapolated"] == (not r["converged"] and r["n_budgets"] >= 3)
    sizes = pd.read_csv(out / "capacity_sizes.csv")
    assert {"params", "params_core", "bits_per_param_core", "data_limited", "estimate"} <= set(
        sizes.columns
    )
    fit = json.loads((out / "capacity_fit.json").read_text())
    assert fit["transformer"]["reference_bits_per_param"] == 3.6
    assert (out / "capacity_params.png").stat().st_size > 0
    for name in runs["run"]:
        assert RunDir(out / "runs" / name).manifest()["status"] == "complete"


@pytest.mark.slow  # the search fixture above
def test_a_second_call_reuses_every_run(searched):
    out, result, _, calls = searched
    again = []
    second, _ = run_capacity(_tiny(), out, on_run=lambda j, w, r: again.append(w))
    assert set(again) == {"reused"} and len(again) == len(calls)
    pd.testing.assert_frame_equal(second.table, result.table)


def test_a_foreign_output_folder_is_refused(tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ReuseError, match="notes.txt"):
        run_capacity(_tiny(), out)
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == [
        "notes.txt"
    ]


def test_warmup_stable_decay_budgets_branch_from_one_trunk(tmp_path):
    # budgets of 8, 16, 32 exposures at K = 6 (full batch: steps = exposures), decay over the
    # last quarter: 8 and 16 branch from the 32-step trunk at steps 6 and 12
    sat = dataclasses.replace(_tiny().saturation, first_exposures=8, min_exposures=16,
                              max_exposures=32, cooldown=0.25)  # fmt: skip
    cfg = dataclasses.replace(_tiny(), saturation=sat)
    jobs = chain_jobs(cfg, Size(1, 1, 4), 6, 0.03)
    trunk = jobs[-1]
    assert [j.exposures for j in jobs] == [8, 16, 32] and trunk.trunk is None
    assert [j.branch_step for j in jobs[:-1]] == [6, 12] and all(
        j.trunk == trunk for j in jobs[:-1]
    )
    assert trunk.cfg.train.eval_steps == (6, 12)
    assert [j.cfg.optimizer.decay_steps for j in jobs] == [2, 4, 8]
    runs = tmp_path / "runs"
    assert [run_job(j, runs) for j in jobs] == ["trained", "trained", "resumed"]
    for j in jobs[:-1]:  # each branch: the numbers of its own run trained from step 0
        m = RunDir(runs / j.name).manifest()
        assert (m["branched_from"], m["branch_step"]) == (trunk.name, j.branch_step)
        alone = train(j.cfg, tmp_path / "alone" / j.name, progress=False).read_evals()
        mine = RunDir(runs / j.name).read_evals()
        last = [ev[ev.step == ev.step.max()].reset_index(drop=True) for ev in (mine, alone)]
        pd.testing.assert_frame_equal(*last)
    assert RunDir(runs / trunk.name).manifest()["status"] == "complete"
    assert [run_job(j, runs) for j in jobs] == ["reused"] * 3
    # a branch whose trunk is past its step trains from step 0 instead, to the same numbers
    (runs / jobs[0].name / "manifest.json").unlink()
    for p in sorted((runs / jobs[0].name).rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    assert run_job(jobs[0], runs) == "trained"
    assert "branched_from" not in RunDir(runs / jobs[0].name).manifest()


def test_a_budget_whose_decay_would_start_inside_the_warm_up_is_refused():
    sat = dataclasses.replace(_tiny().saturation, first_exposures=8, min_exposures=16,
                              max_exposures=32, cooldown=0.25, warmup_frac=0.5)  # fmt: skip
    with pytest.raises(ConfigError, match="8-exposure budget at K = 6 would start its decay"):
        chain_jobs(dataclasses.replace(_tiny(), saturation=sat), Size(1, 1, 4), 6, 0.03)
