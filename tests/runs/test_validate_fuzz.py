"""Fuzz tests, one per reader (manifest, parquet, cache record, TOML): hypothesis mutates a
valid file, a child process under a memory cap (tests/runs/fuzz_worker.py) reads it, and the only
outcomes allowed are success or the package's one-line error; never another exception, never
a hang (each answer has a timeout), never the child dying."""

from __future__ import annotations

import io
import json
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.run_dirs import make_run_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HEADROOM = 1536 * 2**20  # bytes above the imports: a K = 4 run needs a few MB
TIMEOUT = 60  # seconds for one answer (a first read imports lazily; a hang never answers)
FUZZ = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


class Worker:
    def __init__(self) -> None:
        worker = Path(__file__).with_name("fuzz_worker.py")
        self.proc = subprocess.Popen([sys.executable, str(worker), str(HEADROOM)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip

    def read(self, reader: str, path: Path, cache: Path | None = None) -> dict:
        self.proc.stdin.write(f"{reader}\t{path}\t{cache or ''}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        assert ready, f"{reader}({path}): no answer in {TIMEOUT} s (a hang)"
        line = self.proc.stdout.readline()
        assert line, f"{reader}({path}): the reader's process died (rc {self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def base():
    top = Path(tempfile.mkdtemp(prefix="phenomjax-fuzz-"))
    make_run_dir(top / "run", K=4, L=3, steps=(0, 4))
    yield top
    shutil.rmtree(top)


def check(got: dict, name: str) -> None:
    assert got["outcome"] in ("ok", "refused"), got
    if got["outcome"] == "refused":
        assert "\n" not in got["msg"] and name in got["msg"], got


def fresh(base: Path) -> Path:
    run = Path(tempfile.mkdtemp(dir=base)) / "run"
    shutil.copytree(base / "run", run)
    return run


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
FIELDS = ("K", "L", "kind", "alpha", "seed", "batch", "n_params", "status", "config", "created")


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=3),
       cut=st.none() | st.integers(0, 400), nest=st.integers(0, 3000))  # fmt: skip
def test_fuzz_manifest(worker, base, edits, cut, nest):
    run = fresh(base)
    m = {**json.loads((run / "manifest.json").read_text()), **edits}
    text = json.dumps(m)
    if nest:
        text = text[:-1] + ', "deep": ' + "[" * nest + "]" * nest + "}"
    if cut is not None:
        text = text[:cut]
    (run / "manifest.json").write_text(text)
    check(worker.read("load_run", run), "manifest.json")


DTYPES = ("int8", "int32", "int64", "uint64", "float32", "float64", "bool", "str")
extremes = st.sampled_from([0, 1, -1, 3, 4, 2**15, 2**31, 2**63 - 1, np.nan, np.inf, -np.inf])


@FUZZ
@given(table=st.sampled_from(["evals.parquet", "positions.parquet"]),
       column=st.sampled_from(["step", "rank", "position", "presentations", "loss", "accuracy"]),
       dtype=st.sampled_from(DTYPES), value=extremes, row_group=st.integers(1, 64),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                      max_size=3))  # fmt: skip
def test_fuzz_parquet(worker, base, table, column, dtype, value, row_group, flips):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = fresh(base)
    df = pd.read_parquet(run / table)
    if column in df.columns:
        col = df[column].astype("float64")
        col.iloc[::2] = value
        try:
            df[column] = col.astype(dtype) if dtype != "str" else col.astype(str)
        except (ValueError, OverflowError):  # NaN into an integer: keep the float column
            df[column] = col
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf, row_group_size=row_group)
    raw = bytearray(buf.getvalue())
    for at, byte in flips:
        raw[at % len(raw)] = byte
    (run / table).write_bytes(bytes(raw))
    check(worker.read("load_run", run), table)


@pytest.fixture(scope="module")
def cached(base, worker):
    """A run and its cache entry, written by the worker (the reader under test)."""
    run = fresh(base)
    cache = base / "cache"
    assert worker.read("process_run", run, cache)["outcome"] == "ok"
    (record,) = [p for p in cache.glob("*.json") if p.name != "digests.json"]  # not the memo
    return run, cache, record, json.loads(record.read_text())


@FUZZ
@given(where=st.sampled_from(["meta", "parts", "top"]), key=st.sampled_from(
       ["meta", "parts", "K", "L", "kind", "steps", "name", "label", "memorized", "bits_known",
        "binned"]) | st.text(max_size=12),
       value=json_values, cut=st.none() | st.integers(0, 600))  # fmt: skip
def test_fuzz_cache_record(worker, cached, where, key, value, cut):
    run, cache, record, good = cached
    rec = json.loads(json.dumps(good))
    if where == "top":  # the record replaced, or one of its two fields
        rec = {**rec, key: value} if key in ("meta", "parts") else value
    else:
        rec[where][key] = value
    text = json.dumps(rec)
    record.write_text(text if cut is None else text[:cut])
    check(worker.read("process_run", run, cache), record.name)
    record.write_text(json.dumps(good))


toml_scalars = st.sampled_from(["1", "-7", "1.5", "nan", "inf", "true", '"rope"', "[]", "{}",
                                "9" * 30, "1" + "0" * 5000, "2147483648", '"\\u0000"'])  # fmt: skip
SECTIONS = ("data", "model", "train", "optimizer", "paths", "experiments", "style", "")
KEYS = ("K", "L", "seed", "steps", "lr", "n_layer", "batch", "max_chunk", "x", "edges")


@FUZZ
@given(lines=st.lists(st.tuples(st.sampled_from(SECTIONS), st.sampled_from(KEYS), toml_scalars),
                      max_size=6),
       deep=st.sampled_from(["", "[", "{a = ", "a."]), depth=st.integers(0, 3000),
       reader=st.sampled_from(["train_toml", "analysis_toml"]))  # fmt: skip
def test_fuzz_toml(worker, base, lines, deep, depth, reader):
    text = "".join(f"{s + '.' if s else ''}{k} = {v}\n" for s, k, v in lines)
    if deep == "a.":
        text += "a." * depth + "b = 1\n"
    elif deep:
        text += "z = " + deep * depth + "1" + ("]" if deep == "[" else "}") * depth + "\n"
    path = Path(tempfile.mkdtemp(dir=base)) / "c.toml"
    path.write_text(text)
    check(worker.read(reader, path), "c.toml")
