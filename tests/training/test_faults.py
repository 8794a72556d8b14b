"""Runs survive SIGKILL (docs/design.md §4): during a scan chunk, during an evaluation write,
during a checkpoint write. Each time every evaluation finished before the kill is on disk and
readable, the manifest does not claim completion, and --resume ends with the evaluations of an
uninterrupted run. Cut-short files are refused with a named error, never served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_COMPILE

from phenomjax.errors import RunDirError
from phenomjax.runs import RunDir

WORKER = Path(__file__).with_name("fault_worker.py")


def _worker(out: Path, moment: str, *, resume: bool = False, nth: int = 3) -> int:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=FAST_COMPILE)  # one device
    env["PYTHONPATH"] = str(WORKER.resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(WORKER), str(out), moment, "--nth", str(nth)]
    proc = subprocess.run(cmd + (["--resume"] if resume else []), env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stdout[-2000:] + proc.stderr[-3000:])
    return proc.returncode


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("ref") / "run"
    assert _worker(out, "none") == 0
    run = RunDir(out)
    assert run.manifest()["status"] == "complete"
    return run.read_evals()


@pytest.mark.parametrize(  # a kill mid-chunk by default; the two write moments are slow
    "moment,nth",
    [
        ("chunk", 4),
        pytest.param("eval-write", 3, marks=pytest.mark.slow),
        pytest.param("checkpoint-write", 3, marks=pytest.mark.slow),
    ],
)
def test_kill_then_resume(tmp_path, reference, moment, nth):
    out = tmp_path / "run"
    assert _worker(out, moment, nth=nth) == -signal.SIGKILL
    run = RunDir(out)
    assert run.manifest()["status"] == "running"  # never claims completion
    ev = run.read_evals()  # readable: the cut-short temporary never replaced it
    done = sorted(ev.step.unique())
    assert done and set(done) < set(reference.step.unique())
    # every evaluation finished before the kill is there, with the uninterrupted numbers
    ref = reference[reference.step.isin(done)].reset_index(drop=True)
    pd.testing.assert_frame_equal(ev.reset_index(drop=True), ref, check_exact=False, atol=1e-6)

    assert _worker(out, "none", resume=True) == 0
    assert run.manifest()["status"] == "complete"
    final = run.read_evals()
    np.testing.assert_array_equal(final.step.to_numpy(), reference.step.to_numpy())
    np.testing.assert_array_equal(final.presentations.to_numpy(), reference.presentations)
    np.testing.assert_allclose(final.loss.to_numpy(), reference.loss.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(final.accuracy.to_numpy(), reference.accuracy.to_numpy())


def test_cut_short_parquet_is_refused_by_name(tmp_path, reference):
    run = RunDir.create(tmp_path / "r", kind="transformer", config={}, seed=0, K=16, L=8,
                        alpha=1.0, batch=8)  # fmt: skip
    run.write_evals(reference)
    data = run.evals_path.read_bytes()
    for cut in (len(data) // 3, len(data) - 8):
        run.evals_path.write_bytes(data[:cut])
        with pytest.raises(RunDirError, match="evals.parquet"):
            run.read_evals()
