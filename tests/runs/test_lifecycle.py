"""The one run lifecycle (phenomjax.runs.lifecycle, driven by phenomjax.training.drive_run): a
run stopped before its first checkpoint resumes, the failure policy, the folder lock, read-only
folders as one line, file modes that follow the umask, and plain progress lines when stderr is
not a terminal."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fixtures.run_dirs import make_run_dir

from phenomjax import cli
from phenomjax.data import DataConfig
from phenomjax.errors import RunDirError
from phenomjax.phenom.train import (
    ModelSection,
    PhenomConfig,
    PhenomOptimConfig,
    TrainSection,
    train_phenom,
)
from phenomjax.runs import RunDir, atomic_write_bytes, lifecycle
from phenomjax.runs.storage import StorageError, atomic_write_json
from phenomjax.training import Schedule, drive, runner


def small_cfg(steps: int = 40) -> PhenomConfig:
    return PhenomConfig(
        data=DataConfig(K=48, L=8, alpha=1.0, seed=3),
        model=ModelSection(w=2, d=4, init_scale=0.1),
        optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
        train=TrainSection(mode="stochastic", steps=steps, batch=8, num_evals=6, max_chunk=16),
    )


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> RunDir:
    return train_phenom(small_cfg(), tmp_path_factory.mktemp("full") / "run", progress=False)


def _same_numbers(a: RunDir, b: RunDir) -> None:
    np.testing.assert_array_equal(a.read_evals().to_numpy(), b.read_evals().to_numpy())
    np.testing.assert_array_equal(a.read_train().to_numpy(), b.read_train().to_numpy())


def _patched_drive(monkeypatch, wrap):
    """Run drive_run's loop with its keyword arguments changed by `wrap(kw)`."""
    real = runner.drive
    monkeypatch.setattr(runner, "drive", lambda state, plan, **kw: real(state, plan, **wrap(kw)))


# -- a run stopped before its first checkpoint (issue 12 item 2) ---------------------------------


def test_resume_before_the_first_checkpoint_starts_from_step_0(full, tmp_path, monkeypatch):
    out = tmp_path / "cut"

    def killed_at_once(kw):
        def evaluate(state, step):
            raise KeyboardInterrupt  # as a kill lands before the first evaluation is saved

        return {**kw, "evaluate": evaluate}

    _patched_drive(monkeypatch, killed_at_once)
    with pytest.raises(KeyboardInterrupt):
        train_phenom(small_cfg(), out, progress=False)
    monkeypatch.undo()
    run = RunDir(out)
    assert run.manifest()["status"] == "running" and not run.has_checkpoint()
    # a plain rerun says what to do
    with pytest.raises(RunDirError, match="no checkpoint yet") as e:
        train_phenom(small_cfg(), out, progress=False)
    assert "--resume" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RunDirError, match="--resume starts such a run again from step 0"):
        run.load_checkpoint()
    resumed = train_phenom(small_cfg(), out, resume=True, progress=False)
    assert resumed.manifest()["status"] == "complete"
    _same_numbers(resumed, full)


