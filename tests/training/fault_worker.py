"""Worker for tests/training/test_faults.py: trains the tiny config in a fresh process and SIGKILLs
itself at a chosen moment, as a real kill would land.

    python tests/fault_worker.py OUT MOMENT [--nth N] [--resume]

MOMENT: none (run to the end), chunk (while a dispatched chunk of steps is in flight),
eval-write (half-way through writing evals.parquet), checkpoint-write (half-way through writing
the checkpoint's state file).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(moment: str, nth: int) -> None:
    import phenomjax.runs.storage as rundir
    import phenomjax.training.runner as runner

    seen = {"n": 0}

    def hit() -> bool:
        seen["n"] += 1
        return seen["n"] == nth

    if moment == "chunk":
        real_drive = runner.drive

        def drive(state, plan, *, advance, **kw):
            def killing_advance(s, n):
                out = advance(s, n)  # dispatched asynchronously: the chunk is in flight
                if hit():
                    _die()
                return out

            return real_drive(state, plan, advance=killing_advance, **kw)

        runner.drive = drive
    elif moment in ("eval-write", "checkpoint-write"):
        real_write = rundir.atomic_write
        target = "evals.parquet" if moment == "eval-write" else "state-"

        def atomic_write(path, write):
            path = Path(path)
            if path.name.startswith(target) and hit():
                # the temporary file is half written when the kill lands
                tmp = path.parent / f".{path.name}.killed.tmp"
                write(tmp)
                data = tmp.read_bytes()
                tmp.write_bytes(data[: len(data) // 2])
                _die()
            return real_write(path, write)

        rundir.atomic_write = atomic_write
    elif moment != "none":
        raise SystemExit(f"unknown moment {moment!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("moment")
    p.add_argument("--nth", type=int, default=3)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args()
    from phenomjax.config import load_config
    from phenomjax.configs import packaged
    from phenomjax.transformer.train import TrainConfig, train

    _arm(a.moment, a.nth)
    cfg = load_config(TrainConfig, packaged("tiny"), ["train.max_chunk=8"])
    train(cfg, a.out, resume=a.resume, progress=False)


if __name__ == "__main__":
    main()
