"""Hostile and broken input (issue 6, item 4): hypothesis-generated legacy records and configs.

Every generated input either loads, and then its tables satisfy the contract of DESIGN 4, or it
fails with a PhenomjaxError whose message is one line starting with the file's name and naming
the field. Legacy records go through the real path end to end (plain pickle.dump to a file, then
load_run / load_pickle + legacy_tables); configs through load_config from TOML text, both
serialised from generated dicts and as raw mutated text. `TRIED` counts every input tried; the
last test prints the total (run with -s to see it).
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import functools
import json
import math
import os
import pickle
import re
import resource
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crafted_pickles import (
    CAP,
    CORE,
    Build,
    Call,
    G,
    Get,
    NewObj,
    Put,
    craft,
    dtype,
    frombuffer,
    load_in_child,
    reconstruct,
    scalar,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import phenomjax
from phenomjax.analysis.legacy import legacy_tables, load_pickle
from phenomjax.analysis.settings import default_config_path, load_analysis_config
from phenomjax.config import dotted, load_config, to_dict
from phenomjax.distributed import DistributedConfig
from phenomjax.errors import ConfigError, PhenomjaxError
from phenomjax.phenom.train import PhenomConfig
from phenomjax.transformer.train import TrainConfig

TRIED = collections.Counter()  # inputs tried, by kind
OUTCOMES = collections.Counter()  # loaded / refused, by error class, for the report
# PHENOMJAX_HOSTILE_SCALE=N: N times the examples, freshly random (a longer local campaign);
# the default run draws the same inputs every time (CI).
SCALE = int(os.environ.get("PHENOMJAX_HOSTILE_SCALE", "1"))
SETTINGS = settings(
    deadline=None,
    max_examples=1000 * SCALE,
    derandomize=SCALE == 1,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- legacy records ------------------------------------------------------------------------------


def valid_record(K: int, L: int, n_logs: int, layout: str, namespace: bool, rng) -> dict:
    """A well-formed record: evaluation at every even epoch, counts growing by 4 per epoch."""
    counts = np.zeros(K)
    logs = []
    for e in range(n_logs):
        tm: dict = collections.defaultdict(list)
        if e % 2 == 0:
            loss = rng.uniform(0.0, 1.0, (K, L - 1)).astype(np.float32)
            acc = (rng.random((K, L - 1)) < 0.5).astype(np.float32)
            if layout == "pos":
                tm["sequence_rank"] = np.repeat(np.arange(K)[:, None], L - 1, axis=1)
                tm["length"] = np.tile(np.arange(1, L), (K, 1))
                tm["logsoftmaxloss"], tm["accuracy"] = loss, acc
            else:
                tm["sequence_rank"] = np.arange(K)
                tm["length"] = 50
                tm["logsoftmaxloss"], tm["accuracy"] = loss.mean(1), acc.mean(1)
        logs.append({"num_apppearances": counts.copy(), "test_metrics": tm,
                     "train_loss": 0.5, "epoch": e, "lr": 1e-3})  # fmt: skip
        counts = counts + rng.multinomial(4, np.full(K, 1.0 / K))
    args = {"K": K, "len_context": L, "batch_size": 2, "num_iter_per_epoch": 2,
            "num_heads": 2, "num_layers": 1, "lr": 1e-3, "seed": 0}  # fmt: skip
    return {"args": argparse.Namespace(**args) if namespace else args, "logs": logs}


HOSTILE_VALUES = st.sampled_from(
    [
        None, "abc", "", b"\x00", 0, -1, 1.5, -3.0, 2**70, -(2**70), True, math.nan, math.inf,
        -math.inf, 1e308, [], {}, (), set(), [1, 2], [[1, 2], [3]], {"a": 1},
        np.array(3), np.array(math.nan), np.array("abc"), np.array([], np.float32),
        np.zeros((0, 3)), np.array([1, "x"], object), np.array([None, None], object),
        np.array([np.zeros(2), np.zeros(3)], object), np.array([1 + 2j, 3j]),
        np.array(["1", "2"]), np.full(3, np.inf), np.full((2, 2, 2), 0.5), np.int64(-5),
        np.float32(math.nan), np.float64(2.5), np.arange(3, dtype=np.uint8),
        collections.OrderedDict(a=1), argparse.Namespace(x=1), range(3), slice(1, 2), 1 + 1j,
    ]
)  # fmt: skip
DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.int64, np.uint64, np.float16, np.float64,
          np.complex64, np.str_, object]  # fmt: skip


def _logs_with_metrics(rec):
    logs = rec.get("logs") if isinstance(rec, dict) else None
    if not isinstance(logs, list):
        return []
    return [
        (i, lg)
        for i, lg in enumerate(logs)
        if isinstance(lg, dict) and isinstance(lg.get("test_metrics"), dict) and lg["test_metrics"]
    ]


def _pick_array(draw, rec):
    """(log index, container, key) of an array in the record, or None."""
    found = []
    for i, lg in _logs_with_metrics(rec):
        tm = lg["test_metrics"]
        found += [(i, tm, k) for k in ("sequence_rank", "logsoftmaxloss", "accuracy", "length")
                  if k in tm]  # fmt: skip
        if "num_apppearances" in lg:
            found.append((i, lg, "num_apppearances"))
    return draw(st.sampled_from(found)) if found else None


def m_delete(draw, rec):
    where = draw(st.sampled_from(["top", "log", "tm"]))
    if where == "top":
        rec.pop(draw(st.sampled_from(["args", "logs"])), None)
        return
    logs = _logs_with_metrics(rec)
    if not logs:
        return
    i, lg = draw(st.sampled_from(logs))
    d = lg if where == "log" else lg["test_metrics"]
    if d:
        d.pop(draw(st.sampled_from(sorted(d))), None)


def m_replace(draw, rec):
    """Some value anywhere (top, log, test_metrics, args) becomes a hostile value."""
    value = copy.deepcopy(draw(HOSTILE_VALUES))
    where = draw(st.sampled_from(["top", "log", "tm", "args"]))
    if where == "top":
        rec[draw(st.sampled_from(["args", "logs"]))] = value
    elif where == "args":
        args = rec.get("args")
        key = draw(st.sampled_from(["K", "len_context", "batch_size", "num_iter_per_epoch", "lr",
                                    "seed", "num_heads", "sequence_sampling_distribution",
                                    "n_params", "steps_per_epoch"]))  # fmt: skip
        if isinstance(args, dict):
            args[key] = value
        elif isinstance(args, argparse.Namespace):
            setattr(args, key, value)
    else:
        logs = _logs_with_metrics(rec)
        if not logs:
            return
        i, lg = draw(st.sampled_from(logs))
        if where == "log":
            lg[draw(st.sampled_from(["num_apppearances", "test_metrics", "epoch"]))] = value
        else:
            key = draw(st.sampled_from(["sequence_rank", "logsoftmaxloss", "accuracy", "length"]))
            lg["test_metrics"][key] = value


def m_poke(draw, rec):
    """NaN, inf, negative, huge or fractional values inside one array."""
    hit = _pick_array(draw, rec)
    if hit is None:
        return
    _, d, k = hit
    a = np.array(d[k], dtype=np.float64)
    if a.size == 0:
        return
    v = draw(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -0.3, 0.5, 1e12, 2.0**64,
                              -(2.0**40), 7.0, 1e-30]))  # fmt: skip
    flat = a.reshape(-1)
    flat[draw(st.integers(0, flat.size - 1))] = v
    if draw(st.booleans()):
        flat[:] = v
    d[k] = a


def m_dtype(draw, rec):
    hit = _pick_array(draw, rec)
    if hit is None:
        return
    _, d, k = hit
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        d[k] = np.asarray(d[k]).astype(draw(st.sampled_from(DTYPES)))


def m_shape(draw, rec):
    hit = _pick_array(draw, rec)
    if hit is None:
        return
    _, d, k = hit
    a = np.asarray(d[k])
    a = a.reshape(1) if a.ndim == 0 else a
    how = draw(st.sampled_from(["T", "flat", "axis", "drop", "extra", "0d", "empty", "tile"]))
    d[k] = {
        "T": lambda: a.T,
        "flat": lambda: a.reshape(-1),
        "axis": lambda: a[None],
        "drop": lambda: a[:-1],
        "extra": lambda: np.concatenate([a, a[:1]]) if a.ndim else a,
        "0d": lambda: a.reshape(-1)[:1].reshape(()) if a.size else np.array(0),
        "empty": lambda: a[:0],
        "tile": lambda: np.concatenate([a, a], axis=-1) if a.ndim else a,
    }[how]()


def m_epoch(draw, rec):
    logs = _logs_with_metrics(rec)
    if logs:
        _, lg = draw(st.sampled_from(logs))
        lg["epoch"] = draw(st.sampled_from([-1, -(10**6), 10**18, 2**63, 10**30, 2.5, math.nan,
                                            math.inf, "3", np.int64(-2), np.float32(4.0), None,
                                            np.array([1, 2]), True]))  # fmt: skip


def m_ranks(draw, rec):
    """Ranks out of [0, K), fractional, or shuffled/duplicated."""
    logs = _logs_with_metrics(rec)
    if not logs:
        return
    _, lg = draw(st.sampled_from(logs))
    tm = lg["test_metrics"]
    if "sequence_rank" not in tm:
        return
    r = np.array(tm["sequence_rank"])
    if r.dtype.kind not in "iuf" or r.size == 0:
        return
    how = draw(st.sampled_from(["neg", "big", "frac", "dup", "perm", "row"]))
    K = r.shape[0]
    if how == "neg":
        r = r - draw(st.integers(1, 5))
    elif how == "big":
        r = r + draw(st.sampled_from([1, K, 2**31, 2**40]))
    elif how == "frac":
        r = r + 0.25
    elif how == "dup":
        r[...] = 0
    elif how == "perm":
        r = r[::-1].copy()
    elif r.ndim == 2 and r.shape[1] > 1:
        r[0, -1] = (r[0, 0] + 1) % K if K > 1 else 1  # a row that does not repeat one rank
    tm["sequence_rank"] = r


def m_other_k(draw, rec):
    """One evaluation of a different K (mismatched between evaluations)."""
    logs = _logs_with_metrics(rec)
    if not logs:
        return
    _, lg = draw(st.sampled_from(logs))
    tm = lg["test_metrics"]
    K2 = draw(st.integers(1, 8))
    rng = np.random.default_rng(K2)
    shape = np.shape(tm.get("sequence_rank", np.zeros(1)))
    P = shape[1] if len(shape) == 2 else None
    tm["sequence_rank"] = np.repeat(np.arange(K2)[:, None], P, 1) if P else np.arange(K2)
    tm["logsoftmaxloss"] = rng.random(tm["sequence_rank"].shape).astype(np.float32)
    tm["accuracy"] = np.ones(tm["sequence_rank"].shape, np.float32)
    tm.pop("length", None)
    if draw(st.booleans()):
        lg["num_apppearances"] = np.zeros(K2)


def m_layout(draw, rec):
    """Per-position and per-sequence layouts mixed, or another L in one evaluation."""
    logs = _logs_with_metrics(rec)
    if not logs:
        return
    _, lg = draw(st.sampled_from(logs))
    tm = lg["test_metrics"]
    try:
        r, loss, acc = (np.asarray(tm[k]) for k in ("sequence_rank", "logsoftmaxloss", "accuracy"))
    except KeyError:
        return
    if r.ndim == 2 and r.dtype.kind in "iu" and draw(st.booleans()):
        tm["sequence_rank"], tm["length"] = r[:, 0], 50
        with np.errstate(all="ignore"):
            tm["logsoftmaxloss"], tm["accuracy"] = loss.mean(-1), acc.mean(-1)
    elif r.ndim == 1:
        P = draw(st.integers(1, 4))
        tm["sequence_rank"] = np.repeat(r[:, None], P, 1)
        tm["logsoftmaxloss"] = np.repeat(loss[:, None], P, 1)
        tm["accuracy"] = np.repeat(acc[:, None], P, 1)
        tm.pop("length", None)
    elif r.ndim == 2:
        extra = draw(st.integers(1, 3))
        for k in ("sequence_rank", "logsoftmaxloss", "accuracy", "length"):
            if k in tm and np.ndim(tm[k]) == 2:
                a = np.asarray(tm[k])
                tm[k] = np.concatenate([a, a[:, -1:].repeat(extra, 1)], axis=1)


def m_containers(draw, rec):
    """Wrong container types: logs a tuple or dict, test_metrics a list, args a list..."""
    how = draw(st.sampled_from(["logs_tuple", "logs_dict", "tm_list", "args_list", "log_list",
                                "tm_none", "empty_logs", "no_metrics", "rec_list"]))  # fmt: skip
    logs = rec.get("logs")
    if how == "logs_tuple" and isinstance(logs, list):
        rec["logs"] = tuple(logs)
    elif how == "logs_dict" and isinstance(logs, list):
        rec["logs"] = dict(enumerate(logs))
    elif how == "args_list":
        rec["args"] = ["K", 3]
    elif how == "empty_logs":
        rec["logs"] = []
    elif how == "rec_list":
        rec["__list__"] = True  # marker: the whole record is written as a list
    elif isinstance(logs, list) and logs:
        i = draw(st.integers(0, len(logs) - 1))
        if how == "log_list":
            logs[i] = list(logs[i].items()) if isinstance(logs[i], dict) else logs[i]
        elif isinstance(logs[i], dict) and how == "tm_list":
            logs[i]["test_metrics"] = list(logs[i].get("test_metrics") or {"a": 1})
        elif isinstance(logs[i], dict) and how == "tm_none":
            logs[i]["test_metrics"] = None
        elif how == "no_metrics":
            for lg in logs:
                if isinstance(lg, dict):
                    lg["test_metrics"] = collections.defaultdict(list)


def m_sign(draw, rec):
    hit = [(i, lg) for i, lg in _logs_with_metrics(rec) if "logsoftmaxloss" in lg["test_metrics"]]
    if hit:
        _, lg = draw(st.sampled_from(hit))
        with np.errstate(all="ignore"):
            lg["test_metrics"]["logsoftmaxloss"] = -np.asarray(lg["test_metrics"]["logsoftmaxloss"])


ARG_KEYS = [
    "K",
    "len_context",
    "L",
    "batch_size",
    "batch",
    "num_iter_per_epoch",
    "num_iters_per_epoch",
    "steps_per_epoch",
    "lr",
    "seed",
    "num_heads",
    "num_layers",
    "rope_embedding",
    "wandb_group_name",
    "sequence_sampling_distribution",
    "n_params",
]


def m_args(draw, rec):
    """Hostile values for the args the analysis reads (sizes, steps, labels)."""
    args = rec.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else args
    if isinstance(args, dict):
        for key in draw(st.lists(st.sampled_from(ARG_KEYS), min_size=1, max_size=3)):
            args[key] = copy.deepcopy(draw(HOSTILE_VALUES | st.sampled_from([0, 1, 2, 10**6])))


MUTATIONS = [m_args, m_delete, m_replace, m_poke, m_dtype, m_shape, m_epoch, m_ranks, m_other_k,
             m_layout, m_containers, m_sign]  # fmt: skip


@st.composite
def hostile_records(draw):
    K = draw(st.integers(1, 6))
    L = draw(st.integers(2, 5))
    layout = draw(st.sampled_from(["pos", "seq"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rec = valid_record(K, L, draw(st.integers(1, 5)), layout, draw(st.booleans()), rng)
    applied = []
    for m in draw(st.lists(st.sampled_from(MUTATIONS), min_size=0, max_size=3)):
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m(draw, rec)
        except (ValueError, TypeError, IndexError, OverflowError):  # does not apply here
            continue
        applied.append(m.__name__)
    if rec.pop("__list__", False):
        rec = list(rec.items())
    return rec, applied


def check_error(e: BaseException, path: Path) -> None:
    """A PhenomjaxError, one line, starting with the file and naming something after it."""
    assert isinstance(e, PhenomjaxError), f"{type(e).__name__} escaped: {e}"
    msg = str(e)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: ") and len(msg) > len(str(path)) + 4, msg


def check_tables(t, per_position: bool) -> None:
    """The contract of DESIGN 4 on a loaded table."""
    meta = t.attrs["run"]
    K = meta["K"]
    assert {"step", "rank", "presentations", "loss", "accuracy"} <= set(t.columns)
    assert len(t) > 0 and isinstance(K, int) and K >= 1
    r, loss, acc = t["rank"].to_numpy(), t["loss"].to_numpy(), t["accuracy"].to_numpy()
    assert ((r >= 0) & (r < K)).all()
    assert (np.isnan(loss) | (np.isfinite(loss) & (loss >= 0))).all()
    assert (np.isnan(acc) | ((acc >= 0) & (acc <= 1))).all()
    assert (t["presentations"].to_numpy() >= 0).all() and (t["step"].to_numpy() >= 0).all()
    if per_position:
        L = meta["L"]
        pos = t["position"].to_numpy()
        assert isinstance(L, int) and ((pos >= 1) & (pos <= L - 1)).all()
    if meta.get("L") is not None:
        assert isinstance(meta["L"], int) and meta["L"] >= 2
    assert isinstance(meta["label"], str)


def load_all(path: Path) -> None:
    """Every public reading of a legacy log; each either works (contract) or fails cleanly."""
    for per_position in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "cannot tell steps per epoch"
                t = phenomjax.load_run(path, per_position=per_position)
        except Exception as e:  # noqa: BLE001 - the point: what escapes must be clean
            OUTCOMES[f"legacy refused ({type(e).__name__})"] += 1
            check_error(e, path)
        else:
            OUTCOMES["legacy loaded"] += 1
            check_tables(t, per_position)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ev, pos, meta = legacy_tables(load_pickle(path), path)
    except Exception as e:  # noqa: BLE001
        check_error(e, path)
    else:
        assert meta["K"] >= 1 and len(ev) > 0


@SETTINGS
@given(case=hostile_records())
def test_hostile_legacy_records(tmp_path, case):
    rec, applied = case
    TRIED["legacy record"] += 1
    path = tmp_path / "x.pkl"
    with open(path, "wb") as f:
        pickle.dump(rec, f)
    load_all(path)


@settings(SETTINGS, max_examples=300 * SCALE)
@given(
    how=st.sampled_from(["cut", "flip", "insert", "garbage"]),
    at=st.floats(0, 1),
    byte=st.integers(0, 255),
    protocol=st.sampled_from([0, 2, 5]),
)
@example(how="insert", at=0.2421875, byte=50, protocol=5)  # numpy raised SystemError here
def test_corrupt_pickle_bytes(tmp_path, how, at, byte, protocol):
    TRIED["corrupt pickle"] += 1
    raw = bytearray(pickle.dumps(valid_record(3, 3, 3, "pos", True, np.random.default_rng(0)),
                                 protocol=protocol))  # fmt: skip
    i = int(at * (len(raw) - 1))
    if how == "cut":
        raw = raw[:i]
    elif how == "flip":
        raw[i] ^= byte or 1
    elif how == "insert":
        raw.insert(i, byte)
    else:
        raw = bytes([byte]) * 16
    path = tmp_path / "x.pkl"
    path.write_bytes(bytes(raw))
    load_all(path)


# -- crafted numpy pickles (issue 12): dtype state, object dtypes, every admitted constructor --
#
# numpy trusts a pickle's dtype state: `numpy.dtype('O8')` with a BUILD that clears its object
# flags, handed to _frombuffer, scalar or an ndarray BUILD, reads the file's bytes as object
# pointers; before the fix each of these killed the process with SIGSEGV (rc 139). They load in a
# child under an address-space cap, so a regression fails the test instead of killing pytest.

_PLAIN_STATE = (3, "<", None, None, None, -1, -1, 0)
_NOFLAGS = (3, "|", None, None, None, -1, -1, 0)  # an object dtype stripped of its flags
DTYPE_STATES = {
    "none": None,
    "plain": _PLAIN_STATE,
    "noflags": _NOFLAGS,
    "objflags": (3, "|", None, None, None, -1, -1, 63),
    "elsize": (3, "<", None, None, None, 16, 8, 0),
    "fields": (3, "|", None, ("a",), {"a": (dtype("O8"), 0)}, 8, 1, 16),
    "metadata": (4, "<", None, None, None, -1, -1, 0, {"x": 1}),
    "short": (3,),
    "notuple": "x",
    "order": (3, "?", None, None, None, -1, -1, 0),
}
DTYPE_CODES = ["O8", "O4", "V8", "U2", "S8", "M8[ns]", "f8,O8", [("a", "O8")], 7, b"f8", None,
               "f8", "i8", "b1"]  # fmt: skip
CRASHED = [("'O8'", "noflags", u) for u in ("frombuffer", "scalar", "reconstruct")]  # rc 139
SAFE_CODES = {"'f8'", "'i8'", "'b1'"}  # as repr() writes them


def dtype_uses(dt, core: str) -> dict[str, object]:
    """Every admitted way of turning a dtype into a value, each with 16 bytes of 'A'."""
    return {
        "frombuffer": frombuffer(b"A" * 16, dt, (2,), core=core),
        "frombuffer_F": frombuffer(b"A" * 16, dt, (2, 1), "F", core=core),
        "scalar": scalar(dt, b"A" * 8, core=core),
        "reconstruct": reconstruct((2,), dt, b"A" * 16, core=core),
        "reconstruct_list": reconstruct((2,), dt, [1, 2], core=core),
        "ndarray_call": Call(G("numpy", "ndarray"), ((2,), dt, b"A" * 16)),
        "ndarray_newobj": NewObj(G("numpy", "ndarray"), ((2,), dt)),
        "bare": dt,
    }


def special_pickles() -> dict[str, object]:
    """Constructors fed something other than a dtype of the log, and odd structures."""
    f8 = dtype("f8", state=_PLAIN_STATE)
    nested: object = [1.0]
    for _ in range(200):
        nested = [nested]
    return {
        "str_dtype_frombuffer": frombuffer(b"A" * 16, "O8", (2,)),
        "str_dtype_scalar": scalar("O8", b"A" * 8),
        "str_dtype_reconstruct": reconstruct((2,), "O", b"A" * 16),
        "rebuild_after_use": [Put(1, f8), frombuffer(b"A" * 16, Get(1), (2,)),
                              Build(Get(1), DTYPE_STATES["objflags"]), scalar(Get(1), b"A" * 8)],
        "reconstruct_object": Call(G("numpy.core.multiarray", "_reconstruct"),
                                   (G("builtins", "object"), (0,), b"b")),
        "reconstruct_typecode": Call(G("numpy.core.multiarray", "_reconstruct"),
                                     (G("numpy", "ndarray"), (0,), b"O")),
        "dtype_newobj": NewObj(G("numpy", "dtype"), ("O8", False, True)),
        "short_buffer": frombuffer(b"A" * 15, f8, (2,)),
        "huge_shape": frombuffer(b"A" * 16, f8, (2**62, 2**62)),
        "negative_shape": frombuffer(b"A" * 16, f8, (-2,)),
        "bad_order": frombuffer(b"A" * 16, f8, (2,), "K"),
        "short_scalar": scalar(f8, b"A" * 3),
        "fortran_flag": reconstruct((2,), f8, b"A" * 16, fortran=7),
        "state_array": Build(Call(G("numpy.core.multiarray", "_reconstruct"),
                                  (G("numpy", "ndarray"), (0,), b"b")), "abc"),
        "bare_object": Call(G("builtins", "object"), ()),
        "bare_global": G("numpy", "ndarray"),
        "deep": nested,
    }  # fmt: skip


def _plain_record(K: int = 3, L: int = 3) -> dict:
    rec = valid_record(K, L, 3, "pos", False, np.random.default_rng(0))
    for lg in rec["logs"]:
        lg["test_metrics"] = dict(lg["test_metrics"])
    return rec


def _crafted_files(tmp_path: Path) -> dict[Path, tuple]:
    """{file: (code, state, use)}: every combination, alternately at the top and in place of
    logs[0].test_metrics.accuracy of a valid log, alternately in both numpy spellings."""
    files = {}
    n = 0
    for code in DTYPE_CODES:
        for sname, state in DTYPE_STATES.items():
            core = CORE[(n // 2) % 2]  # with i % 2 below: each spelling at both places
            for use, node in dtype_uses(dtype(code, state=state), core).items():
                files[(repr(code), sname, use)] = node
                n += 1
    for name, node in special_pickles().items():
        files[("-", "-", name)] = node
    out = {}
    for i, (key, node) in enumerate(files.items()):
        if i % 2:
            rec = _plain_record()
            rec["logs"][0]["test_metrics"]["accuracy"] = node
            node = rec
        path = tmp_path / f"crafted{i}.pkl"
        path.write_bytes(craft(node))
        out[path] = key
    return out


def test_crafted_dtype_pickles_never_crash(tmp_path):
    """Each crafted pickle loads or is refused with one line naming the file; the object,
    string and void dtypes are refused by the unpickler itself, whatever the state."""
    files = _crafted_files(tmp_path)
    TRIED["crafted numpy pickle"] += len(files)
    done = load_in_child(list(files))
    for path, (code, state, use) in files.items():
        got = done[str(path)]
        OUTCOMES[f"crafted {got['outcome']} ({got.get('type', '')})"] += 1
        assert got["outcome"] in ("loaded", "refused"), (code, state, use, got)
        if got["outcome"] == "refused":
            msg = got["msg"]
            assert "\n" not in msg and msg.startswith(f"{path}: "), (code, state, use, msg)
        if code not in SAFE_CODES and code != "-":
            assert got.get("type") == "UnsafePickleError", (code, state, use, got)
    crash = [done[str(p)] for p, k in files.items() if k in CRASHED]
    assert len(crash) == 3 and all("numpy.dtype('O8') refused" in d["msg"] for d in crash), crash
    # a plain dtype whose state was rebuilt after use is refused at that BUILD, not ignored
    rebuilt = [done[str(p)] for p, k in files.items() if k[2] == "rebuild_after_use"]
    assert rebuilt[0]["type"] == "UnsafePickleError" and "state" in rebuilt[0]["msg"], rebuilt


# preexec_fn makes subprocess fork; the child only calls setrlimit before exec, so JAX's warning
# about forking a multithreaded process does not apply
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_crafted_pickle_through_the_cli_is_one_line(tmp_path):
    """`phenomjax analyze` on the pickle that crashed it (rc 139): exit 2 and one line."""
    rec = _plain_record()
    rec["logs"][0]["test_metrics"]["accuracy"] = frombuffer(b"A" * 48, dtype("O8", state=_NOFLAGS),
                                                            (3, 2))  # fmt: skip
    path = tmp_path / "poisoned.pkl"
    path.write_bytes(craft(rec))
    TRIED["crafted numpy pickle"] += 1
    code = "import sys; from phenomjax.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["analyze", "--run", str(path), "--no-show-plots", "--no-save-plots", "--cache-dir",
            str(tmp_path / "cache")]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=300, preexec_fn=_cap_memory)  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(err) == 1 and "poisoned.pkl" in err[0] and "refused" in err[0], err


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


_BIG = 96 * 2**20  # bytes of one oversized array: loading it fits the headroom, scanning not


def _oversized_files(tmp_path: Path) -> dict[str, Path]:
    """Valid K = 3, L = 3 logs with one oversized uint8 array (a float32 copy of it, the first
    thing a value check makes, is 4 x its size)."""
    cases = {
        "accuracy": lambda r: r["logs"][0]["test_metrics"].__setitem__(
            "accuracy", np.zeros((_BIG // 2**17, 2**17), np.uint8)),
        "accuracy, no args": lambda r: (r.__setitem__("args", {}), r["logs"][2]["test_metrics"]
            .__setitem__("accuracy", np.zeros((_BIG // 2**17, 2**17), np.uint8))),
        "num_apppearances": lambda r: r["logs"][2].__setitem__(
            "num_apppearances", np.zeros(_BIG, np.uint8)),
        "positions": lambda r: r["logs"][0]["test_metrics"].__setitem__(
            "logsoftmaxloss", np.zeros((3, _BIG // 3), np.uint8)),
    }  # fmt: skip
    out = {}
    for i, (name, mutate) in enumerate(cases.items()):
        rec = _plain_record()
        mutate(rec)
        out[name] = tmp_path / f"big{i}.pkl"
        with open(out[name], "wb") as f:
            pickle.dump(rec, f, protocol=5)  # protocol 5 reads an array without a second copy
    return out


def test_oversized_arrays_refused_before_their_values(tmp_path):
    """Shapes are checked against args.K, args.len_context and the first log before any value
    is read: with room for the file but not for a float copy of the array, each is refused by
    its shape (before the fix: a raw MemoryError)."""
    files = _oversized_files(tmp_path)
    TRIED["oversized array"] += len(files)
    done = load_in_child(list(files.values()), 2 * _BIG, above_imports=True)
    want = {
        "accuracy": "logs[0].test_metrics.accuracy: 768 sequences, but args.K = 3",
        "accuracy, no args": "logs[2].test_metrics.accuracy: 768 sequences, but ",
        "num_apppearances": "logs[2].num_apppearances: 100663296 sequences, but args.K = 3",
        "positions": "logs[0].test_metrics.logsoftmaxloss: 33554432 positions, but ",
    }
    for name, path in files.items():
        got = done[str(path)]
        assert got["outcome"] == "refused" and got["type"] == "DataError", (name, got)
        assert got["msg"].startswith(f"{path}: {want[name]}"), (name, got["msg"])
        path.unlink()


def test_out_of_memory_is_one_line_naming_the_file(tmp_path):
    """A well-formed log too large for the memory left: a DataError naming the file (and the
    field being read), never a MemoryError traceback."""
    K = 2**22
    counts = np.zeros(K, np.uint8)
    tm = {"sequence_rank": np.arange(K, dtype=np.int32), "length": 50,
          "logsoftmaxloss": np.ones(K, np.uint8), "accuracy": np.ones(K, np.uint8)}  # fmt: skip
    rec = {"args": {"K": K, "len_context": 16, "batch_size": 4},
           "logs": [{"num_apppearances": counts, "test_metrics": tm, "epoch": 0}]}  # fmt: skip
    path = tmp_path / "large.pkl"
    with open(path, "wb") as f:
        pickle.dump(rec, f, protocol=5)
    TRIED["oversized array"] += 1
    got = load_in_child([path], 48 * 2**20, above_imports=True)[str(path)]
    assert got["outcome"] == "refused" and got["type"] == "DataError", got
    assert got["msg"].startswith(f"{path}: ") and "out of memory" in got["msg"], got
    assert "\n" not in got["msg"]


def test_manifest_fields_are_checked(tmp_path):
    """A hand-edited manifest ("K": "lots") is a one-line error naming the file and field."""
    from fixtures.run_dirs import make_run_dir

    cases = {"K": "lots", "L": 1, "alpha": -1, "seed": "abc", "batch": 2.5}
    for field, value in cases.items():
        run = make_run_dir(tmp_path / f"run_{field}", K=4, L=3, steps=(0, 4)).path
        m = json.loads((run / "manifest.json").read_text())
        m[field] = value
        (run / "manifest.json").write_text(json.dumps(m))
        TRIED["manifest"] += 1
        with pytest.raises(PhenomjaxError) as info:
            phenomjax.load_run(run)
        msg = str(info.value)
        assert msg.startswith(f"{run / 'manifest.json'}: {field}: expected"), msg
        assert "\n" not in msg
    (run / "manifest.json").write_text("[1, 2]")
    with pytest.raises(PhenomjaxError, match="manifest.json: expected a JSON object"):
        phenomjax.load_run(run)


def test_bad_palette_is_a_config_error(tmp_path):
    for field in ("palette", "run_palette"):
        path = tmp_path / "a.toml"
        path.write_text(f'[experiments]\nsmall = ["x.pkl"]\n[plot]\n{field} = "nope"\n')
        TRIED["config analysis"] += 1
        with pytest.raises(ConfigError) as info:
            load_analysis_config(path)
        assert str(info.value).startswith(f"{path}: plot.{field}: 'nope' is not a"), info.value
    path.write_text('[experiments]\nsmall = ["x.pkl"]\n[plot]\npalette = "rocket"\n')
    assert load_analysis_config(path).plot.palette == "rocket"


def test_known_bad_records_name_the_field(tmp_path):
    """Hand-picked cases: the message names the exact field."""
    rng = np.random.default_rng(0)
    cases = {
        "epoch": lambda r: r["logs"][2].__setitem__("epoch", -3),
        "logs[0].test_metrics.accuracy": lambda r: r["logs"][0]["test_metrics"].__setitem__(
            "accuracy", "high"),
        "logs[2].test_metrics.logsoftmaxloss": lambda r: r["logs"][2]["test_metrics"][
            "logsoftmaxloss"].__setitem__((0, 0), np.inf),
        "logs[2].num_apppearances": lambda r: r["logs"][2].__setitem__(
            "num_apppearances", np.zeros(7)),
        "sequence_rank": lambda r: r["logs"][0]["test_metrics"].__setitem__(
            "sequence_rank", np.zeros((3, 2)) + 0.5),
        "args.batch_size": lambda r: r["args"].__setitem__("batch_size", "four"),
        "logs[2].test_metrics": lambda r: r["logs"][2].__setitem__("test_metrics", [1, 2]),
    }  # fmt: skip
    for field, mutate in cases.items():
        TRIED["hand-picked"] += 1
        rec = valid_record(3, 3, 3, "pos", False, rng)
        mutate(rec)
        path = tmp_path / "bad.pkl"
        with open(path, "wb") as f:
            pickle.dump(rec, f)
        with pytest.raises(PhenomjaxError) as info:
            phenomjax.load_run(path)
        check_error(info.value, path)
        assert field in str(info.value), (field, str(info.value))


def test_odd_but_harmless_args_still_load(tmp_path):
    """Args that only label a run (lr, seed, n_params) never block the analysis."""
    rec = valid_record(3, 3, 3, "seq", False, np.random.default_rng(1))
    rec["args"].update(lr="abc", seed=math.nan, n_params="many", num_heads=[2])
    path = tmp_path / "odd.pkl"
    with open(path, "wb") as f:
        pickle.dump(rec, f)
    TRIED["hand-picked"] += 1
    t = phenomjax.load_run(path)
    check_tables(t, per_position=False)
    meta = t.attrs["run"]
    assert meta["label"] == "1 layers, learned, lr=abc"
    assert meta["seed"] is None and meta["n_params"] is None and meta["K"] == 3


# -- configs -------------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _str(k)


def _str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(d: dict[str, Any], prefix: str = "") -> str:
    """Scalars first, then one [section] per nested table (dotted headers)."""
    lines = [f"{_key(k)} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}.{_key(k)}" if prefix else _key(k)
            lines += ["", f"[{name}]", to_toml(v, name)]
    return "\n".join(lines)


def test_toml_serializer_round_trips():
    d = {"a": 1, "b": [1.5, math.inf], "c": {"d": 'x"y\n\x7f', "e": {"f": True}}, "g h": {},
         "0\n": {"x": 1}}  # fmt: skip
    assert tomllib.loads(to_toml(d)) == d


def _analysis_base() -> dict[str, Any]:
    return tomllib.loads(default_config_path().read_text())


CONFIGS: dict[str, tuple[Any, Any]] = {
    # name -> (base dict, loader(path) -> config)
    "train": (to_dict(TrainConfig()), lambda p: load_config(TrainConfig, p)),
    "fit": (to_dict(PhenomConfig()), lambda p: load_config(PhenomConfig, p)),
    "distributed": (to_dict(DistributedConfig()), lambda p: load_config(DistributedConfig, p)),
    "analysis": (_analysis_base(), load_analysis_config),
}
BAD_SCALARS = st.sampled_from(
    [0, -1, -(2**63), 2**63 - 1, 10**30, 1.5, -0.5, 0.0, -0.0, 1e308, 1e-320, math.nan, math.inf,
     -math.inf, True, False, "", "abc", "rope", "1", [], [1, "a"], [[1]], {}, {"x": 1},
     {"K": 2}, "\x00\n"]
)  # fmt: skip
SPECIFIC = {  # the ranges DESIGN 8 names
    ("data", "K"): [0, -1, -(10**9)],
    ("data", "L"): [1, 0, -5],
    ("data", "alpha"): [-0.1, -1, math.nan, math.inf],
}


def _leaves(d: dict, path=()) -> list[tuple[str, ...]]:
    out = []
    for k, v in d.items():
        out += _leaves(v, (*path, k)) if isinstance(v, dict) and v else [(*path, k)]
    return out


def _set(d: dict, path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def _sections(d: dict, path=()) -> list[tuple[str, ...]]:
    out = [path]
    for k, v in d.items():
        if isinstance(v, dict):
            out += _sections(v, (*path, k))
    return out


@st.composite
def hostile_configs(draw):
    name = draw(st.sampled_from(sorted(CONFIGS)))
    d = copy.deepcopy(CONFIGS[name][0])
    fields = []
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["value", "specific", "unknown", "delete", "section", "table"]))
        leaves = _leaves(d)
        if how == "value" and leaves:
            path = draw(st.sampled_from(leaves))
            _set(d, path, copy.deepcopy(draw(BAD_SCALARS)))
        elif how == "specific" and isinstance(d.get("data"), dict):
            path = draw(st.sampled_from(sorted(SPECIFIC)))
            _set(d, path, draw(st.sampled_from(SPECIFIC[path])))
        elif how == "unknown":
            sec = draw(st.sampled_from(_sections(d)))
            key = draw(st.text(min_size=1, max_size=8) | st.sampled_from(["n_heads", "lr_", "k"]))
            node = d
            for k in sec:
                node = node[k]
            if key in node:
                continue
            node[key] = copy.deepcopy(draw(BAD_SCALARS))
            path = (*sec, key)
        elif how == "delete" and leaves:
            path = draw(st.sampled_from(leaves))
            node = d
            for k in path[:-1]:
                node = node[k]
            node.pop(path[-1])
            fields.append(None)  # a default takes its place, or a reference to it breaks
            continue
        elif how == "section":
            secs = [s for s in _sections(d) if s]
            if not secs:
                continue
            path = draw(st.sampled_from(secs))
            _set(d, path, draw(st.sampled_from([3, "x", [1], math.nan])))
        elif how == "table" and leaves:
            path = draw(st.sampled_from(leaves))
            _set(d, path, {"value": 1, "nested": {"x": 2}})
        else:
            continue
        fields.append(path)
    return name, d, fields


def check_config_error(e: BaseException, path: Path) -> str:
    assert isinstance(e, PhenomjaxError), f"{type(e).__name__} escaped: {e!r}"
    msg = str(e)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: ") and len(msg) > len(str(path)) + 4, msg
    return msg


def _finite_numbers(cfg: Any, where="") -> None:
    """A config that loads holds no NaN/inf number and obeys DESIGN 8's ranges."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            _finite_numbers(v, f"{where}{f.name}.")
        elif isinstance(v, float):
            assert math.isfinite(v), f"{where}{f.name} = {v}"
        elif isinstance(v, tuple):
            assert all(math.isfinite(x) for x in v if isinstance(x, float)), f"{where}{f.name}"
    if hasattr(cfg, "K") and hasattr(cfg, "alpha"):
        assert cfg.K >= 1 and cfg.L >= 2 and cfg.alpha >= 0


