"""Everything read back from a run folder, cache or config is checked before use
(runs/validate.py): each hostile input is one line naming the file and field, exit 2 from the
CLI, never a traceback, a hang or an allocation without limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.run_dirs import make_run_dir

import phenomjax
from phenomjax.analysis.cache import process_run
from phenomjax.config import read_toml
from phenomjax.errors import ConfigError, PhenomjaxError


def _one_line(info, *names: str) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    for n in names:
        assert n in msg, msg
    return msg


def _run(tmp_path: Path, name: str = "r") -> Path:
    return make_run_dir(tmp_path / name, K=4, L=3, steps=(0, 4)).path


def _edit_manifest(run: Path, text: str) -> None:
    (run / "manifest.json").write_text(text)


def _nest(n: int) -> str:
    """n nested lists, as a JSON value spliced in by the caller's replace."""
    return f"@NEST{n}@"


MANIFEST_CASES = {
    "K of 5000 digits": lambda m: json.dumps(m).replace('"K": 4', '"K": 1' + "0" * 5000),
    "n_params a string": lambda m: json.dumps({**m, "n_params": "1234"}),
    "K null": lambda m: json.dumps({**m, "K": None}),
    "L a list": lambda m: json.dumps({**m, "L": [3]}),
    "config a list": lambda m: json.dumps({**m, "config": [1]}),
    "deeply nested": lambda m: json.dumps({**m, "x": _nest(5000)}),
    "nested past the bound": lambda m: json.dumps({**m, "config": {"a": _nest(40)}}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_hostile_manifests_are_one_line(tmp_path, case):
    run = _run(tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    text = MANIFEST_CASES[case](m)
    for n in (40, 5000):
        text = text.replace(f'"@NEST{n}@"', "[" * n + "]" * n)
    _edit_manifest(run, text)
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(run)
    _one_line(info, "manifest.json")


def test_bad_utf8_manifest_is_one_line(tmp_path):
    run = _run(tmp_path)
    (run / "manifest.json").write_bytes(b'{"K": "\xff\xfe"}')
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(run)
    _one_line(info, "manifest.json", "UTF-8")


def _rewrite(path: Path, **cols) -> None:
    df = pd.read_parquet(path)
    for c, v in cols.items():
        df[c] = v(df) if callable(v) else v
    df.to_parquet(path, index=False)


TABLE_CASES = {
    "rank >= K": ("evals.parquet", {"rank": lambda d: d["rank"] + 4}, "column rank"),
    "rank wraps int32": ("evals.parquet", {"rank": lambda d: d["rank"].astype(np.int64) + 2**32},
                         "column rank"),
    "rank negative": ("evals.parquet", {"rank": lambda d: d["rank"] - 1}, "column rank"),
    "rank a string": ("evals.parquet", {"rank": lambda d: d["rank"].astype(str)}, "column 'rank'"),
    "rank a float": ("evals.parquet", {"rank": lambda d: d["rank"] + 0.5}, "column 'rank'"),
    "presentations < 0": ("evals.parquet", {"presentations": -1}, "column presentations"),
    "loss infinite": ("evals.parquet", {"loss": np.inf}, "column loss"),
    "accuracy 2": ("evals.parquet", {"accuracy": 2.0}, "column accuracy"),
    "position >= L": ("positions.parquet", {"position": lambda d: d["position"] + 2},
                      "column position"),
    "position 0": ("positions.parquet", {"position": 0}, "column position"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_hostile_tables_are_one_line(tmp_path, case):
    name, cols, field = TABLE_CASES[case]
    run = _run(tmp_path)
    _rewrite(run / name, **cols)
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(run, per_position=name == "positions.parquet")
    _one_line(info, name, field)


def test_a_nan_loss_is_read(tmp_path):
    """loss is finite or NaN (an evaluation that diverged is data, not damage)."""
    run = _run(tmp_path)
    _rewrite(run / "evals.parquet", loss=lambda d: d["loss"].where(d["rank"] != 0, np.nan))
    assert phenomjax.load_run(run)["loss"].isna().sum() > 0


def test_too_many_row_groups_refused_from_the_metadata(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = _run(tmp_path)
    df = pd.read_parquet(run / "evals.parquet")
    big = pd.concat([df] * (10_001 // len(df) + 1), ignore_index=True)
    pq.write_table(pa.Table.from_pandas(big), run / "evals.parquet", row_group_size=1)
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(run)
    _one_line(info, "evals.parquet", "row groups")


def test_a_huge_k_is_refused_before_make_bits(tmp_path, monkeypatch):
    """A valid K whose Bayes floor cannot fit is refused by its estimate (phenomjax.host), before
    make_bits allocates (before: it allocated without limit)."""
    import phenomjax.data

    run = _run(tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    _edit_manifest(run, json.dumps({**m, "K": 2**31 - 1, "L": 2**15}))

    def fail(*a, **k):
        raise AssertionError("make_bits ran")

    monkeypatch.setattr(phenomjax.data, "make_bits", fail)
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(run)
    _one_line(info, "manifest.json", "K, L", "GiB")


def _cli(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from phenomjax.cli import main; "
                           "sys.exit(main())", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)  # fmt: skip


def test_dev_zero_is_refused_by_type(tmp_path):
    """Before: `analyze --run /dev/zero` hashed forever."""
    done = _cli("analyze", "--run", "/dev/zero", "--cache-dir", str(tmp_path / "c"),
                "--figures-dir", str(tmp_path / "f"), timeout=120)  # fmt: skip
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "/dev/zero" in err[0], done.stderr[-2000:]


@pytest.mark.parametrize("where", ["run", "manifest.json", "evals.parquet", "positions.parquet"])
def test_a_fifo_is_refused_not_read(tmp_path, where):
    """Before: a FIFO blocked the reader (or the hash) until a writer came."""
    run = _run(tmp_path)
    target = tmp_path / "fifo.pkl" if where == "run" else run / where
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    code = (f"import phenomjax\nfrom phenomjax.analysis.cache import process_run\n"
            f"try:\n    process_run({str(target if where == 'run' else run)!r}, "
            f"cache_dir={str(tmp_path / 'c')!r})\n"
            "except phenomjax.errors.PhenomjaxError as e:\n    print('REFUSED', e)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.stdout.startswith("REFUSED") and "FIFO" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("target", ["/proc/self/status", "/dev/null"])
def test_system_files_are_refused(tmp_path, target):
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(target)
    _one_line(info, target)
    run = _run(tmp_path)
    (run / "manifest.json").unlink()
    (run / "manifest.json").symlink_to(target)
    with pytest.raises(PhenomjaxError) as info:
        phenomjax.load_run(run)
    _one_line(info, "manifest.json")


UNREADABLE = """
import os, sys
import phenomjax, phenomjax.bayes, phenomjax.data, phenomjax.host, pyarrow.parquet
from phenomjax.analysis.cache import process_run
if os.geteuid() == 0:  # root reads anything: drop to nobody (imports done, as nobody may not)
    os.setgid(65534); os.setuid(65534)
try:
    process_run(sys.argv[1], cache_dir=sys.argv[2])
except phenomjax.errors.PhenomjaxError as e:
    print("REFUSED", e)
"""


@pytest.mark.parametrize("what", ["folder", "manifest.json", "evals.parquet"])
def test_unreadable_files_and_folders_are_one_line(what):
    """chmod 000 on the run or one of its files: one line naming it (before: PermissionError)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o777)
        run = _run(Path(top))
        for p in [run, *run.rglob("*")]:
            os.chmod(p, 0o777 if p.is_dir() else 0o666)
        os.chmod(run if what == "folder" else run / what, 0)
        done = subprocess.run([sys.executable, "-c", UNREADABLE, str(run), f"{top}/cache"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    out = done.stdout.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("REFUSED"), done.stderr[-2000:]
    assert (run.name if what == "folder" else what) in out[0] and "permission" in out[0], out


CACHE_CASES = {
    "a list": "[]",
    "parts a string": '{"meta": {}, "parts": "abc"}',
    "digest a number": None,
    "meta K a string": None,
    "steps of strings": None,
}


@pytest.mark.parametrize("case", sorted(CACHE_CASES))
def test_malformed_cache_records_are_rebuilt(tmp_path, case):
    """A malformed record is one warning naming the record, and the entry is rebuilt (before:
    AttributeError or TypeError tracebacks, or a bad meta served)."""
    run = _run(tmp_path)
    cache = tmp_path / "cache"
    first = process_run(run, cache_dir=cache)
    (record,) = cache.glob("*.json")
    rec = json.loads(record.read_text())
    text = CACHE_CASES[case]
    if case == "digest a number":
        rec["parts"]["binned"] = 7
    elif case == "meta K a string":
        rec["meta"]["K"] = "4"
    elif case == "steps of strings":
        rec["meta"]["steps"] = ["a"]
    record.write_text(text if text is not None else json.dumps(rec))
    with pytest.warns(UserWarning, match=r"cache entry unreadable \(.*\.json"):
        again = process_run(run, cache_dir=cache)
    assert not again.cached and again.meta["steps"] == first.meta["steps"]


TOML_CASES = {
    "deep arrays": "a = " + "[" * 3000 + "]" * 3000,
    "deep inline tables": "a = " + "{b = " * 3000 + "1" + "}" * 3000,
    "deep dotted tables": ".".join(["a"] * 3000) + " = 1",
    "an integer of 5000 digits": "[data]\nK = 1" + "0" * 5000,
    "an integer beyond int64": "[data]\nx = [99999999999999999999]",
}


@pytest.mark.parametrize("case", sorted(TOML_CASES))
def test_hostile_toml_is_one_line(tmp_path, case):
    path = tmp_path / "c.toml"
    path.write_text(TOML_CASES[case])
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    _one_line(info, str(path))


def test_a_toml_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "c.toml")
    with pytest.raises(ConfigError) as info:
        read_toml(tmp_path / "c.toml")
    _one_line(info, "c.toml", "FIFO")


@pytest.mark.parametrize("value", ["[" * 3000 + "]" * 3000, "1" + "0" * 5000, "[" * 40 + "]" * 40,
                                   "99999999999999999999"])  # fmt: skip
def test_hostile_set_values_are_one_line(value):
    """--set values are TOML too: nesting and integers bounded (before: RecursionError and
    ValueError tracebacks, or an integer past int64 into an Any field)."""
    from phenomjax.config import apply_overrides

    with pytest.raises(ConfigError) as info:
        apply_overrides({}, [f"x.y={value}"])
    _one_line(info, "--set x.y")
