"""fitting.fit: `fit_run` end to end on runs the phenom model made itself (identifiability of
the stated model and of its variant), legacy logs (fresh bits), reuse and the commit of a fit's
outputs as a unit, ownership of the output folder, the grid's cost bound, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from fixtures.legacy_logs import write_legacy_log

from phenomjax.cli import main
from phenomjax.data import DataConfig
from phenomjax.errors import ConfigError, RunDirError
from phenomjax.fitting import FitReport, fit_run, format_report
from phenomjax.fitting.grid import FitGridConfig, GridSection, OptimizerEntry
from phenomjax.phenom.train import (
    ModelSection,
    PhenomConfig,
    PhenomOptimConfig,
    TrainSection,
    train_phenom,
)
from phenomjax.runs import RunDir

TRUTH = {"w": 2, "d": 4, "lr": 1e-2, "scale": 0.1}
LRS = (3e-3, 1e-2, 3e-2)


def grid(lr=LRS, **kw) -> FitGridConfig:
    """A small grid: expected mode, w 1-2, d 4, scale 0.1, adam at `lr`, every member to the
    end and no refinement (test_halving, test_refine test those); kw: GridSection fields."""
    g = dict(mode=("expected",), w=(1, 2), d=(4,), scale=(0.1,), refit_seeds=3, num_evals=12,
             halving=False, refine_steps=0)  # fmt: skip
    return FitGridConfig(grid=GridSection(**{**g, **kw}), optimizers=(OptimizerEntry(lr=lr),))


def _truth_run(path, **model):
    cfg = PhenomConfig(
        data=DataConfig(K=24, L=8, alpha=1.0, seed=3),
        model=ModelSection(w=TRUTH["w"], d=TRUTH["d"], init_scale=TRUTH["scale"], **model),
        optimizer=PhenomOptimConfig(name="adam", lr=TRUTH["lr"]),
        train=TrainSection(mode="expected", steps=150, batch=16, num_evals=12),
    )
    return train_phenom(cfg, path, progress=False).path


@pytest.fixture(scope="module")
def truth_fit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ident")
    run = _truth_run(tmp / "truth")
    return run, tmp / "fit", fit_run(run, tmp / "fit", grid(), progress=False)


def test_identifiability_recovers_the_generating_settings(truth_fit):
    """A run made by the phenom model itself (w=2, d=4, lr=1e-2, scale=0.1) is fitted back:
    w, d, scale and lr exact on this grid, RMSE < 1e-3, shift 1; its lag reproduced."""
    _, out, rep = truth_fit
    m, s = rep.best.member, rep.best.score
    assert (m.w, m.d, m.scale, m.lr) == (TRUTH["w"], TRUTH["d"], TRUTH["scale"], TRUTH["lr"])
    assert s.rmse < 1e-3 and s.shift == pytest.approx(1.0)
    assert [p.seed for p in rep.best.per_seed] == [3, 4, 5] and rep.best.total_n == 3
    assert not rep.run.fresh_bits and "own bits" in rep.run.bits and rep.run.n_seeds == 1
    assert rep.reproduction.reproduced and rep.any_member.flagged == 3  # the w = 1 members
    man = RunDir(out / "best").manifest()
    assert man["kind"] == "phenom" and man["status"] == "complete" and man["seed"] == 3
    assert man["config"] == rep.best.config and man["config"]["model"]["w"] == TRUTH["w"]
    back = FitReport.load(out / "report.json")
    assert back.same_fit(rep) and back.best == rep.best and len(back.verdicts) == 3
    assert rep.settings.cost.members == 6 and rep.timings.total_s > 0
    text = format_report(rep)
    assert "best: expected adam" in text and "full w=2 d=4 lr=0.01" in text
    assert "spread over a bin's ranks (one run)" in text and "seed-band units" not in text
    assert "lag reproduced by the best: yes" in text and "z = 10" not in text


def test_rerun_reuses_and_a_fit_is_committed_as_a_unit(truth_fit):
    """A rerun keeps every file (and the report of the call that computed it); members.csv
    that no longer has report.json's digest (a fit killed between the two) is rewritten."""
    run, out, rep = truth_fit
    sweep = out / "sweeps" / "expected" / "sweep.parquet"
    stamps = [p.stat().st_mtime_ns for p in (sweep, out / "best" / "manifest.json",
                                             out / "report.json")]  # fmt: skip
    again = fit_run(run, out, grid(), progress=False)
    assert again.outcome == "reused" and again.timings == rep.timings
    assert [p.stat().st_mtime_ns for p in (sweep, out / "best" / "manifest.json",
                                           out / "report.json")] == stamps  # fmt: skip
    csv = (out / "members.csv").read_bytes()
    (out / "members.csv").write_bytes(csv.replace(b"expected", b"stochastic", 1))
    fixed = fit_run(run, out, grid(), progress=False)
    assert fixed.outcome == "fitted" and (out / "members.csv").read_bytes() == csv
    import hashlib

    assert FitReport.load(out / "report.json").members_sha256 == hashlib.sha256(csv).hexdigest()


def test_both_modes_on_two_workers_fit_as_one_process(truth_fit, tmp_path):
    """jobs=2: the two modes' sweeps share two workers, side by side: the members and the
    best are those of one process; the report says when each mode was done."""
    run = truth_fit[0]
    g = grid(mode=("expected", "stochastic"))
    one = fit_run(run, tmp_path / "one", g, progress=False, jobs=1)
    two = fit_run(run, tmp_path / "two", g, progress=False, jobs=2)
    assert (tmp_path / "one" / "members.csv").read_bytes() == (
        tmp_path / "two" / "members.csv").read_bytes()  # fmt: skip
    assert two.best.member == one.best.member and two.best.score == one.best.score
    assert [m for m, _ in two.timings.per_mode] == ["expected", "stochastic"]
    assert "expected done at" in format_report(two)


