"""Output targets of the writing commands (issue 21, item 1): phenomjax writes only into folders
that are missing, empty or its own (runs/reuse.claim); a user's folder is an error naming it,
exit 2, with every file there unchanged; --force writes beside the user's files and never over
them; an --out naming a file is one line; an input inside the output is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phenomjax.cli import main
from phenomjax.runs import RunDir
from phenomjax.runs.reuse import MARKER

FAST = ["--set", "train.steps=4", "--set", "train.num_evals=1", "--no-progress"]


def _phenom_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[data]\nK = 6\nL = 4\n[model]\nw = 1\nd = 2\n[optimizer]\nname = "adam"\nlr = 0.01\n'
        '[train]\nmode = "expected"\nsteps = 4\nbatch = 4\nnum_evals = 1\nmax_chunk = 4\n'
    )
    return cfg


def _user_folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A folder of the user's own, holding files with the names a run writes."""
    ud = tmp_path / "mine"
    ud.mkdir()
    files = {"evals.parquet": b"my evals", "train.parquet": b"my train", "notes.txt": b"n"}
    for name, data in files.items():
        (ud / name).write_bytes(data)
    return ud, files


def _unchanged(ud: Path, files: dict[str, bytes]) -> bool:
    return sorted(os.listdir(ud)) == sorted(files) and all(
        (ud / n).read_bytes() == d for n, d in files.items()
    )


def _one_line_exit_2(capsys, rc: int, name: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert name in err, err
    return err


@pytest.mark.parametrize(
    "command",
    [
        lambda cfg, out: ["train", "tiny", "--out", out, *FAST],
        lambda cfg, out: ["train", "tiny", "--out", out, "--resume", *FAST],
        lambda cfg, out: ["train-phenom", cfg, "--out", out, "--no-progress"],
        lambda cfg, out: ["sweep", cfg, "--out", out, "--lr", "0.01", "--no-progress"],
    ],
    ids=["train", "train-resume", "train-phenom", "sweep"],
)
def test_a_users_folder_is_refused_and_kept(tmp_path, capsys, command):
    ud, files = _user_folder(tmp_path)
    rc = main(command(str(_phenom_config(tmp_path)), str(ud)))
    _one_line_exit_2(capsys, rc, str(ud))
    assert _unchanged(ud, files)


def test_force_never_overwrites_a_users_file(tmp_path, capsys):
    ud, files = _user_folder(tmp_path)
    rc = main(["train", "tiny", "--out", str(ud), "--force", *FAST])
    _one_line_exit_2(capsys, rc, str(ud / "evals.parquet"))
    assert _unchanged(ud, files)


def test_force_writes_beside_other_files(tmp_path, capsys):
    ud = tmp_path / "mine"
    ud.mkdir()
    (ud / "notes.txt").write_text("mine")
    assert main(["train-phenom", str(_phenom_config(tmp_path)), "--out", str(ud),
                 "--no-progress", "--force"]) == 0  # fmt: skip
    assert (ud / "notes.txt").read_text() == "mine" and RunDir(ud).exists()
    assert (ud / MARKER).is_file()


def test_capacity_refuses_a_users_folder(tmp_path, capsys):
    ud, files = _user_folder(tmp_path)
    cfg = Path(__file__).parents[2] / "experiments" / "capacity_cpu.toml"
    rc = main(["capacity", str(cfg), "--quick", "--out", str(ud)])
    _one_line_exit_2(capsys, rc, str(ud))
    assert _unchanged(ud, files)


@pytest.mark.parametrize(
    "command",
    [
        lambda cfg, out: ["train", "tiny", "--out", out, *FAST],
        lambda cfg, out: ["train", "tiny", "--out", out, "--seeds", "0", *FAST],
        lambda cfg, out: ["train-phenom", cfg, "--out", out, "--no-progress"],
        lambda cfg, out: ["sweep", cfg, "--out", out, "--no-progress"],
        lambda cfg, out: ["demo", "--out", out, "--no-progress"],
    ],
    ids=["train", "train-seeds", "train-phenom", "sweep", "demo"],
)
def test_out_naming_a_file_is_one_line(tmp_path, capsys, command):
    f = tmp_path / "a-file"
    f.write_text("keep")
    rc = main(command(str(_phenom_config(tmp_path)), str(f)))
    _one_line_exit_2(capsys, rc, str(f))
    assert f.read_text() == "keep"


def test_out_naming_a_link_to_a_folder_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    rc = main(["train", "tiny", "--out", str(tmp_path / "link"), *FAST])
    _one_line_exit_2(capsys, rc, "symbolic link")
    assert os.listdir(elsewhere) == []


def test_a_config_inside_the_output_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    cfg = _phenom_config(tmp_path)
    inside = out / "p.toml"
    inside.write_bytes(cfg.read_bytes())
    rc = main(["train-phenom", str(inside), "--out", str(out), "--no-progress", "--force"])
    _one_line_exit_2(capsys, rc, "inside the output folder")
    assert os.listdir(out) == ["p.toml"]


def test_a_run_cut_short_before_its_manifest_is_trained_again(tmp_path, capsys):
    """The marker is written before the lock, so a folder left with only those two is still
    phenomjax's own: a rerun trains into it instead of calling it the user's."""
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text("{}")
    (out / ".lock").write_text("")
    assert main(["train", "tiny", "--out", str(out), *FAST]) == 0
    assert RunDir(out).manifest()["status"] == "complete"


@pytest.mark.parametrize("command", ["fit", "analyze", "capacity"])
def test_other_outputs_naming_a_file_are_one_line(tmp_path, capsys, monkeypatch, command):
    from fixtures.run_dirs import make_run_dir

    monkeypatch.chdir(tmp_path)
    run = make_run_dir(tmp_path / "r")
    f = tmp_path / "a-file"
    f.write_text("keep")
    cfg = Path(__file__).parents[2] / "experiments" / "capacity_cpu.toml"
    argv = {
        "fit": ["fit", str(run.path), "--out", str(f), "--no-progress"],
        "analyze": ["analyze", "--run", str(run.path), "--no-show-plots", "--figures-dir", str(f)],
        "capacity": ["capacity", str(cfg), "--quick", "--out", str(f)],
    }[command]
    _one_line_exit_2(capsys, main(argv), str(f))
    assert f.read_text() == "keep"
