"""Legacy pickles: both layouts, steps, loss sign, and a restricted unpickler that refuses
anything but numpy, plain containers and argparse.Namespace before it runs."""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import warnings

import numpy as np
import pytest
from fixtures.legacy_logs import legacy_record, write_legacy_log

from phenomjax import load_run
from phenomjax.analysis import load_pickle, run_info
from phenomjax.errors import DataError, UnsafePickleError


def tiny_record(sign=1.0, args_namespace=False, batch=4):
    """K = 3, L = 3, two evaluations, per-position layout, every value known."""
    loss0 = np.array([[0.7, 0.6], [0.7, 0.7], [0.5, 0.7]], np.float32)
    loss1 = np.array([[0.1, 0.3], [0.2, 0.4], [0.6, 0.6]], np.float32)
    logs = []
    counts = [np.zeros(3), np.array([5.0, 2.0, 1.0]), np.array([9.0, 5.0, 2.0])]
    for e, tm_loss in ((0, loss0), (1, None), (2, loss1)):
        tm = collections.defaultdict(list)
        if tm_loss is not None:
            tm["sequence_rank"] = np.repeat(np.arange(3)[:, None], 2, axis=1)
            tm["length"] = np.tile([1, 2], (3, 1))
            tm["logsoftmaxloss"] = sign * tm_loss
            tm["accuracy"] = (tm_loss < 0.5).astype(np.float32)
        logs.append({"num_apppearances": counts[e], "test_metrics": tm, "train_loss": 0.5,
                     "epoch": e, "lr": 1e-3})  # fmt: skip
    args = {"K": 3, "len_context": 3, "batch_size": batch, "num_iter_per_epoch": 100,
            "num_heads": 2, "num_layers": 3, "lr": 1e-3}  # fmt: skip
    return {"args": argparse.Namespace(**args) if args_namespace else args, "logs": logs}


