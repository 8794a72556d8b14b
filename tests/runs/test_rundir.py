"""Run directory: atomic writes, manifest status, checkpoints that detect truncation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phenomjax.errors import RunDirError
from phenomjax.runs import RunDir, RunLog, arrays_to_pytree, atomic_write_bytes, pytree_to_arrays


def make_run(path):
    return RunDir.create(path, kind="phenom", config={"a": 1}, seed=3, K=4, L=5, alpha=1.0, batch=2)


def test_manifest_and_tables(tmp_run):
    run = make_run(tmp_run)
    m = run.manifest()
    assert m["status"] == "running" and m["kind"] == "phenom" and m["K"] == 4
    assert {"package_version", "jax_version", "device"} <= set(m)
    log = RunLog(run)
    log.add_eval(
        0,
        np.zeros(4),
        np.full(4, 0.7),
        np.full(4, 0.5),
        position_loss=np.full((4, 4), 0.7),
        position_accuracy=np.full((4, 4), 0.5),
    )
    log.add_train(np.arange(1, 4), np.ones(3), 1e-3)
    log.flush()
    log.add_eval(3, np.arange(4), np.full(4, 0.5), np.full(4, 0.75))
    log.flush()
    ev = run.read_evals()
    assert list(ev.columns) == ["step", "rank", "presentations", "loss", "accuracy"]
    assert ev.step.tolist() == [0] * 4 + [3] * 4
    pos = run.read_positions()
    assert pos.position.min() == 1 and pos.position.max() == 4 and len(pos) == 16
    run.set_status("complete")
    assert run.manifest()["status"] == "complete"
    with pytest.raises(RunDirError, match="already exists"):
        make_run(tmp_run)
    # resume drops rows after the checkpoint step
    assert RunLog(run, resume_step=0).evaluated_steps() == [0]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "x.bin"
    atomic_write_bytes(p, b"old")

    from phenomjax.runs.storage import atomic_write

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(p, broken)
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.bin"]


def test_checkpoint_roundtrip_and_truncation(tmp_run):
    run = make_run(tmp_run)
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "k": jax.random.key(1), "n": jnp.int32(7)}
    run.save_checkpoint(pytree_to_arrays(tree), {"step": 5})
    arrays, meta = run.load_checkpoint()
    back = arrays_to_pytree(jax.eval_shape(lambda: tree), arrays)
    assert meta["step"] == 5
    np.testing.assert_array_equal(back["w"], tree["w"])
    np.testing.assert_array_equal(jax.random.key_data(back["k"]), jax.random.key_data(tree["k"]))
    # a newer checkpoint replaces the older state file only after meta.json names it
    run.save_checkpoint(pytree_to_arrays(tree), {"step": 9})
    assert [p.name for p in run.checkpoint_dir.glob("state*.npz")] == ["state-000000000009.npz"]
    assert run.load_checkpoint()[1]["step"] == 9
    state = run.checkpoint_dir / "state-000000000009.npz"
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.raises(RunDirError, match="state-000000000009.npz"):
        run.load_checkpoint()


def test_corrupt_files_are_named(tmp_run):
    run = make_run(tmp_run)
    run.evals_path.write_bytes(b"PAR1 not really")
    with pytest.raises(RunDirError, match="evals.parquet"):
        run.read_evals()
    run.manifest_path.write_text("{")
    with pytest.raises(RunDirError, match="manifest.json"):
        run.manifest()


def test_a_run_that_predates_a_config_field_resumes_at_its_default():
    """A manifest written before a field existed lacks it: the field at its default is no
    difference (the run ran with the default); any other value is, and is named."""
    from phenomjax.runs.rundir import config_difference

    old = {"model": {"w": 8}, "train": {"steps": 10}}
    defaults = {"model": {"w": 6, "forget": 0.0}, "train": {"steps": 2000}}
    assert config_difference(old, {"model": {"w": 8, "forget": 0.0}, "train": {"steps": 10}},
                             defaults=defaults) is None  # fmt: skip
    d = config_difference(old, {"model": {"w": 8, "forget": 0.1}, "train": {"steps": 10}},
                          defaults=defaults)  # fmt: skip
    assert d == "model.forget (run has None, config has 0.1)"
    assert config_difference(old, {"model": {"w": 8, "forget": 0.0}, "train": {"steps": 10}})


def test_a_checkpoint_of_other_shapes_names_the_leaf():
    """A checkpoint whose array has another shape (a run written by another version, e.g. the
    phenom model's square A before it was packed) is one error naming the leaf's path."""
    arrays = pytree_to_arrays({"params": {"A": np.zeros((7, 7, 2, 2), np.float32)}})
    like = {"params": {"A": jax.ShapeDtypeStruct((28, 2, 2), jnp.float32)}}
    with pytest.raises(RunDirError, match=r"\['params'\]\['A'\] has shape \(7, 7, 2, 2\), "
                       r"expected \(28, 2, 2\); was it written by another version"):  # fmt: skip
        arrays_to_pytree(like, arrays)
