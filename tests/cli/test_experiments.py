"""`phenomjax experiments`: trains the four experiments where the packaged analysis config looks,
reuses finished runs, and the historical `--experiment all` then works on what it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import phenomjax.cli.experiments as experiments
from phenomjax.analysis.settings import load_analysis_config
from phenomjax.cli import main
from phenomjax.cli.experiments import EXPERIMENTS
from phenomjax.configs import packaged
from phenomjax.data import zipf_weights
from phenomjax.runs import RunDir, RunLog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_experiments(tmp_path, monkeypatch):
    """A working folder whose experiments/<name>_cpu.toml are the embedded tiny config, cut to
    a few steps (the real ones take minutes)."""
    monkeypatch.chdir(tmp_path)
    text = packaged("tiny").read_text().replace("steps = 60", "steps = 12")
    (tmp_path / "experiments").mkdir()
    for name in EXPERIMENTS:
        (tmp_path / "experiments" / f"{name}_cpu.toml").write_text(text)
    return tmp_path


def fake_train(calls: list):
    """A trainer that writes a complete run directory of `cfg` without training: losses decay
    from ln 2 with each sequence's presentations (what the command and analyze read)."""

    def train(cfg, out, *, resume=False, progress=True):
        calls.append((Path(out), resume))
        run = RunDir.create_for(out, kind="transformer", cfg=cfg, extra={"n_params": 100})
        K, rng = cfg.data.K, np.random.default_rng(cfg.data.seed)
        log, counts = RunLog(run), np.zeros(K, np.int64)
        for step in (0, 4, 16, 64):
            loss = np.log(2.0) * np.exp(-counts / 8.0)
            log.add_eval(step, counts.copy(), loss, (loss < 0.3).astype(np.float32))
            counts += rng.multinomial(8 * (step + 1), zipf_weights(K, cfg.data.alpha))
        log.add_train(np.array([0, 64]), np.full(2, 0.5), np.full(2, 0.01))
        log.flush()
        run.set_status("complete")
        return run

    return train


def test_trains_the_four_where_analysis_looks_then_reuses_them(
    tiny_experiments, monkeypatch, capsys
):
    root, calls = tiny_experiments, []
    monkeypatch.setattr(experiments, "train", fake_train(calls))
    assert main(["experiments", "--cpu", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("trained (complete" in ln for ln in lines)
    assert [p for p, _ in calls] == [Path("runs") / f"{n}_cpu" for n in EXPERIMENTS]
    # the paths are the packaged analysis config's
    cfg = load_analysis_config()
    assert {p.name for p in cfg.run_paths("all")} == {f"{n}_cpu" for n in EXPERIMENTS}
    assert main(["experiments", "--cpu", "--no-progress"]) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert len(again) == 4 and all("reused (complete" in ln for ln in again) and len(calls) == 4
    # the historical command now works in a fresh folder
    argv = ["analyze", "--experiment", "all", "--rank-selection", "low", "--comparative",
            "--no-show-plots", "--figures-dir", "figs", "--set", "plot.max_comparative_bins=1",
            "--set", 'plot.formats=["png"]']  # fmt: skip
    assert main(argv) == 0
    assert "small_cpu" in capsys.readouterr().out
    assert (root / "figs" / "all_comparative_rank_0.png").is_file()


def test_seeds_make_one_group_per_experiment_and_another_config_is_refused(
    tiny_experiments, monkeypatch, capsys
):
    root, calls = tiny_experiments, []
    monkeypatch.setattr(experiments, "train", fake_train(calls))
    argv = ["experiments", "--cpu", "--only", "small", "--seeds", "0,1", "--no-progress"]
    assert main(argv) == 0
    group = root / "runs" / "small_cpu"
    assert sorted(p.name for p in group.iterdir()) == ["seed-0", "seed-1"]
    assert RunDir(group / "seed-1").manifest()["seed"] == 1
    assert main(["analyze", "--run", "runs/small_cpu", "--no-show-plots", "--no-save-plots"]) == 0
    out = capsys.readouterr().out
    assert "seed group small_cpu: lag as geo. mean [min, max] over 2 seeds" in out
    assert main([*argv, "--set", "optimizer.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "holds a run of another config: optimizer.lr" in err and err.count("\n") == 1
    assert main(["experiments", "--only", "tiny"]) == 2
    assert "--only tiny: expected some of small" in capsys.readouterr().err
    assert main(["experiments", "--from", "nowhere"]) == 2
    assert "nowhere/small.toml: not found" in capsys.readouterr().err


def test_one_real_experiment_trains_then_is_reused(tiny_experiments, monkeypatch, capsys):
    root = tiny_experiments
    assert main(["experiments", "--cpu", "--only", "small", "--no-progress"]) == 0
    run = RunDir(root / "runs" / "small_cpu")
    assert run.manifest()["status"] == "complete" and run.read_evals()["step"].max() == 12

    def refuse(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiments, "train", refuse)
    assert main(["experiments", "--cpu", "--only", "small"]) == 0
    assert "reused (complete" in capsys.readouterr().out.splitlines()[-1]


def test_the_repository_has_every_experiment_config():
    for name in EXPERIMENTS:
        for stem in (name, f"{name}_cpu"):
            assert (REPO / "experiments" / f"{stem}.toml").is_file()