@SETTINGS
@given(case=hostile_configs())
def test_hostile_configs(tmp_path, case):
    name, d, fields = case
    TRIED[f"config {name}"] += 1
    path = tmp_path / "c.toml"
    path.write_text(to_toml(d), encoding="utf-8")
    try:
        cfg = CONFIGS[name][1](path)
    except Exception as e:  # noqa: BLE001
        OUTCOMES[f"config refused ({type(e).__name__})"] += 1
        msg = check_config_error(e, path)
        if len(fields) == 1 and fields[0] is not None:  # one fault: its dotted field named
            head = f"{path}: {functools.reduce(dotted, fields[0], '')}"  # odd keys quoted
            assert msg.startswith(head) and msg[len(head)] in ":[", (fields, msg)
    else:
        OUTCOMES["config loaded"] += 1
        _finite_numbers(cfg)


@settings(SETTINGS, max_examples=800 * SCALE)
@given(
    name=st.sampled_from(sorted(CONFIGS)),
    edits=st.lists(
        st.tuples(st.sampled_from(["del", "ins", "dup", "cut", "swap", "word"]), st.floats(0, 1),
                  st.sampled_from(list("[]{}=\"'#.,\n 0-+e") + ["nan", "inf", "[data]", "K",
                                  "x = 1", "\\u00", "'''", "[[a]]", "1979-05-27"])),
        min_size=1, max_size=4,
    ),
)  # fmt: skip
def test_raw_mutated_toml(tmp_path, name, edits):
    TRIED[f"raw toml {name}"] += 1
    text = to_toml(CONFIGS[name][0])
    for how, at, piece in edits:
        i = int(at * len(text))
        if how == "del":
            text = text[:i] + text[i + 1 :]
        elif how == "ins":
            text = text[:i] + piece + text[i:]
        elif how == "dup":
            lines = text.split("\n")
            j = int(at * (len(lines) - 1))
            text = "\n".join(lines[: j + 1] + lines[j:])
        elif how == "cut":
            text = text[:i]
        elif how == "swap":
            lines = text.split("\n")
            j = int(at * (len(lines) - 1))
            lines[j], lines[-1] = lines[-1], lines[j]
            text = "\n".join(lines)
        else:
            value = f"= {piece}"
            text = re.sub(r"= [^\n]*", lambda _, v=value: v, text, count=1 + int(at * 5))
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = CONFIGS[name][1](path)
    except Exception as e:  # noqa: BLE001
        check_config_error(e, path)
    else:
        _finite_numbers(cfg)


