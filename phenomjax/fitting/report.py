"""The report of a fit (report.json): a typed, frozen `FitReport` read back by attribute.

`FitReport.save(path)` writes it (atomically); `FitReport.load(path)` reads it back and checks
it field by field against the types below, so a truncated, hand-edited or older report is one
line naming the file and the field. `format_report(report)` is the printed text.

Words the report uses, one meaning each:
- z (per bin): the bin's log-loss RMSE over its matched points in units of sigma, the noise
  reference: the seed band when the fit is of a seed group, else the spread over a bin's ranks
  (one run), which the report then says;
- total: the root mean of band_score^2 and lag_score^2; it ranks the members;
- log-loss RMSE: the pooled RMSE of log loss over every matched (bin, evaluation) point of the
  best member at the run's seed and its fitted shift: the one RMSE shown everywhere;
- lag across seeds: the geometric mean with [min, max] over seeds; one run gives no range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..runs import atomic_write_json, jsonable
from ..runs.validate import load_json
from .grid import FitGridConfig, GridCost
from .holdout import Holdout, Intervals
from .members import REFINED, Member
from .scoring import MemberScore
from .verdict import AnyMember, BinVerdict, KnobRow, Reproduction

_LOCAL = {"stored": False}  # metadata of fields that are not written to report.json


@dataclasses.dataclass(frozen=True)
class RunPart:
    """The run or seed group that was fitted."""

    inputs: tuple[str, ...]  # as given (a group folder is one input)
    runs: tuple[str, ...]  # every run read
    kind: str  # transformer, phenom or legacy
    label: str | None
    status: str | None  # a run still "running" is fitted up to its last evaluation
    K: int
    L: int
    alpha: float
    batch: int
    steps: int
    seed: int
    bits: str  # whose bits the members trained on, in words
    fresh_bits: bool  # a legacy log: fresh bits with the same K, L, alpha
    noise: str  # the noise reference, in words
    n_seeds: int


@dataclasses.dataclass(frozen=True)
class Settings:
    grid: FitGridConfig
    edges: tuple[int, ...]  # the rank edges the members were ranked on
    holdout: str | None
    cost: GridCost
    metric: str  # how members are ranked, in words


@dataclasses.dataclass(frozen=True)
class SeedScore:
    """The best member's scores at one seed (the run's seed first, then the refit's)."""

    seed: int
    rmse: float
    band_score: float
    lag_score: float
    total: float
    shift: float


@dataclasses.dataclass(frozen=True)
class Best:
    member: Member
    score: MemberScore  # at the run's seed: what ranked it
    per_seed: tuple[SeedScore, ...]
    total_mean: float  # over per_seed; _std NaN with one seed, _lo / _hi the min and max
    total_std: float
    total_lo: float
    total_hi: float
    total_n: int
    run: str  # the best as a phenom run directory (best/)
    config: dict  # its config, as best/manifest.json records it


@dataclasses.dataclass(frozen=True)
class Ranked:
    """One of the top members of the ranking."""

    member: Member
    total: float
    band_score: float
    lag_score: float
    rmse: float
    shift: float
    diverged: bool


@dataclasses.dataclass(frozen=True)
class Timings:
    sweep_s: float
    refit_s: float
    total_s: float
    per_mode: tuple[tuple[str, float], ...]  # seconds from the sweeps' start to each mode's
    # end, its scoring included (the modes share the workers, side by side)
    refine_s: float = 0.0  # the gradient refinement (fitting.refine)


@dataclasses.dataclass(frozen=True)
class Rung:
    """One rung of a sweep's successive halving (fitting.halving)."""

    sweep: str  # the sweep folder's name
    step: int  # where its members were scored on their curve prefix
    members: int  # still running at that step
    dropped: int  # stopped there


