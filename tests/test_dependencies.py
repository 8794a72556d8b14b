"""Dependency floors and the parquet extension-type attack (issue 21, item 5).

pyarrow 14.0.0 unpickled the payload of an "arrow.py_extension_type" field while reading a
parquet file (CVE-2023-47248), so a crafted evals.parquet ran code inside `phenomjax analyze`.
The floor is 14.0.1 (the fix); the test writes such a file, with a payload that would create a
marker file, and reads it through the run reader and load_run: the marker must never appear,
and the run either loads or fails in one line."""

from __future__ import annotations

import pickle
import re
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures.run_dirs import make_run_dir

from phenomjax.analysis.load import load_run
from phenomjax.errors import PhenomjaxError
from phenomjax.runs import RunDir

ROOT = Path(__file__).parents[1]
# package -> the lowest version without a known code-execution issue that reaches phenomjax
FLOORS = {"pyarrow": (14, 0, 1), "tqdm": (4, 66, 3)}


def _floor(spec: str) -> tuple[str, tuple[int, ...]]:
    name, _, version = re.match(r"([A-Za-z0-9_-]+)\s*(>=\s*([0-9.]+))?", spec).groups()
    return name.lower(), tuple(int(x) for x in (version or "0").split("."))


def test_declared_floors_exclude_the_known_code_execution_versions():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = dict(_floor(d) for d in deps)
    for name, safe in FLOORS.items():
        assert floors[name] >= safe, f"{name}>={'.'.join(map(str, floors[name]))} admits a CVE"
    installed = tuple(int(x) for x in pa.__version__.split(".")[:3])
    assert installed >= FLOORS["pyarrow"]


class _Touch:
    """A pickle payload that creates `path` when unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


class _Crafted(pa.ExtensionType):
    """Writes the storage of a column under pyarrow's old pickled extension name; registered
    only while writing, so the reader meets the payload as an attacker's file would bring it."""

    def __init__(self, payload: bytes):
        self.payload = payload
        super().__init__(pa.float32(), "arrow.py_extension_type")

    def __arrow_ext_serialize__(self) -> bytes:
        return self.payload

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls(serialized)


def _crafted_evals(run: RunDir, marker: Path) -> None:
    table = pq.read_table(run.evals_path)
    i = table.schema.get_field_index("loss")
    loss = table.column(i).combine_chunks().cast(pa.float32())
    ext = _Crafted(pickle.dumps(_Touch(marker)))
    column = pa.ExtensionArray.from_storage(ext, loss)
    pq.write_table(table.set_column(i, pa.field("loss", ext), column), run.evals_path)


@pytest.mark.parametrize("read", ["run reader", "load_run"])
def test_a_pickled_extension_type_in_evals_parquet_never_runs(tmp_path, read):
    run = make_run_dir(tmp_path / "run")
    marker = tmp_path / "ran"
    _crafted_evals(run, marker)
    field = pq.read_schema(run.evals_path).field("loss")  # the payload is in the file
    assert field.metadata[b"ARROW:extension:name"] == b"arrow.py_extension_type"
    assert field.metadata[b"ARROW:extension:metadata"] == pickle.dumps(_Touch(marker))
    try:
        if read == "run reader":
            RunDir(run.path).read_evals()
        else:
            load_run(run.path)
    except PhenomjaxError as e:
        assert "\n" not in str(e)
    assert not marker.exists(), "reading the parquet file ran its pickled payload"
