"""The checkpoint folder and the run lock never write, delete or hang through a link, FIFO or
device (issue 21, items 2 and 3); a tampered meta.json or state file is one RunDirError naming
the file and the field, its header checked before any value is read."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from phenomjax.errors import RunDirError
from phenomjax.runs import RunDir, lifecycle


def _run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    return run


# -- the lock ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["file", "devnull"])
def test_a_linked_lock_is_refused_and_its_target_untouched(tmp_path, target):
    run = _run(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    dest = victim if target == "file" else Path("/dev/null")
    os.symlink(dest, run.path / ".lock")
    with pytest.raises(RunDirError, match=r"\.lock: is a symbolic link") as e:
        with lifecycle.run_lock(run.path):
            pass
    assert "\n" not in str(e.value) and victim.read_text() == "precious"


def test_a_fifo_lock_is_refused_without_blocking(tmp_path):
    run = _run(tmp_path)
    os.mkfifo(run.path / ".lock")
    with pytest.raises(RunDirError, match=r"\.lock: is not a regular file"):
        with lifecycle.run_lock(run.path):
            pass


# -- cleanup of old state files ------------------------------------------------------------------


def test_a_linked_checkpoint_folder_is_refused_and_nothing_there_deleted(tmp_path):
    run = _run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "state-1.npz").write_bytes(b"someone else's")
    os.symlink(elsewhere, run.checkpoint_dir)
    with pytest.raises(RunDirError, match=r"checkpoint: is a symbolic link"):
        run.save_checkpoint({"w": np.zeros(2)}, {"step": 3})
    with pytest.raises(RunDirError, match=r"checkpoint: is a symbolic link"):
        run.load_checkpoint()
    assert os.listdir(elsewhere) == ["state-1.npz"]


def test_cleanup_never_follows_a_linked_state_file(tmp_path):
    run = _run(tmp_path)
    run.save_checkpoint({"w": np.zeros(2)}, {"step": 1})
    victim = tmp_path / "victim.npz"
    victim.write_bytes(b"keep")
    os.symlink(victim, run.checkpoint_dir / "state-000000000000.npz")
    run.save_checkpoint({"w": np.ones(2)}, {"step": 2})
    names = sorted(os.listdir(run.checkpoint_dir))
    assert names == ["meta.json", "state-000000000000.npz", "state-000000000002.npz"]
    assert victim.read_bytes() == b"keep"
    np.testing.assert_array_equal(run.load_checkpoint()[0]["w"], np.ones(2))


# -- meta.json -----------------------------------------------------------------------------------


def _with_meta(tmp_path: Path, raw: bytes) -> RunDir:
    run = _run(tmp_path)
    run.save_checkpoint({"w": np.zeros(2)}, {"step": 4})
    (run.checkpoint_dir / "meta.json").write_bytes(raw)
    return run


def _good_meta(run: RunDir, **change) -> bytes:
    meta = json.loads((run.checkpoint_dir / "meta.json").read_text())
    meta.update(change)
    for k in [k for k, v in change.items() if v is ...]:
        del meta[k]
    return json.dumps(meta).encode()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"step": -7}, "step"),
        ({"step": 30.5}, "step"),
        ({"step": "4"}, "step"),
        ({"step": True}, "step"),
        ({"step": ...}, "step"),
        ({"step": 11}, "step"),  # more than the run's steps
        ({"step": 10**5000}, "step"),
        ({"state": "../../victim.npz"}, "state"),
        ({"state": ["x"]}, "state"),
        ({"sha256": 5}, "sha256"),
    ],
)
def test_bad_meta_fields_are_one_line_naming_the_field(tmp_path, change, field):
    run = _run(tmp_path)
    run.save_checkpoint({"w": np.zeros(2)}, {"step": 4})
    import sys

    sys.set_int_max_str_digits(0)  # json.dumps of a 5000-digit integer
    (run.checkpoint_dir / "meta.json").write_bytes(_good_meta(run, **change))
    with pytest.raises(RunDirError) as e:
        run.load_checkpoint(steps=10)
    msg = str(e.value)
    assert msg.startswith(str(run.checkpoint_dir / "meta.json")) and f": {field}:" in msg
    assert "\n" not in msg and len(msg) < 300


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"[1, 2]", "expected a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"[" * 100000, "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_meta_is_one_line(tmp_path, raw, why):
    run = _with_meta(tmp_path, raw)
    with pytest.raises(RunDirError, match=why) as e:
        run.load_checkpoint()
    assert "\n" not in str(e.value) and "meta.json" in str(e.value)


def test_a_fifo_meta_is_refused_without_blocking(tmp_path):
    run = _run(tmp_path)
    run.checkpoint_dir.mkdir()
    os.mkfifo(run.checkpoint_dir / "meta.json")
    with pytest.raises(RunDirError, match="not a regular file"):
        run.load_checkpoint()


# -- state files ---------------------------------------------------------------------------------


def _npy(header: dict, payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


STATES = {
    "empty": b"",
    "garbage": b"PK\x03\x04 not a zip at all",
    "object": _zip({"w.npy": _npy({"descr": "|O", "fortran_order": False, "shape": (2,)})}),
    "string": _zip(
        {"w.npy": _npy({"descr": "<U5", "fortran_order": False, "shape": (2,)}, b"\0" * 40)}
    ),  # fmt: skip
    "huge": _zip(
        {
            "w.npy": _npy(
                {"descr": "<f4", "fortran_order": False, "shape": (2**40, 2**20)}, b"\0" * 16
            )
        }
    ),  # fmt: skip
    "short": _zip(
        {"w.npy": _npy({"descr": "<f8", "fortran_order": False, "shape": (100,)}, b"\0" * 16)}
    ),  # fmt: skip
    "not npy": _zip({"w.txt": b"hello"}),
}


@pytest.mark.parametrize("name", sorted(STATES))
def test_bad_state_files_are_one_line_before_reading_values(tmp_path, name, monkeypatch):
    run = _run(tmp_path)
    run.save_checkpoint({"w": np.zeros(2)}, {"step": 4})
    data = STATES[name]
    state = run.checkpoint_dir / "state-000000000004.npz"
    state.write_bytes(data)
    (run.checkpoint_dir / "meta.json").write_bytes(
        _good_meta(run, sha256=hashlib.sha256(data).hexdigest())
    )
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load reads values"))
    with pytest.raises(RunDirError) as e:
        run.load_checkpoint()
    assert str(e.value).startswith(str(state)) and "\n" not in str(e.value)


def test_a_good_state_reads_back_every_dtype(tmp_path):
    run = _run(tmp_path)
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.uint32([1, 2**31]),
              "c": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "d": np.int64(7),
              "e": np.array([True, False])}  # fmt: skip
    run.save_checkpoint(arrays, {"step": 4})
    back, meta = run.load_checkpoint(steps=4)
    assert meta["step"] == 4 and sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == np.shape(v)
        np.testing.assert_array_equal(back[k], v)


def test_a_hard_linked_lock_is_refused_and_its_other_name_untouched(tmp_path):
    run = _run(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.link(victim, run.path / ".lock")
    with pytest.raises(RunDirError, match=r"\.lock: not a regular file of its own"):
        with lifecycle.run_lock(run.path):
            pass
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("step", [-7, 30.5, "2", 5])
def test_resume_from_a_tampered_step_is_one_line_exit_2(tmp_path, capsys, step):
    """A step outside [0, train.steps] used to resume and mark the run complete with other
    numbers; now `--resume` refuses it, naming the file and the field."""
    from phenomjax.cli import main

    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[data]\nK = 6\nL = 4\n[model]\nw = 1\nd = 2\n[optimizer]\nname = "adam"\nlr = 0.01\n'
        '[train]\nmode = "expected"\nsteps = 4\nbatch = 4\nnum_evals = 1\nmax_chunk = 4\n'
    )
    out = tmp_path / "run"
    assert main(["train-phenom", str(cfg), "--out", str(out), "--no-progress"]) == 0
    run = RunDir(out)
    run.set_status("running")
    (run.checkpoint_dir / "meta.json").write_bytes(_good_meta(run, step=step))
    capsys.readouterr()
    assert main(["train-phenom", str(cfg), "--out", str(out), "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "meta.json: step: expected an integer in [0, 4]" in err, err
    assert run.manifest()["status"] == "running"