@settings(SETTINGS, max_examples=300 * SCALE)
@given(
    overrides=st.lists(
        st.tuples(
            st.sampled_from(["data.K", "data.L", "data.alpha", "model.n_head", "optimizer.lr",
                             "train.per_position", "distributed.devices", "data", "x.y", ""]),
            st.sampled_from(["=", "", "==", " = "]),
            st.sampled_from(["0", "-1", "nan", "inf", "1e400", "[1", "{a = 1}", "rope", "''",
                             "'a\nb'", "true", "2", ""]) | st.text(max_size=6),
        ).map("".join),
        min_size=1, max_size=3,
    )
)  # fmt: skip
def test_hostile_set_overrides(overrides):
    """`--set` strings: applied, or one line naming --set or the field."""
    TRIED["--set overrides"] += 1
    try:
        cfg = load_config(TrainConfig, None, overrides)
    except Exception as e:  # noqa: BLE001
        assert isinstance(e, PhenomjaxError), f"{type(e).__name__} escaped: {e!r}"
        assert "\n" not in str(e) and str(e), str(e)
    else:
        _finite_numbers(cfg)


def test_odd_names_are_quoted_in_one_line(tmp_path):
    """Found by the generator: a table key holding a newline broke the message in two."""
    path = tmp_path / "c.toml"
    cases = [
        ('[experiments]\n"\\n" = 0\n', "experiments.'\\n': expected"),
        ('[rank_selections]\n" " = [-1]\n', "rank_selections.' ': expected"),
        ('[experiments]\nsmall = ["x"]\n[plot]\n"\\t" = 1\n', "plot.'\\t':"),
    ]
    for text, head in cases:
        TRIED["config analysis"] += 1
        path.write_text(text)
        with pytest.raises(PhenomjaxError) as info:
            load_analysis_config(path)
        assert str(info.value).startswith(f"{path}: {head}"), str(info.value)
        check_config_error(info.value, path)