def dump(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("namespace", [False, True])
def test_small_k_layout_exact_values(tmp_path, protocol, namespace):
    p = dump(tmp_path / "log.pkl", tiny_record(args_namespace=namespace), protocol)
    t = load_run(p)
    # presentations per epoch = 8 = 2 steps of batch 4, so step = epoch x 2
    assert t["step"].tolist() == [0, 0, 0, 4, 4, 4] and t["epoch"].tolist() == [0, 0, 0, 2, 2, 2]
    assert t["presentations"].tolist() == [0, 0, 0, 9, 5, 2]
    np.testing.assert_allclose(t["loss"], [0.65, 0.7, 0.6, 0.2, 0.3, 0.6], rtol=1e-6)
    np.testing.assert_allclose(t["accuracy"], [0, 0, 0, 1, 1, 0], rtol=1e-6)
    pos = load_run(p, per_position=True)
    assert pos["position"].tolist()[:4] == [1, 2, 1, 2]
    np.testing.assert_allclose(
        pos[pos.step == 4]["loss"], [0.1, 0.3, 0.2, 0.4, 0.6, 0.6], rtol=1e-6
    )
    assert t.attrs["run"]["label"] == "2 heads, 3 layers, learned, lr=0.001"
    assert t.attrs["run"]["K"] == 3 and t.attrs["run"]["L"] == 3


def test_log_probabilities_are_negated_and_mixed_signs_refused(tmp_path):
    p = dump(tmp_path / "neg.pkl", tiny_record(sign=-1.0))
    np.testing.assert_allclose(load_run(p)["loss"][:3], [0.65, 0.7, 0.6], rtol=1e-6)
    rec = tiny_record()
    rec["logs"][2]["test_metrics"]["logsoftmaxloss"][0, 0] = -0.5
    p = dump(tmp_path / "mixed.pkl", rec)
    with pytest.raises(DataError, match="mixed.pkl.*both signs"):
        load_run(p)


def test_steps_per_epoch_rules(tmp_path):
    # no batch size: args.num_iter_per_epoch is not used when presentations say otherwise...
    rec = tiny_record()
    del rec["args"]["batch_size"]
    assert load_run(dump(tmp_path / "a.pkl", rec))["step"].max() == 200  # 2 x num_iter_per_epoch
    # ...and with neither: step = epoch, with a warning
    del rec["args"]["num_iter_per_epoch"]
    with pytest.warns(UserWarning, match="steps per epoch"):
        assert load_run(dump(tmp_path / "b.pkl", rec))["step"].max() == 2
    # the config's override wins
    assert load_run(dump(tmp_path / "c.pkl", tiny_record()), steps_per_epoch=7)["step"].max() == 14


def test_large_k_per_sequence_layout(tmp_path):
    p = write_legacy_log(tmp_path / "big.pkl", K=10000, L=6, epochs=7, test_every=3, batch=50,
                         iters_per_epoch=4, heads=24, layers=36, group="x_rope_embedding",
                         args_as_namespace=True)  # fmt: skip
    rec = load_pickle(p)
    assert np.shape(rec["logs"][0]["test_metrics"]["logsoftmaxloss"]) == (10000,)
    t = load_run(p)
    assert len(t) == 3 * 10000 and sorted(set(t["step"])) == [0, 12, 24]
    assert t.attrs["run"]["label"] == "24 heads, 36 layers, RoPE, lr=0.001"
    last = rec["logs"][6]
    np.testing.assert_allclose(
        t[t.step == 24]["loss"], last["test_metrics"]["logsoftmaxloss"], rtol=1e-6
    )
    np.testing.assert_array_equal(t[t.step == 24]["presentations"], last["num_apppearances"])
    with pytest.raises(DataError, match="no per-position data"):
        load_run(p, per_position=True)


def test_nan_metrics_survive_loading_and_are_counted_when_binned(tmp_path):
    from phenomjax import bin_by_rank

    p = dump(tmp_path / "nan.pkl", legacy_record(K=40, L=4, epochs=3, test_every=1, nan_every=4))
    t = load_run(p, per_position=True)
    assert t["loss"].isna().sum() == 3 * 10
    with pytest.warns(UserWarning, match="30 in loss"):
        b = bin_by_rank(t)
    assert np.isfinite(b["loss"]).all()


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvilWrite:
    def __reduce__(self):
        return (open, ("/tmp/should_not_exist_phenomjax", "w"))


def test_malicious_pickle_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    rec = tiny_record()
    rec["logs"][0]["payload"] = Evil(marker)
    p = dump(tmp_path / "evil.pkl", rec)
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*(posix|os|nt)\.system"):
        load_run(p)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl"):
        run_info(p)
    assert not marker.exists()
    p2 = dump(tmp_path / "evil2.pkl", {"args": {}, "logs": [EvilWrite()]})
    with pytest.raises(UnsafePickleError, match=r"evil2\.pkl.*builtins\.open|io\.open"):
        load_pickle(p2)
    # a defaultdict whose factory is not plain is refused too
    p3 = dump(tmp_path / "evil3.pkl", collections.defaultdict(os.getcwd))
    with pytest.raises(UnsafePickleError, match="evil3.pkl"):
        load_pickle(p3)


def test_truncated_and_corrupt_pickles_name_the_file(tmp_path):
    good = dump(tmp_path / "good.pkl", tiny_record()).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.pkl.*truncated or corrupt"):
        load_run(tmp_path / "cut.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="junk.pkl"):
        load_run(tmp_path / "junk.pkl")
    dump(tmp_path / "empty.pkl", {"args": {}, "logs": [{"test_metrics": {}, "epoch": 0}]})
    with pytest.raises(DataError, match="empty.pkl: no log holds test_metrics"):
        load_run(tmp_path / "empty.pkl")
    with pytest.raises(DataError, match="missing.pkl: not found"):
        load_run(tmp_path / "missing.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_run(tmp_path / "good.pkl")  # no deprecation noise from numpy.core on numpy 2


# -- the admitted constructors: what numpy writes loads as numpy loads it, the rest is refused --

NUMPY_VALUES = [
    np.arange(6.0).reshape(2, 3),
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.arange(3, dtype=">i4"),
    np.arange(5, dtype=np.uint16)[::2],
    np.arange(4, dtype=np.complex64),
    np.array(True),
    np.zeros((0, 3)),
    np.array(7, ">f8"),
    np.float32(2.5),
    np.int8(-3),
    np.bool_(True),
    np.float16(1.5),
]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numpy_values_load_as_numpy_itself_loads_them(tmp_path, protocol):
    """Rebuilding dtypes from type codes changes nothing for what numpy writes: same type,
    dtype (numpy itself unpickles protocols 0-4 to native byte order), shape, values, flags."""
    for i, x in enumerate(NUMPY_VALUES):
        raw = pickle.dumps({"x": x}, protocol=protocol)
        path = tmp_path / f"v{i}.pkl"
        path.write_bytes(raw)
        got, want = load_pickle(path)["x"], pickle.loads(raw)["x"]
        assert type(got) is type(want) and got.dtype == want.dtype, (protocol, x, got)
        assert np.shape(got) == np.shape(want) and np.array_equal(got, want), (protocol, x)
        if isinstance(want, np.ndarray):
            for flag in ("writeable", "c_contiguous", "f_contiguous"):
                assert getattr(got.flags, flag) == getattr(want.flags, flag), (protocol, x, flag)


def _crafted(tmp_path, name, node):
    from crafted_pickles import craft

    path = tmp_path / name
    path.write_bytes(craft(node))
    return path


def test_reconstructor_admits_namespace_on_object_only(tmp_path):
    """copyreg._reconstructor (protocols 0-1) builds argparse.Namespace on object with no
    state, and nothing else: other classes, bases or states are refused by name."""
    from crafted_pickles import Build, Call, G

    rec = G("copy_reg", "_reconstructor")
    ns, obj = G("argparse", "Namespace"), G("__builtin__", "object")
    good = _crafted(tmp_path, "ns.pkl", Build(Call(rec, (ns, obj, None)), {"K": 3}))
    assert load_pickle(good) == argparse.Namespace(K=3)
    bad = {
        "cls": (G("builtins", "list"), obj, None),
        "cls_dict": (G("collections", "OrderedDict"), G("builtins", "dict"), None),
        "base": (ns, G("builtins", "dict"), None),
        "state": (ns, obj, {"K": 3}),
        "state_str": (ns, obj, "x"),
    }
    for name, args in bad.items():
        path = _crafted(tmp_path, f"{name}.pkl", Call(rec, args))
        with pytest.raises(UnsafePickleError, match=rf"{name}\.pkl: copyreg\._reconstructor"):
            load_pickle(path)


def test_codecs_encode_admits_latin1_text_only(tmp_path):
    """_codecs.encode is how protocols 0-2 write bytes (latin-1); other codecs or non-text
    arguments are refused, not run."""
    from crafted_pickles import Call, G

    enc = G("_codecs", "encode")
    assert load_pickle(_crafted(tmp_path, "ok.pkl", Call(enc, ("\xe9A", "latin1")))) == b"\xe9A"
    assert load_pickle(_crafted(tmp_path, "ok1.pkl", Call(enc, ("AB",)))) == b"AB"
    bad = {"utf8": ("\xe9", "utf-8"), "rot13": ("abc", "rot13"), "zlib": ("abc", "zlib_codec"),
           "bytes": (b"abc", "latin1"), "int": (3, "latin1")}  # fmt: skip
    for name, args in bad.items():
        path = _crafted(tmp_path, f"{name}.pkl", Call(enc, args))
        with pytest.raises(UnsafePickleError, match=rf"{name}\.pkl: _codecs\.encode"):
            load_pickle(path)


def test_dtype_state_is_checked_not_applied(tmp_path):
    """A plain dtype's BUILD state may only say its byte order; anything else is refused
    before numpy sees it, and a big-endian order is honoured."""
    from crafted_pickles import dtype, frombuffer, scalar

    big = dtype("f8", state=(3, ">", None, None, None, -1, -1, 0))
    a = load_pickle(_crafted(tmp_path, "be.pkl", frombuffer(np.arange(2.0).astype(">f8")
                                                            .tobytes(), big, (2,))))  # fmt: skip
    assert a.dtype == np.dtype(">f8") and a.tolist() == [0.0, 1.0]
    v = load_pickle(_crafted(tmp_path, "s.pkl", scalar(big, np.array(2.5, ">f8").tobytes())))
    assert v == 2.5 and type(v) is np.float64
    for i, state in enumerate([(3, "<", None, None, None, 8, 8, 0),  # elsize
                               (3, "|", None, None, None, -1, -1, 63),  # object flags
                               (3, "<", None, ("a",), None, -1, -1, 0),  # names
                               (4, "<", None, None, None, -1, -1, 0, None),  # metadata
                               (3, "<", None, None, None, -1.0, -1, 0)]):  # fmt: skip
        path = _crafted(tmp_path, f"st{i}.pkl", scalar(dtype("f8", state=state), b"\0" * 8))
        with pytest.raises(UnsafePickleError, match=rf"st{i}\.pkl: numpy dtype 'f8' with state"):
            load_pickle(path)
