"""Several devices and several hosts give the single-device numbers (docs/design.md §7).

Each case runs in a subprocess: --xla_force_host_platform_device_count and
jax.distributed.initialize must take effect before jax starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_COMPILE

WORKER = Path(__file__).with_name("distributed_worker.py")


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(WORKER.parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(job, out, *, host_devices, devices, extra=(), wait=True):
    cmd = [sys.executable, str(WORKER), job, str(out), "--devices", str(devices), *extra]
    proc = subprocess.Popen(
        cmd, env=_env(host_devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if wait:
        _check(proc)
    return proc


def _check(proc):
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(job: str, out) -> None:
    """`job` on two processes joined over 127.0.0.1 (gloo), two local devices each."""
    port = _free_port()
    procs = [
        _run(job, out, host_devices=2, devices=0, wait=False,
             extra=["--process-id", str(i), "--num-processes", "2", "--port", str(port)])
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        _check(p)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "sweep.json"
    _run("sweep", out, host_devices=1, devices=1)
    return json.loads(out.read_text())


@pytest.mark.slow  # the four-device transformer run stays in the default run
def test_sweep_on_four_devices_matches_one(single, tmp_path):
    out = tmp_path / "four.json"
    _run("sweep", out, host_devices=4, devices=4)
    got = json.loads(out.read_text())
    assert got["device_count"] == 4
    np.testing.assert_allclose(got["final_loss"], single["final_loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["final_accuracy"], single["final_accuracy"], atol=1e-6)


@pytest.mark.slow  # two processes joined by jax.distributed (the four-device runs stay default)
def test_sweep_on_two_processes_matches_one(single, tmp_path):
    out = tmp_path / "two.json"
    _two_processes("sweep", out)
    got = json.loads(out.read_text())
    assert got["process_count"] == 2 and got["device_count"] == 4
    np.testing.assert_allclose(got["final_loss"], single["final_loss"], rtol=1e-5, atol=1e-6)


def test_train_data_parallel_on_four_devices_matches_one(tmp_path):
    ref, got = tmp_path / "one.json", tmp_path / "four.json"
    _run("train", ref, host_devices=1, devices=1)
    _run("train", got, host_devices=4, devices=4)
    a, b = json.loads(ref.read_text()), json.loads(got.read_text())
    assert b["device_count"] == 4
    assert a["presentations"] == b["presentations"]  # same batches on every device count
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4, atol=1e-5)
    print("max |loss| difference, 4 devices vs 1:", np.abs(np.subtract(a["loss"], b["loss"])).max())


@pytest.mark.slow  # two processes joined by jax.distributed (the four-device runs stay default)
def test_train_on_two_processes_matches_one(tmp_path):
    """Multi-host training: two processes on 127.0.0.1 (gloo), two local devices each, train
    the tiny transformer data-parallel over all four and give one process's numbers."""
    ref, got = tmp_path / "one.json", tmp_path / "two.json"
    _run("train", ref, host_devices=1, devices=1)
    _two_processes("train", got)
    a, b = json.loads(ref.read_text()), json.loads(got.read_text())
    assert b["process_count"] == 2 and b["device_count"] == 4
    assert a["presentations"] == b["presentations"]  # the same batches, split over hosts
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b["accuracy"], a["accuracy"], atol=1e-6)