def test_fit_never_replaces_what_it_did_not_write(truth_fit, tmp_path, capsys):
    """issue 21: a user's file in OUT/best, and an input inside OUT, stop the fit before it
    sweeps; nothing there is changed."""
    run, _, _ = truth_fit
    ud = tmp_path / "ud"
    (ud / "best").mkdir(parents=True)
    (ud / "best" / "thesis.tex").write_text("x")
    assert main(["fit", str(run), "--out", str(ud), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(ud) in err and len(err.strip().splitlines()) == 1
    assert (ud / "best" / "thesis.tex").read_text() == "x" and sorted(ud.iterdir()) == [ud / "best"]
    exp = tmp_path / "exp"
    shutil.copytree(run, exp / "best")
    with pytest.raises(RunDirError, match="inside the output folder"):
        fit_run(exp / "best", exp, grid(), progress=False)
    assert RunDir(exp / "best").manifest()["kind"] == "phenom"  # the input is intact
    assert sorted(p.name for p in exp.iterdir()) == ["best"]


def test_a_grid_past_its_bound_is_refused_before_anything_is_written(truth_fit, tmp_path, capsys):
    run, _, _ = truth_fit
    out = tmp_path / "big"
    w = "[" + ",".join(str(i) for i in range(1, 1002)) + "]"
    assert main(["fit", str(run), "--out", str(out), "--set", f"grid.w={w}"]) == 2
    err = capsys.readouterr().err
    assert "compiled groups" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow  # a legacy log fitted in two modes; the run-directory fits stay default
def test_legacy_log_fits_on_fresh_bits_in_both_modes(tmp_path):
    log = write_legacy_log(tmp_path / "legacy.pkl", K=40, L=6, epochs=6, test_every=1, batch=8,
                           iters_per_epoch=5)  # fmt: skip
    g = grid(lr=(1e-2,), w=(1,), d=(2,), mode=("expected", "stochastic"), num_evals=6)
    rep = fit_run(log, tmp_path / "fit", g, progress=False)
    assert rep.run.fresh_bits and "fresh bits" in rep.run.bits and rep.run.kind == "legacy"
    assert rep.run.batch == 8 and rep.run.steps == 25  # 5 epochs x 5 steps per epoch
    assert {t.member.mode for t in rep.top} == {"expected", "stochastic"}
    assert np.isfinite(rep.best.total_mean) and len(rep.best.per_seed) == 3
    assert not rep.reproduction.can_memorize  # only w = 1 was swept: flagged


def test_cli_errors_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["fit", str(missing), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "notarun"
    empty.mkdir()
    assert main(["fit", str(empty), "--no-progress"]) == 2
    assert str(empty) in capsys.readouterr().err


def test_cli_old_flags_reach_the_same_fit(truth_fit, capsys):
    """The short flags are --set aliases: the same grid as the fixture, so every part is reused."""
    run, out, _ = truth_fit
    args = ["fit", str(run), "--out", str(out), "--w", "1,2", "--d", "4", "--lr",
            "3e-3,1e-2,3e-2", "--scale", "0.1", "--modes", "expected", "--num-evals", "12",
            "--refit-seeds", "3", "--set", "grid.halving=false", "--set", "grid.refine_steps=0",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "full w=2 d=4" in text and "report.json (reused)" in text


@pytest.mark.slow  # the identifiability test recovers the stated knobs in the default run
def test_fit_recovers_the_variant_knobs(tmp_path):
    """A run made by the variant (forget 0.02, readout_scale 1: docs/design.md §6) is fitted by a
    grid that holds both the stated model (0, 0) and the variant: the fit picks the variant's
    knobs and trains the best with them."""
    run = _truth_run(tmp_path / "truth", forget=0.02, readout_scale=1.0)
    g = grid(lr=(1e-2,), w=(2,), refit_seeds=1, forget=(0.0, 0.02), readout_scale=(0.0, 1.0))
    rep = fit_run(run, tmp_path / "fit", g, progress=False)
    assert rep.settings.cost.members == 4 and len(rep.best.per_seed) == 1
    assert (rep.best.member.forget, rep.best.member.readout_scale) == (0.02, 1.0)
    assert rep.best.score.rmse < 1e-3
    model = RunDir(tmp_path / "fit" / "best").manifest()["config"]["model"]
    assert (model["forget"], model["readout_scale"]) == (0.02, 1.0)
    assert {k.knob for k in rep.knobs} >= {"forget", "readout_scale"}


def test_fit_of_an_unfinished_run_warns_and_says_so(truth_fit, tmp_path):
    """A run still `running` is fitted up to its last evaluation, with a warning naming it and
    its status in the report and the printed text."""
    run, _, _ = truth_fit
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    m = json.loads((cut / "manifest.json").read_text())
    (cut / "manifest.json").write_text(json.dumps({**m, "status": "running"}))
    g = dataclasses.replace(grid(lr=(1e-2,), w=(2,), refit_seeds=1))
    with pytest.warns(UserWarning, match=r"unfinished runs .*cut \(running\)"):
        rep = fit_run(cut, tmp_path / "fit", g, progress=False)
    assert rep.run.status == "running"
    assert "run status: running (fitted up to its last evaluation)" in format_report(rep)


def test_bad_grids_are_config_errors(truth_fit, tmp_path):
    run, _, _ = truth_fit
    with pytest.raises(ConfigError, match="lr"):
        fit_run(run, tmp_path / "f", grid(lr=(-1.0,)), progress=False)
    assert not (tmp_path / "f").exists()