def test_cli_resume_of_a_transformer_run_without_checkpoint(tmp_path, capsys):
    from phenomjax.config import load_config
    from phenomjax.configs import packaged
    from phenomjax.transformer.train import TrainConfig

    cfg = load_config(TrainConfig, packaged("tiny"), ["train.steps=6"])
    out = tmp_path / "stuck"
    RunDir.create_for(out, kind="transformer", cfg=cfg)  # what a kill before step 0 leaves
    argv = ["train", "tiny", "--set", "train.steps=6", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --resume" in err and str(out) in err
    assert cli.main(argv + ["--resume"]) == 0
    run = RunDir(out)
    assert run.manifest()["status"] == "complete"
    assert sorted(run.read_evals().step.unique())[-1] == 6
    assert list(run.read_train().step) == [1, 2, 3, 4, 5, 6]


# -- the failure policy --------------------------------------------------------------------------


def test_an_error_mid_run_flushes_and_leaves_the_run_resumable(full, tmp_path, monkeypatch):
    out = tmp_path / "broken"

    def failing_after_three_chunks(kw):
        on_chunk, seen = kw["on_chunk"], []

        def chunk(first, losses):
            on_chunk(first, losses)
            seen.append(first)
            if len(seen) == 3:
                raise RuntimeError("disk controller on fire")

        return {**kw, "on_chunk": chunk}

    _patched_drive(monkeypatch, failing_after_three_chunks)
    with pytest.raises(RuntimeError, match="on fire"):
        train_phenom(small_cfg(), out, progress=False)
    monkeypatch.undo()
    run = RunDir(out)
    m = run.manifest()
    assert m["status"] == "running" and "error" not in m
    saved = run.load_checkpoint()[1]["step"]
    # the train rows computed after the last checkpoint were flushed, not lost
    assert run.read_train().step.max() > saved
    resumed = train_phenom(small_cfg(), out, resume=True, progress=False)
    assert resumed.manifest()["status"] == "complete"
    _same_numbers(resumed, full)


def test_resuming_a_failed_run_clears_its_error(tmp_path):
    cfg = small_cfg(steps=20)
    run = train_phenom(cfg, tmp_path / "r", progress=False)
    run.set_status("failed", error="NonFiniteLossError: made up")
    assert train_phenom(cfg, run.path, resume=True, progress=False).manifest()["error"] is None


def test_a_run_whose_manifest_says_momentum_resumes(tmp_path, monkeypatch):
    """optimizer.momentum is optimizer.b1 now (issue 17): a run written under the old name
    resumes to the same numbers, and one with another value is refused naming b1."""
    full = train_phenom(small_cfg(), tmp_path / "full", progress=False)

    def stop_after_step_10(kw):
        checkpoint = kw["checkpoint"]

        def save_then_stop(state, step):
            checkpoint(state, step)
            if step >= 10:
                raise KeyboardInterrupt

        return {**kw, "checkpoint": save_then_stop}

    _patched_drive(monkeypatch, stop_after_step_10)
    with pytest.raises(KeyboardInterrupt):
        train_phenom(small_cfg(), tmp_path / "old", progress=False)
    monkeypatch.undo()
    run = RunDir(tmp_path / "old")
    m = run.manifest()
    opt = m["config"]["optimizer"]
    m["config"]["optimizer"] = {("momentum" if k == "b1" else k): v for k, v in opt.items()}
    atomic_write_json(run.manifest_path, m)
    other = dataclasses.replace(small_cfg(), optimizer=PhenomOptimConfig(name="adam", lr=1e-2,
                                                                          b1=0.5))  # fmt: skip
    with pytest.raises(RunDirError, match=r"optimizer\.b1 \(run has 0\.9, config has 0\.5\)"):
        train_phenom(other, run.path, resume=True, progress=False)
    resumed = train_phenom(small_cfg(), run.path, resume=True, progress=False)
    assert resumed.manifest()["status"] == "complete"
    _same_numbers(resumed, full)


# -- the folder lock (issue 12 item 8) -----------------------------------------------------------


def test_a_locked_run_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    with lifecycle.run_lock(out):
        with pytest.raises(RunDirError, match=rf"in use by another process \(pid {os.getpid()}\)"):
            train_phenom(small_cfg(steps=8), out, resume=True, progress=False)
        argv = ["train", "tiny", "--out", str(out), "--no-progress", "--resume"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use by another process" in err
        assert not RunDir(out).exists()  # refused before anything was written
    assert train_phenom(small_cfg(steps=8), out, progress=False).manifest()["status"] == "complete"


def test_the_lock_is_held_across_processes_and_released_when_the_holder_ends(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, str(os.getpid()).encode())\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n", str(out / lifecycle.LOCK_NAME)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        want = f"{out}: in use by another process (pid {holder.pid})"
        with pytest.raises(RunDirError, match=re.escape(want)):
            with lifecycle.run_lock(out):
                pass
    finally:
        holder.communicate("", timeout=30)
    with lifecycle.run_lock(out):  # the holder ended: its lock went with it
        assert (out / lifecycle.LOCK_NAME).read_text().strip() == str(os.getpid())


# -- read-only folders (issue 12 item 6) ---------------------------------------------------------


def _read_only(folder: Path, monkeypatch) -> None:
    """Make `folder` read-only; where chmod does not bind (root), refuse its temp files."""
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_atomic_write_into_a_read_only_folder_is_one_named_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    atomic_write_bytes(folder / "x.bin", b"old")
    _read_only(folder, monkeypatch)
    try:
        with pytest.raises(StorageError) as e:
            atomic_write_json(folder / "x.bin", {"new": 1})
        msg = str(e.value)
        assert msg.startswith(f"{folder}: not writable") and "\n" not in msg
        assert isinstance(e.value, RunDirError) and isinstance(e.value, OSError)
        assert (folder / "x.bin").read_bytes() == b"old"
        assert sorted(p.name for p in folder.iterdir()) == ["x.bin"]  # no temporary left
    finally:
        folder.chmod(0o755)


def test_train_resume_in_a_read_only_run_is_one_line(tmp_path, monkeypatch, capsys):
    from phenomjax.config import load_config
    from phenomjax.configs import packaged
    from phenomjax.transformer.train import TrainConfig

    out = tmp_path / "run"
    cfg = load_config(TrainConfig, packaged("tiny"))
    RunDir.create_for(out, kind="transformer", cfg=cfg)
    _read_only(out, monkeypatch)
    try:
        assert cli.main(["train", "tiny", "--out", str(out), "--resume", "--no-progress"]) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out}: not writable" in err, err


def test_analyze_into_a_read_only_cache_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_run_dir(tmp_path / "runs/tiny", K=16, L=8)
    cache = tmp_path / "cache"
    cache.mkdir()
    _read_only(cache, monkeypatch)
    argv = ["analyze", "--run", "runs/tiny", "--no-show-plots", "--no-save-plots",
            "--cache-dir", str(cache)]  # fmt: skip
    try:
        assert cli.main(argv) == 2
    finally:
        cache.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{cache}: not writable" in err, err


# -- file modes follow the umask (issue 12 item 10) ----------------------------------------------


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        run = RunDir.create(tmp_path / "run", kind="phenom", config={}, seed=0, K=2, L=3,
                            alpha=1.0, batch=1)  # fmt: skip
        run.save_checkpoint({"w": np.zeros(2)}, {"step": 0})
        files = [tmp_path / "a.bin", run.manifest_path, *run.checkpoint_dir.iterdir()]
    finally:
        os.umask(old)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == mode, f


# -- progress when stderr is not a terminal (issue 12 item 13) -----------------------------------


def _toy_drive(progress: bool) -> None:
    def advance(state, n):
        return state + n, np.full(8, 0.25, np.float32)

    plan = Schedule(40, 40, (0, 3, 10, 40), max_chunk=8, batch=4, desc="toy")
    drive(0, plan, step=0, advance=advance, evaluate=lambda s, t: None, progress=progress)


def test_progress_to_a_file_is_one_plain_line_per_evaluation(capsys):
    _toy_drive(progress=True)  # capsys's stderr is not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == "toy: step 0/40"
    assert [int(re.search(r"step (\d+)/40", x)[1]) for x in lines] == [0, 3, 10, 40]
    for x in lines[1:]:
        assert re.fullmatch(r"toy: step \d+/40, train loss 0\.2500, \d+ seq/s", x), x
    _toy_drive(progress=False)
    assert capsys.readouterr().err == ""


def test_progress_on_a_terminal_is_a_bar(monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    _toy_drive(progress=True)
    assert "train loss 0.2500" not in term.getvalue() and "toy" in term.getvalue()


def test_cli_interrupt_says_how_to_continue(tmp_path, monkeypatch, capsys):
    def interrupted_after_step_0(kw):
        checkpoint = kw["checkpoint"]

        def save_then_stop(state, step):
            checkpoint(state, step)
            raise KeyboardInterrupt

        return {**kw, "checkpoint": save_then_stop}

    _patched_drive(monkeypatch, interrupted_after_step_0)
    out = tmp_path / "run"
    sets = ["data.K=32", "data.L=6", "model.w=2", "model.d=2", "train.steps=5"]
    argv = ["train-phenom", "experiments/phenom.toml", "--out", str(out), "--no-progress"]
    assert cli.main(argv + [x for s in sets for x in ("--set", s)]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume continues the run" in err
    assert RunDir(out).manifest()["status"] == "running"
