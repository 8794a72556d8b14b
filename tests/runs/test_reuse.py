"""The one reuse rule and the ownership rule (phenomjax.runs.reuse)."""

import json
import os

import pytest

from phenomjax.errors import RunDirError
from phenomjax.runs import RunDir
from phenomjax.runs.reuse import (
    MARKER,
    ReuseError,
    check_outside,
    claim,
    ensure_run,
    ensure_sweep,
    owned,
    remove_owned,
)


def _make_run(path, config, status="complete", kind="phenom"):
    run = RunDir.create(path, kind=kind, config=config, seed=0, K=4, L=3, alpha=1.0, batch=2)
    run.save_checkpoint({"00000": __import__("numpy").zeros(2)}, {"step": 1})
    run.set_status(status)
    return run


def _trainer(path, config, calls):
    def train(resume):
        calls.append(resume)
        if not resume:
            _make_run(path, config)
        else:
            RunDir(path).set_status("complete")
        return RunDir(path)

    return train


def test_ensure_run_trains_reuses_and_resumes(tmp_path):
    out, cfg, calls = tmp_path / "r", {"a": 1}, []
    assert ensure_run(out, cfg, kind="phenom", train=_trainer(out, cfg, calls))[1] == "trained"
    assert ensure_run(out, cfg, kind="phenom", train=_trainer(out, cfg, calls))[1] == "reused"
    RunDir(out).set_status("running")
    assert ensure_run(out, cfg, kind="phenom", train=_trainer(out, cfg, calls))[1] == "resumed"
    assert calls == [False, True]


def test_ensure_run_names_the_difference_and_replaces_only_when_asked(tmp_path):
    out, calls = tmp_path / "r", []
    _make_run(out, {"a": 1, "b": {"c": 2}})
    with pytest.raises(ReuseError, match=r"b\.c \(run has 2, config has 3\)"):
        ensure_run(out, {"a": 1, "b": {"c": 3}}, kind="phenom", train=_trainer(out, {}, calls))
    assert calls == [] and RunDir(out).exists()
    new = {"a": 1, "b": {"c": 3}}
    run, what = ensure_run(out, new, kind="phenom", train=_trainer(out, new, calls), replace=True)
    assert what == "replaced" and run.manifest()["config"] == new


def test_ensure_run_refuses_another_kind_and_foreign_folders(tmp_path):
    out = tmp_path / "r"
    _make_run(out, {"a": 1}, kind="transformer")
    with pytest.raises(ReuseError, match="holds a transformer run"):
        ensure_run(out, {"a": 1}, kind="phenom", train=lambda r: None)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(ReuseError, match="holds files but no run"):
        ensure_run(mine, {"a": 1}, kind="phenom", train=lambda r: None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReuseError, match="not a folder"):
        ensure_run(tmp_path / "file", {}, kind="phenom", train=lambda r: None)


def test_replace_never_deletes_a_file_phenomjax_did_not_write(tmp_path):
    out = tmp_path / "r"
    _make_run(out, {"a": 1})
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(ReuseError, match="thesis.tex: not written by phenomjax"):
        ensure_run(out, {"a": 2}, kind="phenom", train=lambda r: None, replace=True)
    assert (out / "thesis.tex").read_text() == "mine"
    assert (out / "manifest.json").exists() and (out / "checkpoint" / "meta.json").exists()


def test_remove_owned_leaves_links_and_their_targets(tmp_path):
    out = tmp_path / "r"
    _make_run(out, {"a": 1})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "state-000000000001.npz").write_text("precious")
    os.symlink(elsewhere, out / "linked")
    with pytest.raises(ReuseError, match="linked: not written by phenomjax"):
        remove_owned(out)
    os.unlink(out / "linked")
    remove_owned(out)
    assert not out.exists() and (elsewhere / "state-000000000001.npz").read_text() == "precious"


def test_claim_marks_new_and_empty_folders_only(tmp_path):
    p = claim(tmp_path / "fit", "a fit")
    assert owned(p) and json.loads((p / MARKER).read_text())["what"] == "a fit"
    assert claim(p, "a fit") == p  # its own folder again
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("x")
    with pytest.raises(ReuseError, match="notes.txt"):
        claim(user, "a fit")
    assert not (user / MARKER).exists()
    link = tmp_path / "link"
    os.symlink(p, link)
    assert not owned(link)


def test_check_outside(tmp_path):
    check_outside([tmp_path / "run"], tmp_path / "fit")
    with pytest.raises(ReuseError, match="inside the output folder"):
        check_outside([tmp_path / "exp" / "best"], tmp_path / "exp")


def test_ensure_sweep_reuses_recomputes_and_replaces(tmp_path):
    out = tmp_path / "s"
    calls = []

    def sweep(desc):
        def run():
            calls.append(desc)
            out.mkdir(exist_ok=True)
            (out / "sweep.json").write_text(json.dumps(desc))
            (out / "sweep.parquet").write_text("rows")
            return "table"

        return run

    def read():
        return (out / "sweep.parquet").read_text()

    desc = {"base_config": {"a": 1}, "axes": {"lr": [1]}}
    kw = dict(read=read, complete=lambda t: t == "rows")
    assert ensure_sweep(out, desc, sweep=sweep(desc), **kw) == ("table", "swept")
    assert ensure_sweep(out, desc, sweep=sweep(desc), **kw) == ("rows", "reused")
    (out / "sweep.parquet").write_text("cut")
    assert ensure_sweep(out, desc, sweep=sweep(desc), **kw)[1] == "recomputed"
    other = {"base_config": {"a": 2}, "axes": {"lr": [1]}}
    with pytest.raises(ReuseError, match="a \\(run has 1, config has 2\\)"):
        ensure_sweep(out, other, sweep=sweep(other), replace=False, **kw)
    assert ensure_sweep(out, other, sweep=sweep(other), **kw)[1] == "replaced"
    assert len(calls) == 3


def test_safe_name_stays_in_its_folder():
    from hypothesis import given
    from hypothesis import strategies as st

    from phenomjax.runs import safe_name

    assert safe_name("../../x") == "x" and safe_name("a/b c") == "a_b_c"
    with pytest.raises(RunDirError, match="expected a name"):
        safe_name("../", what="--names")

    @given(st.text(min_size=1))
    def prop(text):
        try:
            name = safe_name(text)
        except RunDirError:
            return
        assert "/" not in name and name not in (".", "..") and name.isprintable()

    prop()


def test_a_halved_sweep_is_not_reused_as_the_exhaustive_one(tmp_path):
    from phenomjax.runs.reuse import claim, ensure_sweep

    calls = []

    def sweep():
        calls.append(1)
        claim(tmp_path / "s", "a sweep")
        (tmp_path / "s" / "sweep.json").write_text(json.dumps(current))
        return "table"

    current = {"axes": [1], "schedule": {"rungs": [0.1]}}
    ensure_sweep(tmp_path / "s", current, sweep=sweep, read=lambda: "table",
                 complete=lambda t: True)  # fmt: skip
    current = {"axes": [1]}
    _, how = ensure_sweep(tmp_path / "s", current, sweep=sweep, read=lambda: "table",
                          complete=lambda t: True)  # fmt: skip
    assert how != "reused" and len(calls) == 2