@dataclasses.dataclass(frozen=True)
class Refined:
    """The gradient refinement of the best member, in its mode (fitting.refine)."""

    member: Member  # where it started
    mode: str  # the mode it was refined in
    knobs: tuple[str, ...]  # lr, scale, shift, then the variant's (readout_scale, forget)
    before: tuple[float, ...]  # the knobs' values at the start (the member's, its shift)
    after: tuple[float, ...]  # at the refined optimum
    objective_before: float  # the surrogate of the total (fitting.refine: band and lag)
    objective_after: float
    grad_norm: float  # |d objective / d log knobs| at the refined optimum
    steps: int  # steps taken
    total: float | None = None  # the refined optimum's score total, trained as a member
    start_total: float | None = None  # its starting member's
    # the surrogate at the start and after each step (a report from before: none recorded)
    trace: tuple[float, ...] = dataclasses.field(default=(), metadata={"absent": ()})
    # "line" (steepest descent, a line search) or "adam" (fitting.refine); before: adam
    method: str = dataclasses.field(default="line", metadata={"absent": "adam"})


@dataclasses.dataclass(frozen=True)
class FitReport:
    version: str
    run: RunPart
    settings: Settings
    best: Best
    verdicts: tuple[BinVerdict, ...]
    reproduction: Reproduction  # of the best member
    any_member: AnyMember
    knobs: tuple[KnobRow, ...]
    sign_knob: str  # which swept knob sets the sign of the lag, in words
    top: tuple[Ranked, ...]
    intervals: Intervals | None  # seed groups only
    holdout: Holdout | None
    timings: Timings
    halving: tuple[Rung, ...]  # every sweep's rungs; () for the exhaustive grid
    on_edge: tuple[str, ...]  # the grid edges the best member sits on, in words
    refined: Refined | None  # None: no member with a finite total, or grid.refine_steps = 0
    members_sha256: str  # of members.csv, written before this report
    outcome: str = dataclasses.field(default="fitted", compare=False, metadata=_LOCAL)

    @property
    def lag(self):
        """The best's lag rows (the transformer reaches them in every seed)."""
        return self.best.score.lag

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("stored") is False:
                d.pop(f.name)
        return jsonable(d)

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_json())

    def same_fit(self, other: FitReport) -> bool:
        """The same fit, timings and digest aside (as text: NaN equals NaN)."""
        a, b = (
            {k: v for k, v in r.to_json().items() if k not in ("timings", "members_sha256")}
            for r in (self, other)
        )
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> FitReport:
        """report.json read back and checked field by field (one-line DataError otherwise)."""
        path = Path(path)
        data = load_json(path, DataError)  # a regular file of bounded JSON, else one line
        return _build(cls, data, "", path)


def _fail(path: Path, where: str, want: str, value: Any) -> DataError:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return DataError(f"{path}: field {where or '(top)'}: expected {want}, got {text} "
                     "(rerun `phenomjax fit` to rewrite it)")  # fmt: skip


