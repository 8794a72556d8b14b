"""One seed rule (issue 21, item 4): a seed is an integer in [0, 2^32) (data.check_seed), else
one line naming where it came from, exit 2, before anything is written: train's --seeds and
--set data.seed, train-phenom, sweep --seeds, and the seed a run's manifest gives analyze and fit
(make_bits). A seed of 2^32 would otherwise be a copy of seed 0 under another name."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phenomjax.cli import main
from phenomjax.data import SEED_RANGE, check_seed, make_bits
from phenomjax.errors import DataError

FAST = ["--set", "train.steps=4", "--set", "train.num_evals=1", "--no-progress"]


@given(st.integers(0, SEED_RANGE - 1))
def test_every_seed_in_range_is_kept(seed):
    assert check_seed(seed) == seed and check_seed(np.uint32(seed)) == seed


@given(
    st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=SEED_RANGE),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
    )
)
def test_anything_else_is_refused_naming_the_field(value):
    with pytest.raises(DataError, match=r"^where\.seed: expected an integer in \[0, 2\^32\)"):
        check_seed(value, where="where.seed")


def test_seed_2_32_is_not_seed_0():
    with pytest.raises(DataError):
        make_bits(2**32, 4, 4)
    assert make_bits(2**32 - 1, 4, 4).shape == (4, 4)


def _one_line(capsys, rc, field):
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and field in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "argv, field",
    [
        (["train", "tiny", "--seeds", "-1"], "--seeds"),
        (["train", "tiny", "--seeds", "0,4294967296"], "--seeds"),
        (["train", "tiny", "--set", "data.seed=4294967296"], "data.seed"),
        (["train", "tiny", "--set", "data.seed=-3"], "data.seed"),
    ],
)
def test_train_refuses_out_of_range_seeds_before_writing(tmp_path, capsys, argv, field):
    out = tmp_path / "out"
    _one_line(capsys, main([*argv, "--out", str(out), *FAST]), field)
    assert not os.path.lexists(out)


def _phenom_config(tmp_path, seed=0):
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f"[data]\nK = 6\nL = 4\nseed = {seed}\n[model]\nw = 1\nd = 2\n[optimizer]\nname = "
        '"adam"\nlr = 0.01\n[train]\nmode = "expected"\nsteps = 4\nbatch = 4\nnum_evals = 1\n'
        "max_chunk = 4\n"
    )
    return cfg


def test_train_phenom_and_sweep_refuse_out_of_range_seeds(tmp_path, capsys):
    out = tmp_path / "out"
    bad = _phenom_config(tmp_path, seed=2**32)
    _one_line(capsys, main(["train-phenom", str(bad), "--out", str(out), "--no-progress"]),
              "data.seed")  # fmt: skip
    good = _phenom_config(tmp_path)
    argv = ["sweep", str(good), "--seeds", "0,-1", "--out", str(out), "--no-progress"]
    _one_line(capsys, main(argv), "sweep seed")
    assert not os.path.lexists(out)


@pytest.mark.parametrize("seed", [-1, 2**32])
@pytest.mark.parametrize("command", ["analyze", "fit"])
def test_analyze_and_fit_refuse_a_manifest_seed_out_of_range(
    tmp_path, capsys, monkeypatch, seed, command
):
    import json

    from fixtures.run_dirs import make_run_dir

    run = make_run_dir(tmp_path / "r")
    m = json.loads(run.manifest_path.read_text())
    m["seed"] = m["config"]["data"]["seed"] = seed
    run.manifest_path.write_text(json.dumps(m))
    monkeypatch.chdir(tmp_path)  # analyze's cache lands here
    argv = {
        "analyze": ["analyze", "--run", str(run.path), "--no-show-plots", "--no-save-plots"],
        "fit": ["fit", str(run.path), "--out", str(tmp_path / "fit"), "--no-progress"],
    }[command]
    _one_line(capsys, main(argv), "seed")
