"""Worker for tests/test_distributed.py: runs one job in a fresh process (so XLA_FLAGS and
jax.distributed take effect before jax starts) and writes its numbers as JSON (process 0 only).

    python tests/distributed_worker.py JOB OUT [--devices N] [--process-id I --num-processes P
                                                --port PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def sweep_job(devices: int) -> dict:
    from phenomjax.config import load_config
    from phenomjax.phenom.sweep import sweep
    from phenomjax.phenom.train import PhenomConfig

    cfg = load_config(
        PhenomConfig,
        None,
        [
            "data.K=64",
            "data.L=8",
            "model.w=2",
            "model.d=4",
            "train.steps=30",
            "train.num_evals=3",
            "train.mode=stochastic",
            "train.batch=8",
        ],
    )
    table = sweep(
        cfg,
        {"lr": [1e-2, 3e-2], "scale": [0.1, 0.3], "seed": [0, 1]},
        progress=False,
        devices=devices,
    )
    return {
        "final_loss": table.final_loss.tolist(),
        "final_accuracy": table.final_accuracy.tolist(),
    }


def train_job(devices: int) -> dict:
    import tempfile

    from phenomjax.config import load_config
    from phenomjax.configs import packaged
    from phenomjax.transformer.train import TrainConfig, train

    cfg = load_config(TrainConfig, packaged("tiny"), [f"distributed.devices={devices}"])
    with tempfile.TemporaryDirectory() as d:
        ev = train(cfg, f"{d}/run", progress=False).read_evals()
    return {"loss": ev.loss.tolist(), "accuracy": ev.accuracy.tolist(),
            "presentations": ev.presentations.tolist()}  # fmt: skip


JOBS = {"sweep": sweep_job, "train": train_job}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("job", choices=sorted(JOBS))
    p.add_argument("out")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--process-id", type=int, default=-1)
    p.add_argument("--num-processes", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from phenomjax import distributed

    if a.num_processes:
        distributed.initialize(
            distributed.DistributedConfig(
                initialize=True,
                coordinator=f"127.0.0.1:{a.port}",
                num_processes=a.num_processes,
                process_id=a.process_id,
            )
        )
    import jax

    result = JOBS[a.job](a.devices)
    result["device_count"] = jax.device_count()
    result["process_count"] = jax.process_count()
    if distributed.is_main():
        with open(a.out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    sys.exit(main())
