"""The processed-table cache: keyed by content, rebuilt on any change, cut-short entries caught;
and run directories: Bayes floor columns against phenomjax.per_sequence_floor."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures.legacy_logs import write_legacy_log
from fixtures.run_dirs import make_run_dir

from phenomjax import load_run, per_sequence_floor
from phenomjax.analysis import load_pickle, process_run
from phenomjax.data import make_bits, zipf_weights
from phenomjax.errors import DataError


def test_cache_hit_and_a_changed_byte_is_never_served_stale(tmp_path):
    p = write_legacy_log(tmp_path / "log.pkl", K=50, L=5, epochs=4, test_every=2)
    cache = tmp_path / "cache"
    first = process_run(p, cache_dir=cache, ranks=range(10))
    assert not first.cached
    again = process_run(p, cache_dir=cache, ranks=range(10))
    assert again.cached and again.binned.equals(first.binned)
    assert again.meta["label"] == first.meta["label"]
    # change one byte of a float inside the pickle, keep size and modification time
    raw = bytearray(p.read_bytes())
    st = p.stat()
    arr = np.float32(0.123456).tobytes()
    stored = load_pickle(p)["logs"][2]["test_metrics"]["logsoftmaxloss"][-1, -1]
    i = bytes(raw).rfind(np.asarray(stored, np.float32).tobytes())
    assert i > 0
    raw[i : i + 4] = arr
    p.write_bytes(bytes(raw))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    changed = process_run(p, cache_dir=cache, ranks=range(10))
    assert not changed.cached
    assert not changed.binned["loss"].equals(first.binned["loss"])
    # other settings -> other entry; --force-reprocess rebuilds
    assert not process_run(p, cache_dir=cache, ranks=range(5)).cached
    assert not process_run(p, cache_dir=cache, ranks=range(10), force=True).cached


def test_cut_short_cache_entry_is_rebuilt(tmp_path):
    p = write_legacy_log(tmp_path / "log.pkl", K=50, L=5, epochs=4, test_every=2)
    cache = tmp_path / "cache"
    first = process_run(p, cache_dir=cache)
    part = next(cache.glob("*.binned.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        again = process_run(p, cache_dir=cache)
    assert not again.cached and again.binned.equals(first.binned)
    assert process_run(p, cache_dir=cache).cached  # and the rebuilt entry serves again
    (next(cache.glob("*.json"))).write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding"):
        assert not process_run(p, cache_dir=cache).cached


def test_run_dir_tables_carry_the_bayes_floor(tmp_path):
    run = make_run_dir(tmp_path / "run", K=16, L=8, seed=3)
    t = load_run(run.path)
    floor, ceiling = per_sequence_floor(make_bits(3, 16, 8), zipf_weights(16, 1.0))
    np.testing.assert_allclose(t["floor"], floor[t["rank"]], rtol=1e-5)
    np.testing.assert_allclose(t["ceiling"], ceiling[t["rank"]], rtol=1e-5)
    # excess loss against the independently computed floor, not the table's own column
    want = t["loss"].to_numpy() - floor[t["rank"]]
    np.testing.assert_allclose(t["excess_loss"], want, rtol=1e-5, atol=1e-6)
    assert (t[t.step == 64]["excess_loss"] > -1e-5).all()
    meta = t.attrs["run"]
    assert meta["kind"] == "transformer" and meta["n_params"] == 1234
    assert meta["label"] == "2 heads, 1 layers, RoPE, lr=0.01"
    pos = load_run(run.path, per_position=True)
    assert set(pos["position"]) == set(range(1, 8)) and "floor" in pos
    # the cache of a run dir notices a changed evals.parquet
    cache = tmp_path / "cache"
    a = process_run(run.path, cache_dir=cache)
    ev = run.read_evals()
    ev.loc[ev.index[-1], "loss"] += 0.25
    run.write_evals(ev)
    b = process_run(run.path, cache_dir=cache)
    assert not b.cached and not b.binned["loss"].equals(a.binned["loss"])
    assert b.positions is not None and "floor" in b.binned


def test_missing_and_empty_runs_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere: not found"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    with pytest.raises(Exception, match="folder: a folder without manifest.json"):
        load_run(tmp_path / "folder")
    run = make_run_dir(tmp_path / "noevals", steps=(0,), per_position=False)
    with pytest.raises(DataError, match="no positions.parquet|no per-position"):
        load_run(run.path, per_position=True)


def test_digest_memo_never_hides_a_changed_byte(tmp_path, monkeypatch):
    import time

    from phenomjax.analysis import cache as cache_mod

    p = write_legacy_log(tmp_path / "log.pkl", K=30, L=4, epochs=3, test_every=1)
    real_now = time.time_ns
    monkeypatch.setattr(cache_mod.time, "time_ns", lambda: real_now() + 10_000_000_000)
    memo = tmp_path / "cache"
    memo.mkdir()
    d0 = cache_mod.file_sha256(p, memo)
    assert (memo / "digests.json").is_file()  # settled file: remembered
    assert cache_mod.file_sha256(p, memo) == d0
    st = p.stat()
    raw = bytearray(p.read_bytes())
    raw[-20] ^= 1
    p.write_bytes(bytes(raw))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime; ctime moves
    import hashlib

    assert cache_mod.file_sha256(p, memo) == hashlib.sha256(bytes(raw)).hexdigest() != d0