def test_config_file_not_text(tmp_path):
    for name, (_, loader) in CONFIGS.items():
        TRIED[f"config {name}"] += 1
        path = tmp_path / "c.toml"
        path.write_bytes(b"\xff\xfe\x00K = 1")
        with pytest.raises(PhenomjaxError) as info:
            loader(path)
        check_config_error(info.value, path)


# -- the CLIs ------------------------------------------------------------------------------------


def _cli(capsys, argv: list[str]) -> str:
    from phenomjax.cli import main

    TRIED["cli"] += 1
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    return lines[0]


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "BAD.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"args": {}, "logs": [{"epoch": 0, "test_metrics": {"accuracy": "x"}}]}, f)
    line = _cli(capsys, ["analyze", "--run", str(bad), "--no-show-plots", "--no-save-plots",
                         "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert "BAD.pkl" in line
    trunc = tmp_path / "cut.pkl"
    trunc.write_bytes(pickle.dumps({"args": {}, "logs": []})[:-3])
    argv = ["analyze", "--run", str(trunc), "--no-show-plots", "--no-save-plots", "--cache-dir",
            str(tmp_path / "c")]  # fmt: skip
    assert "cut.pkl" in _cli(capsys, argv)
    acfg = tmp_path / "A.toml"
    acfg.write_text("[experiments]\nsmall = ['x.pkl']\n[plot]\ndpi = 'high'\n")
    assert "A.toml: plot.dpi" in _cli(capsys, ["analyze", "--config", str(acfg), "--no-show-plots"])
    cases = {
        "train": ("[data]\nK = 0\n", "data.K"),
        "fit-phenom": ("[data]\nL = 1\n", "data.L"),
    }
    for cmd, (text, field) in cases.items():
        cfg = tmp_path / "BAD.toml"
        cfg.write_text(text)
        line = _cli(capsys, [cmd, str(cfg), "--out", str(tmp_path / "never")])
        assert f"BAD.toml: {field}" in line
        assert not (tmp_path / "never").exists()
    for cmd, text in (("train", "[model]\nn_head = 'x'\n"), ("fit-phenom", "[data]\nalpha = -1\n"),
                      ("train", "[optimizer]\nlr = nan\n"), ("fit-phenom", "bogus = 1\n"),
                      ("train", "[data\n")):  # fmt: skip
        cfg = tmp_path / "BAD.toml"
        cfg.write_text(text)
        assert "BAD.toml" in _cli(capsys, [cmd, str(cfg), "--out", str(tmp_path / "never")])
        assert not (tmp_path / "never").exists()


def test_zz_report_count(tmp_path):
    """Runs last in this file and prints how many inputs were tried and how they ended (run with
    -s). It first tries a known pair itself, so the counts it checks hold when run alone."""
    tried, outcomes = sum(TRIED.values()), collections.Counter(OUTCOMES)
    rec = valid_record(3, 3, 3, "pos", False, np.random.default_rng(0))
    good = tmp_path / "good.pkl"
    with open(good, "wb") as f:
        pickle.dump(rec, f)
    rec["logs"][0]["test_metrics"]["accuracy"] = "high"
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as f:
        pickle.dump(rec, f)
    for path in (good, bad):
        TRIED["report"] += 1
        load_all(path)  # two readings each: per sequence and per position
    assert sum(TRIED.values()) == tried + 2
    assert OUTCOMES - outcomes == {"legacy loaded": 2, "legacy refused (DataError)": 2}
    print(f"\nhostile inputs tried: {sum(TRIED.values())} ({dict(TRIED)})")
    print(f"outcomes: {dict(OUTCOMES)}")
