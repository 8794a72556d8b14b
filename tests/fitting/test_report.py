"""fitting.report: report.json round-trips field by field, every malformed field is one line
naming the file and the field, and the printed wording matches the noise reference used."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.errors import DataError
from phenomjax.fitting.members import Member
from phenomjax.fitting.report import FitReport, Refined, format_report, ratio_text

from .reports import synthetic_report


def test_report_round_trips(tmp_path):
    rep = synthetic_report()
    rep.save(tmp_path / "report.json")
    back = FitReport.load(tmp_path / "report.json")
    assert back.same_fit(rep) and back.best.member == rep.best.member
    assert back.settings.grid == rep.settings.grid and back.settings.cost == rep.settings.cost
    assert math.isnan(back.best.total_std) and back.any_member.best_lag_score == math.inf
    assert back.knobs[1].value == 8.0 and back.knobs[0].value == "adam"
    assert back.holdout.lag_out_of_sample[1].verdict == "never reaches"
    assert "outcome" not in json.loads((tmp_path / "report.json").read_text())


def _leaves(obj, where=""):
    """(dotted path, value) of every leaf of parsed JSON."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{where}.{k}" if where else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{where}[{i}]")
    else:
        yield where, obj


def _set(obj, path: str, value):
    keys = path.replace("]", "").replace("[", ".").split(".")
    for k in keys[:-1]:
        obj = obj[int(k)] if isinstance(obj, list) else obj[k]
    last = keys[-1]
    if isinstance(obj, list):
        obj[int(last)] = value
    else:
        obj[last] = value


def _kind(v) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else (
        type(v).__name__)  # fmt: skip


GOOD = json.loads(json.dumps(synthetic_report().to_json()))
# best.config is a free mapping; a knob row's value is `str | float` (a knob's value may be a
# name, e.g. an optimizer), so text there is no wrong type
LEAVES = [
    p
    for p, _ in _leaves(GOOD)
    if not p.startswith("best.config") and not re.fullmatch(r"knobs\[\d+\]\.value", p)
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(LEAVES), st.sampled_from([[1, 2], {"a": 1}, True, "text"]))
def test_a_wrong_type_names_the_file_and_the_field(tmp_path_factory, field, bad):
    data = json.loads(json.dumps(GOOD))
    old = dict(_leaves(data))[field]
    if old is None or _kind(old) == _kind(bad):
        return  # not a wrong type for this field
    _set(data, field, bad)
    path = tmp_path_factory.mktemp("r") / "report.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as e:
        FitReport.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: field ") and "\n" not in msg
    head = field.split("[")[0].split(".")[0]
    assert head in msg


def test_missing_unknown_and_unreadable_are_one_line(tmp_path):
    path = tmp_path / "report.json"
    for edit, want in ((lambda d: d["run"].pop("K"), "field run.K: missing"),
                       (lambda d: d["best"]["score"].update(extra=1),
                        "field best.score.extra: unknown"),
                       (lambda d: d["settings"]["grid"]["grid"].update(w="x"),
                        "field settings.grid.grid.w: expected a list")):  # fmt: skip
        data = json.loads(json.dumps(GOOD))
        edit(data)
        path.write_text(json.dumps(data))
        with pytest.raises(DataError, match=want):
            FitReport.load(path)
    for text, want in (("{", "not valid JSON"), ("[" * 100000, "nested deeper"),
                       ("\xff", "not UTF-8")):  # fmt: skip
        path.write_bytes(text.encode("latin1"))
        with pytest.raises(DataError, match=want):
            FitReport.load(path)
    path.write_text(json.dumps({**GOOD, "run": {**GOOD["run"], "K": 10**400}}))
    with pytest.raises(DataError, match="run.K|integer"):
        FitReport.load(path)
    os.mkfifo(tmp_path / "fifo.json")  # a FIFO is refused by type, never read (it would block)
    with pytest.raises(DataError):
        FitReport.load(tmp_path / "fifo.json")


def test_wording_follows_the_noise_reference():
    """One run: the spread over ranks, no range, never "seed band"; a group: the seed band and
    the lag's geometric mean [min, max] over its seeds; "never reaches", not z = 10."""
    one = format_report(synthetic_report(n_seeds=1))
    assert "noise reference: spread over a bin's ranks (one run)" in one
    assert "transformer (one run)" in one and "[1.40, 1.90]" not in one
    assert "never reaches" in one and "10.00" not in one
    assert "refit: one seed (no range)" in one
    group = format_report(synthetic_report(n_seeds=3))
    assert "seed band over 3 seeds" in group
    assert "geo. mean [min, max] over 3 seeds" in group and "1.60 [1.40, 1.90]" in group
    assert ratio_text(1.2, 1.2, 1.2, 1) == "1.20"
    for text in (one, group):
        assert "log-loss RMSE 0.0800" in text  # the one RMSE, where the best is stated
        assert "lag reproduced by the best: no" in text and "(w > 1): yes" in text


def test_a_report_from_before_the_refinement_fields_reads_as_it_ran(tmp_path):
    """A report.json written before refine_method, refine_patience and the refinement's trace
    and method existed loads, as what ran then: Adam, no early stopping, no trace; a rerun of
    the fit is then not the same fit as one with today's defaults (line search)."""
    rep = synthetic_report()
    grid = dataclasses.replace(rep.settings.grid.grid, refine_method="line")
    data = json.loads(json.dumps(rep.to_json()))
    for k in ("refine_method", "refine_patience"):
        data["settings"]["grid"]["grid"].pop(k)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    old = FitReport.load(path)
    assert old.settings.grid.grid.refine_method == "adam"
    assert old.settings.grid.grid.refine_patience == 0
    assert grid.refine_method != old.settings.grid.grid.refine_method
    refined = Refined(Member("expected", 3, 0, "expected", "adam", 0.9, 0.999, 0.0, "full", 8,
                             8, 1e-3, 0.1), "expected", ("lr", "scale", "shift"),
                      (1e-3, 0.1, 1.0), (2e-3, 0.05, 1.2), 1.5, 0.7, 0.03, 10,
                      trace=(1.5, 0.7), method="line")  # fmt: skip
    dataclasses.replace(rep, refined=refined).save(path)
    data = json.loads(path.read_text())
    assert data["refined"]["method"] == "line" and data["refined"]["trace"] == [1.5, 0.7]
    for k in ("trace", "method"):
        data["refined"].pop(k)
    path.write_text(json.dumps(data))
    back = FitReport.load(path).refined
    assert back.method == "adam" and back.trace == () and back.steps == 10
