"""One reuse rule and one ownership rule for everything phenomjax writes again (docs/design.md §4).

Reuse (`ensure_run`, `ensure_sweep`): a finished output with the same config is reused; one cut
short is resumed (a run) or recomputed (a sweep); one of another config is an error naming the
first field that differs, unless the caller asked to replace it. Nothing is deleted silently.

Ownership (`claim`, `owned`, `remove_owned`): phenomjax deletes or replaces only folders it
marked as its own: a run directory (manifest.json of a known kind), a sweep folder (sweep.json),
or a folder holding the marker file `.phenomjax` that `claim` writes into every output folder it
creates. Even inside an owned folder only the files phenomjax writes are removed (by name); any
other file makes the removal an error that names it, and then nothing is removed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import RunDirError
from .rundir import KINDS, RunDir, config_difference
from .storage import atomic_write_json, jsonable, now
from .validate import load_json

MARKER = ".phenomjax"
# What a run writes into its folder: with --force, a folder phenomjax did not write may hold
# anything but these (runs/rundir.py names them).
RUN_NAMES = ("manifest.json", "evals.parquet", "positions.parquet", "train.parquet",
             "checkpoint", ".lock")  # fmt: skip
# Names phenomjax writes inside the folders it owns (run, sweep, fit, figures, cache folders).
_OURS = re.compile(
    r"""^(
        manifest\.json | evals\.parquet | positions\.parquet | train\.parquet | \.lock
      | meta\.json | state-\d+\.npz | state\.npz
      | sweep\.json | sweep\.parquet | g\d+-step\d+\.parquet
      | report\.json | report\.html | members\.csv | \.phenomjax
      | \..+\.tmp                                  # an atomic write cut short
    )$""",
    re.X,
)
_OUR_FOLDERS = ("checkpoint", "curves")


class ReuseError(RunDirError):
    """An output folder holds something phenomjax may not reuse or replace."""


def _is_dir(path: Path) -> bool:
    """A real folder (a symlink to one is not: phenomjax never writes through a link)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_json(path: Path) -> Any:
    """The JSON at path, or None where it is missing, not a regular file, or not bounded JSON
    (validate.load_json: a FIFO never blocks, a deep value never recurses)."""
    try:
        return load_json(path)
    except (OSError, RunDirError):
        return None


