"""The one run lifecycle (docs/design.md §4): the run directory side of every kind of run.

    with open_run(out, kind=..., cfg=cfg, init=init, resume=resume) as opened:
        if opened.complete:
            return opened.run
        return training.drive_run(opened, schedule, advance=..., evaluate=..., ...)

- `open_run` creates the run directory from the config, or reopens it for --resume: the state
  comes from the checkpoint and rows after the checkpoint step are dropped (they are recomputed
  to the same numbers, every random draw being keyed by its step). A run stopped before its
  first checkpoint resumes from step 0. The writing process holds an advisory lock on the folder
  for the whole run, so a second --resume of the same run is refused instead of racing it.
- What happens between opening and finishing (the state layout, the jitted steps, the loop, the
  failure policy) is phenomjax.training, which stands on this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax

from ..config import to_dict
from ..errors import RunDirError
from .checkpoint import arrays_to_pytree
from .log import RunLog
from .reuse import RUN_NAMES, claim
from .rundir import RunDir

LOCK_NAME = ".lock"


# -- the run directory side ----------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the run folder `path` (`path/.lock`), or refuse.

    flock is released by the kernel when the process ends, however it ends, so a killed run
    never leaves its folder locked. The lock file is never a link, FIFO or device: lstat refuses
    those before opening, and O_NOFOLLOW closes the race, so nothing is written through one.
    """
    lock = Path(path) / LOCK_NAME
    fd = _open_lock(lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirError(f"{lock.parent}: in use by another process (pid {held})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _open_lock(lock: Path) -> int:
    """The lock file's descriptor, opened without truncating or following anything."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        st = os.lstat(lock) if os.path.lexists(lock) else None
        if st is not None and not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise RunDirError(f"{lock}: is {kind}; remove it (phenomjax writes no lock through it)")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(lock, flags, 0o666)
    except PermissionError:
        raise RunDirError(
            f"{lock.parent}: not writable (cannot create {LOCK_NAME}); "
            "make it writable or choose another folder"
        ) from None
    except OSError as e:  # ELOOP: it became a link after the lstat
        raise RunDirError(f"{lock}: cannot open the lock ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:  # a FIFO swapped in, or a hard link
        os.close(fd)
        raise RunDirError(f"{lock}: not a regular file of its own (a link?); remove it")
    return fd


@dataclasses.dataclass
class OpenRun:
    """A run directory opened for training, and where its training starts."""

    run: RunDir
    state: Any  # the training state pytree (phenomjax.training): initial or checkpointed
    step: int  # the step `state` is at
    log: RunLog  # rows so far (those up to `step` on resume)
    complete: bool  # resumed a run that had already finished: nothing to do
    writer: bool  # this process writes the run directory (process 0 of a multi-host run)


@contextlib.contextmanager
def open_run(
    out: str | os.PathLike,
    *,
    kind: str,
    cfg: Any,
    init: Callable[[], Any],
    resume: bool = False,
    extra: Callable[[Any], Mapping[str, Any]] | None = None,
    writer: bool = True,
    force: bool = False,
    start_step: int = 0,
) -> Iterator[OpenRun]:
    """Create the run directory `out` for `cfg` (a config with [data] and [train] sections), or
    reopen it with resume=True; the writing process holds the folder's lock until the block ends.

    `init()` builds the initial state (on resume only its shapes are used, unless there is no
    checkpoint yet), at step `start_step` (a run branched from another's state; else 0);
    `extra(state)` gives manifest fields of a new run (e.g. n_params).
    resume=True on a folder without a run starts one, so a requeued job can always pass --resume.
    `out` must be missing, empty or phenomjax's own (runs/reuse.claim); `force` accepts another
    folder when it holds none of the names a run writes (RUN_NAMES), keeping the user's files.
    """
    run = RunDir(out)
    if writer:
        claim(run.path, f"a {kind} run", force=force, writes=RUN_NAMES)
    with run_lock(run.path) if writer else contextlib.nullcontext():
        if resume and run.exists():
            yield _reopen(run, kind, cfg, init, writer, start_step)
            return
        state = init()
        if writer:
            run = RunDir.create_for(out, kind=kind, cfg=cfg, extra=extra(state) if extra else None)
        yield OpenRun(run, state, start_step, RunLog(run), complete=False, writer=writer)


def _reopen(
    run: RunDir, kind: str, cfg: Any, init: Callable[[], Any], writer: bool, start_step: int = 0
) -> OpenRun:
    # a run that predates a config field ran with its default: the field's default resumes it
    run.check_resumable(kind, to_dict(cfg), defaults=to_dict(type(cfg)()))
    manifest = run.manifest()
    if not run.has_checkpoint():  # stopped before its first checkpoint: start it over
        state, step, log = init(), start_step, RunLog(run)
    else:
        arrays, meta = run.load_checkpoint(steps=cfg.train.steps)  # a step in [0, steps]
        state = arrays_to_pytree(jax.eval_shape(init), arrays)
        step = meta["step"]
        log = RunLog(run, resume_step=step)
    complete = manifest.get("status") == "complete"
    if writer and not complete:
        # a failed run that is resumed is running again; its old error no longer applies
        run.set_status("running", **({"error": None} if manifest.get("error") else {}))
    return OpenRun(run, state, step, log, complete=complete, writer=writer)