def _build(tp: Any, value: Any, where: str, path: Path) -> Any:
    """`value` (parsed JSON) as type `tp`, checked; `where` names the field in errors. Types
    only: the grid's values were validated when the fit ran (validating them again would
    import JAX, which reading a report, as `compare` does, never needs)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return _build(a, value, where, path)
            except DataError:
                continue
        raise _fail(path, where, " or ".join(getattr(a, "__name__", str(a)) for a in args), value)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise _fail(path, where, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]", path) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(path, where, f"a list of {len(args)}", value)
        return tuple(_build(a, v, f"{where}[{i}]", path) for i, (a, v) in
                     enumerate(zip(args, value, strict=True)))  # fmt: skip
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, where, path)
    return _scalar(tp, value, where, path)


def _build_dataclass(tp: type, value: Any, where: str, path: Path) -> Any:
    if not isinstance(value, dict):
        raise _fail(path, where, "an object", value)
    hints = typing.get_type_hints(tp)
    fields = [f for f in dataclasses.fields(tp) if f.metadata.get("stored") is not False]
    names = {f.name for f in fields}
    extra = sorted(set(value) - names)
    if extra:
        raise DataError(f"{path}: field {where + '.' if where else ''}{extra[0]}: unknown")
    kw = {}
    for f in fields:
        sub = f"{where}.{f.name}" if where else f.name
        if f.name not in value and "absent" in f.metadata:
            kw[f.name] = f.metadata["absent"]  # a field added since: what older reports did
            continue
        if f.name not in value:
            raise DataError(f"{path}: field {sub}: missing (rerun `phenomjax fit` to rewrite it)")
        kw[f.name] = _build(hints[f.name], value[f.name], sub, path)
    return tp(**kw)


def _scalar(tp: Any, value: Any, where: str, path: Path) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, where, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**63:
            raise _fail(path, where, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, where, "a number", value)
        try:
            return float(value)
        except OverflowError:
            raise _fail(path, where, "a number within the float range", value) from None
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, where, "a string", value)
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise _fail(path, where, "an object", value)
        return value
    raise _fail(path, where, str(tp), value)


# -- the printed report -----------------------------------------------------------------------


def _num(x: float, fmt: str = ".2f", none: str = "-") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and math.isfinite(x) else none


def _bin(lo: int, hi: int) -> str:
    return f"{lo}-{hi - 1}"


def ratio_text(value: float, lo: float, hi: float, n: int) -> str:
    """The transformer's lag ratio: one run gives its value, a group its geometric mean with
    [min, max] over the seeds (n of them) that reach the level."""
    if n <= 1:
        return _num(value)
    return f"{_num(value)} [{_num(lo)}, {_num(hi)}]"


def ratio_header(n_seeds: int) -> str:
    return "transformer (one run)" if n_seeds <= 1 else (
        f"transformer, geo. mean [min, max] over {n_seeds} seeds")  # fmt: skip


def _header(r: FitReport) -> list[str]:
    run, c = r.run, r.settings.cost
    more = f" (+{len(run.runs) - 1} seeds)" if len(run.runs) > 1 else ""
    lines = [
        f"fit of {run.inputs[0] if len(run.inputs) == 1 else run.runs[0]}{more} ({run.kind}, "
        f"K={run.K}, L={run.L}, batch {run.batch}, {run.steps} steps; {c.members} members in "
        f"{c.groups} groups, {c.curve_rows:.3g} curve rows)",
        f"  data: {run.bits}",
    ]
    if run.status not in (None, "complete"):
        lines.append(f"  run status: {run.status} (fitted up to its last evaluation)")
    return lines + [
        f"  noise reference: {run.noise}",
        "  z = a bin's log-loss RMSE / its noise sigma; total = root mean of band^2 and lag^2 "
        "(ranks the members); rmse = pooled log-loss RMSE",
    ]


def _top_lines(r: FitReport) -> list[str]:
    lines = [f"    {'mode':<11}{'opt':<9}{'wd':>5}{'param':>9}{'w':>3}{'d':>4}{'lr':>9}"
             f"{'scale':>7}{'total':>7}{'band':>7}{'lag':>7}{'rmse':>7}{'shift':>6}"]  # fmt: skip
    for t in r.top[:5]:
        m = t.member
        lines.append(
            f"    {m.mode:<11}{m.optimizer:<9}{m.weight_decay:>5.2g}{m.param:>9}{m.w:>3}"
            f"{m.d:>4}{m.lr:>9.2g}{m.scale:>7.2g}{_num(t.total):>7}{_num(t.band_score):>7}"
            f"{_num(t.lag_score):>7}{_num(t.rmse, '.3f'):>7}{_num(t.shift):>6}"
        )
    return lines


def best_line(r: FitReport) -> str:
    """The best member's settings and scores in one line (the demo prints it too)."""
    m, s = r.best.member, r.best.score
    flag = " [w = 1 memorizes nothing: flagged]" if not m.can_memorize else ""
    bound = " (AT ITS BOUND: a warning, not a result)" if s.shift_at_bound else ""
    return (f"{m.mode} {m.optimizer} (b1 {m.b1:g}, b2 {m.b2:g}, wd {m.weight_decay:g}) {m.param} "
            f"w={m.w} d={m.d}{m.variant_text} lr={m.lr:g} scale={m.scale:g}{flag}; total "
            f"{_num(s.total)} (band "
            f"{_num(s.band_score)}, lag {_num(s.lag_score)}), log-loss RMSE {_num(s.rmse, '.4f')}, "
            f"presentations x {_num(s.shift)}{bound}")  # fmt: skip


def _seed_line(r: FitReport) -> str:
    b = r.best
    if b.total_n <= 1:
        return "  refit: one seed (no range)"
    return (f"  total over {b.total_n} seeds (the run's and the refit's): mean "
            f"{_num(b.total_mean)} [{_num(b.total_lo)}, {_num(b.total_hi)}]")  # fmt: skip