def owned(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder phenomjax made: a run directory, a sweep folder or a folder
    with the marker file (each a regular file, not a link)."""
    p = Path(path)
    if not _is_dir(p):
        return False
    if _regular(p / MARKER):
        return True
    m = _read_json(p / "manifest.json") if _regular(p / "manifest.json") else None
    if isinstance(m, dict) and m.get("kind") in KINDS:
        return True
    s = _read_json(p / "sweep.json") if _regular(p / "sweep.json") else None
    return isinstance(s, dict) and "base_config" in s


def claim(
    path: str | os.PathLike, what: str, *, force: bool = False, writes: Iterable[str] = ()
) -> Path:
    """Make `path` an output folder of phenomjax (mkdir and the marker), or accept it when it
    is one already or empty; any other folder or file there is a ReuseError naming it.

    `force` accepts a folder phenomjax did not write as long as none of `writes` (the names it
    would write there) exists in it: the user's files are kept, never overwritten or deleted."""
    p = Path(path)
    check_folder(p, what)
    if _is_dir(p) and not owned(p):
        try:
            entries = sorted(os.listdir(p))
        except OSError as e:
            raise ReuseError(f"{p}: cannot list it ({e.strerror or e})") from None
        # a lone lock file: a run cut short before its manifest (one older than the marker)
        entries = [] if entries == [".lock"] and _regular(p / ".lock") else entries
        clash = [n for n in writes if _exists(p / n)] if force else entries
        if clash:
            hint = "" if force or not writes else " (or pass --force to write beside them)"
            raise ReuseError(
                f"{p / clash[0]}: in a folder phenomjax did not write; choose another output "
                f"folder for {what}{hint}; nothing there was changed"
            )
    p.mkdir(parents=True, exist_ok=True)
    if not _regular(p / MARKER):
        atomic_write_json(p / MARKER, {"what": what, "created": now()})
    return p


def check_folder(path: str | os.PathLike, what: str) -> None:
    """A ReuseError when `path` exists but is not a real folder (a file, a link, a FIFO), or a
    folder above it is a file: phenomjax writes into folders only, never through a link."""
    p = Path(path)
    if _exists(p) and not _is_dir(p):
        kind = "a symbolic link" if os.path.islink(p) else "not a folder"
        raise ReuseError(f"{p}: exists and is {kind}; choose another output folder for {what}")
    above = next((q for q in p.parents if os.path.lexists(q)), None)
    if above is not None and not os.path.isdir(above):  # links above the folder are the user's
        raise ReuseError(f"{above}: exists and is not a folder; choose another output folder")


def _leftovers(path: Path) -> tuple[list[Path], list[Path]]:
    """(files phenomjax wrote, anything else) under an owned folder, links never followed."""
    ours, other = [], []
    for root, dirs, files in os.walk(path, followlinks=False):
        r = Path(root)
        for name in dirs:
            sub = r / name
            if not _is_dir(sub):  # a link to a folder: not ours to follow or delete
                other.append(sub)
        for name in files:
            f = r / name
            (ours if _regular(f) and _OURS.match(name) else other).append(f)
    return ours, other


def remove_owned(path: str | os.PathLike) -> None:
    """Delete an owned folder's files (those phenomjax writes, by name) and its empty folders.

    Refuses, deleting nothing, when `path` is not owned or holds anything else."""
    p = Path(path)
    if not _exists(p):
        return
    if not owned(p):
        raise ReuseError(f"{p}: not a folder phenomjax wrote; it is left as it is")
    ours, other = _leftovers(p)
    if other:
        raise ReuseError(
            f"{other[0]}: not written by phenomjax; move it out of {p} to let phenomjax "
            "replace that folder (nothing was deleted)"
        )
    for f in ours:
        f.unlink()
    for root, _, _ in sorted(os.walk(p, followlinks=False), key=lambda t: -len(t[0])):
        os.rmdir(root)


def check_outside(inputs: Iterable[str | os.PathLike], output: str | os.PathLike) -> None:
    """A ReuseError when an input lies inside (or is) the output folder it would be replaced by."""
    out = Path(output).resolve()
    for i in inputs:
        p = Path(i).resolve()
        if p == out or out in p.parents:
            raise ReuseError(f"{i}: an input lies inside the output folder {output}; "
                             "choose another output folder")  # fmt: skip


def _difference(have: Mapping[str, Any], want: Mapping[str, Any], defaults) -> str | None:
    return config_difference(have, want, defaults=defaults)


def ensure_run(
    out: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    kind: str,
    train: Callable[[bool], RunDir],
    replace: bool = False,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[RunDir, str]:
    """The run directory `out` for `config`, trained only as far as needed: (run, what happened).

    - no folder, or an empty one: `train(False)` -> "trained";
    - a run of `kind` with the same config: complete or failed -> "reused" (a failed run stays
      failed: its numbers would fail again); running -> `train(True)` resumes it -> "resumed";
    - a run of another kind or config: a ReuseError naming the first differing field, unless
      `replace` (then its files are removed, as remove_owned, and it is trained: "replaced");
    - anything else there: a ReuseError naming it; nothing is deleted.

    `defaults` (the config's defaults, same shape) lets a run that predates a field match when
    the field is at its default. `train(resume)` trains `config` into `out`.
    """
    p = Path(out)
    run = RunDir(p)
    if _exists(p) and not _is_dir(p):
        raise ReuseError(f"{p}: exists and is not a folder; choose another output folder")
    if not run.exists():
        if _is_dir(p) and os.listdir(p) and not owned(p):
            raise ReuseError(
                f"{p}: holds files but no run (no manifest.json); choose another output folder "
                "(nothing there was changed)"
            )
        return train(False), "trained"
    m = run.manifest()
    if m.get("kind") != kind:
        why = f"holds a {m.get('kind')} run, not a {kind} run"
    else:
        why = _difference(m.get("config", {}), jsonable(dict(config)), defaults)
        why = None if why is None else f"holds a run of another config: {why}"
    if why is not None:
        if not replace:
            raise ReuseError(f"{p}: {why}; choose another output folder or ask to replace it")
        remove_owned(p)
        return train(False), "replaced"
    if m.get("status") in ("complete", "failed"):
        return run, "reused"
    return train(True), "resumed"


def ensure_sweep(
    out: str | os.PathLike,
    description: Mapping[str, Any],
    *,
    sweep: Callable[[], Any],
    read: Callable[[], Any],
    complete: Callable[[Any], bool],
    replace: bool = True,
) -> tuple[Any, str]:
    """A sweep folder `out` described by `description` (what sweep.json records of its base
    config and axes): (table, what happened).

    - a complete sweep (`complete(read())`) with the same description -> "reused";
    - a sweep cut short with the same description -> removed and swept again -> "recomputed";
    - a sweep of another description: swept again when `replace` ("replaced"), else an error;
    - no folder or an empty one -> "swept"; anything else there: a ReuseError, nothing deleted.
    """
    p = Path(out)
    if _exists(p) and not _is_dir(p):
        raise ReuseError(f"{p}: exists and is not a folder; choose another output folder")
    if not _is_dir(p) or not os.listdir(p):
        return sweep(), "swept"
    if not owned(p):
        raise ReuseError(f"{p}: holds files but no sweep (no sweep.json); choose another folder")
    have = _read_json(p / "sweep.json")
    want = jsonable(dict(description))
    # "schedule" (how members were stopped early) counts when either side has one: a halved
    # sweep is not the exhaustive one
    keys = set(want) | {"schedule"}
    same = isinstance(have, dict) and all(have.get(k) == want.get(k) for k in keys)
    if same:
        try:
            table = read()
        except (OSError, ValueError, RunDirError):
            table = None
        if table is not None and complete(table):
            return table, "reused"
        what = "recomputed"
    elif not replace:
        d = _difference(have.get("base_config", {}) if isinstance(have, dict) else {},
                        want.get("base_config", {}), None)  # fmt: skip
        raise ReuseError(f"{p}: holds a sweep of other settings ({d or 'its axes differ'})")
    else:
        what = "replaced"
    remove_owned(p)
    return sweep(), what