def verdict_lines(r: FitReport, indent: str = "    ") -> list[str]:
    """Per rank bin: z, within the band or not, and the lag in words."""
    lines = [f"{indent}{'rank bin':<14}{'points':>7}{'logloss':>9}{'sigma':>7}{'z':>9}  "
             "band    lag"]  # fmt: skip
    pts = {(b.rank_lo, b.rank_hi): b for b in r.best.score.bins}
    for v in r.verdicts:
        b = pts[(v.rank_lo, v.rank_hi)]
        band = "within" if v.within_band else "OUT"
        lines.append(f"{indent}{_bin(v.rank_lo, v.rank_hi):<14}{b.n_points:>7}"
                     f"{_num(b.log_loss_rmse, '.4f'):>9}{_num(b.sigma, '.3f'):>7}"
                     f"{_num(v.z, '.2f', 'no points'):>9}  {band:<8}{v.lag}")  # fmt: skip
    return lines


def lag_lines(r: FitReport, indent: str = "    ") -> list[str]:
    """Per (bin, level) the transformer reaches in some seed: its ratio, the fit's, z_lag."""
    rows = [(v, x) for v in r.verdicts for x in v.levels]
    if not rows:
        return [f"{indent}lag: no bin below the top one reaches a level in any seed"]
    head = ratio_header(r.run.n_seeds)
    ref = [ratio_text(x.ratio_ref, x.ratio_lo, x.ratio_hi, x.n_seeds) for _, x in rows]
    w = max(len(head), *map(len, ref)) + 2
    lines = [f"{indent}{'lag ratio':<14}{'level':>6}  {head:<{w}}{'fit':>14}{'z_lag':>7}  verdict"]
    for (v, x), t in zip(rows, ref, strict=True):
        fit = _num(x.ratio_fit) if x.compared and math.isfinite(x.ratio_fit) else (
            "never reaches" if x.compared else "-")  # fmt: skip
        lines.append(f"{indent}{_bin(v.rank_lo, v.rank_hi):<14}{x.level:>6.2f}  {t:<{w}}"
                     f"{fit:>14}{_num(x.z_lag, '.2f'):>7}  {x.status}")  # fmt: skip
    return lines


def reproduction_lines(r: FitReport, indent: str = "  ") -> list[str]:
    """Whether the best reproduces the lag, each condition stated; and whether any member does."""
    p, a = r.reproduction, r.any_member
    rows = [x for v in r.verdicts for x in v.levels if x.compared]

    def which(bad) -> str:
        hits = [f"{_bin(v.rank_lo, v.rank_hi)} at {x.level:g}" for v in r.verdicts
                for x in v.levels if x.compared and bad(x)]  # fmt: skip
        return f" ({', '.join(hits)})" if hits else ""

    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    return [
        f"{indent}lag reproduced by the best: {yes(p.reproduced)}",
        f"{indent}  top bin within its band: {yes(p.top_in_band)} (z {_num(p.top_z)})",
        f"{indent}  every level the transformer reaches in every seed compared: "
        f"{yes(p.levels_compared and bool(rows))}"
        + (which(lambda x: not math.isfinite(x.z_lag)) if rows else " (none to compare)"),
        f"{indent}  right sign at each compared level: {yes(p.right_sign)}"
        + which(lambda x: x.status == "wrong sign"),
        f"{indent}  ratio within the band at each compared level: {yes(p.size_within)}"
        + which(lambda x: x.status == "too far"),
        f"{indent}  a member that can memorize (w > 1): {yes(p.can_memorize)}",
        f"{indent}lag reproduced by {a.reproducing} of {a.members} live members "
        f"({a.flagged} with w = 1, which never count)",
        f"{indent}knob that sets the sign of the lag: {r.sign_knob}",
    ]


def _holdout_lines(r: FitReport) -> list[str]:
    lines = []
    iv = r.intervals
    if iv is not None and iv.per_seed:
        same = "same setting" if iv.same_setting else "settings differ between seeds"
        spans = [(k, getattr(iv, k)) for k in ("lr", "scale", "shift")]
        lines.append(
            f"  best member per transformer seed ({len(iv.per_seed)} seeds, {same}): "
            + ", ".join(f"{k} [{v[0]:.3g}, {v[1]:.3g}]" for k, v in spans if v)
        )
    h = r.holdout
    if h is not None:
        lines += [
            f"  held out ({h.split}): {h.description}; shift fixed at {h.shift:.2f}",
            f"    {'rank bin':<14}{'points':>7}{'logloss':>9}{'sigma':>7}{'z':>9}",
        ]
        for p in h.out_of_sample:
            lines.append(f"    {_bin(p.rank_lo, p.rank_hi):<14}{p.n_points:>7}"
                         f"{_num(p.log_loss_rmse, '.4f'):>9}{_num(p.sigma, '.3f'):>7}"
                         f"{_num(p.z, '.2f', 'no points'):>9}")  # fmt: skip
        for x in h.lag_out_of_sample:
            lines.append(
                f"    lag {_bin(x.rank_lo, x.rank_hi)} at {x.level:.2f}: transformer "
                f"{ratio_text(x.ratio_ref, x.ratio_lo, x.ratio_hi, x.n_seeds)}, fit "
                f"{_num(x.ratio_fit, '.2f', 'never reaches')}, {x.verdict} (held out)"
            )
    return lines


def halving_lines(r: FitReport) -> list[str]:
    """Per sweep, its successive halving's rungs: members scored and dropped at each."""
    if not r.halving:
        return ["  halving: none (every member ran to the end)"]
    per: dict[str, list[Rung]] = {}
    for g in r.halving:
        per.setdefault(g.sweep, []).append(g)
    return ["  halving (members dropped at each rung, of those still running):"] + [
        f"    {name}: " + ", ".join(f"step {g.step}: {g.dropped} of {g.members}" for g in rungs)
        for name, rungs in per.items()
    ]


NOT_REFINED = "not run: no member with a finite total, or grid.refine_steps = 0"


def edge_line(edge: str) -> str:
    """One grid edge the best member sits on, in words (the text report and the page)."""
    return f"best on a grid edge: {edge} (the refinement may go past it)"


METHOD_NAMES = {"line": "line-search", "adam": "Adam"}  # Refined.method as the text says it


def refined_lines(r: FitReport) -> list[str]:
    """The best's grid edges, and the refined optimum against its start."""
    lines = [f"  {edge_line(e)}" for e in r.on_edge]
    f = r.refined
    if f is None:
        return lines + [f"  refined: {NOT_REFINED}"]
    m = f.member
    pairs = ", ".join(f"{k} {a:.3g} -> {b:.3g}" for k, a, b in zip(f.knobs, f.before, f.after,
                                                                   strict=True))  # fmt: skip
    return lines + [
        f"  refined ({f.mode} {m.optimizer} w={m.w} d={m.d}, {f.steps} "
        f"{METHOD_NAMES[f.method]} steps on the log knobs): {pairs}; surrogate "
        f"{_num(f.objective_before, '.3f')} -> "
        f"{_num(f.objective_after, '.3f')}, gradient norm {_num(f.grad_norm, '.3g')}",
        *([f"    surrogate per step: {' '.join(_num(v, '.4f') for v in f.trace)}"]
          if f.trace else []),
        *([] if f.total is None else [
            f"    scored as a member ({REFINED}/): total {_num(f.start_total, '.3f')} -> "
            f"{_num(f.total, '.3f')}"]),
    ]  # fmt: skip


def format_report(r: FitReport) -> str:
    """The printed report: the run, the top members, the best, per-bin verdicts, the lag table,
    whether the lag is reproduced (each condition), intervals and the held-out part."""
    t = r.timings
    modes = ", ".join(f"{m} done at {s:.1f} s" for m, s in t.per_mode)
    lines = [
        *_header(r),
        "  top members:",
        *_top_lines(r),
        f"  best: {best_line(r)}",
        _seed_line(r),
        *verdict_lines(r),
        *lag_lines(r),
        *reproduction_lines(r),
        *_holdout_lines(r),
        *halving_lines(r),
        *refined_lines(r),
        f"  wall time {t.total_s:.1f} s (sweeps {t.sweep_s:.1f} s: {modes}; refit "
        f"{t.refit_s:.1f} s, refine {t.refine_s:.1f} s); best run "
        + r.best.run
        + ("; reused (members.csv digest checked)" if r.outcome == "reused" else ""),
    ]
    return "\n".join(lines)
