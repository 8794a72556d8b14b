"""A complete FitReport built without a fit (no JAX): for the report's own tests, and for tests
that need a fit folder (`write_fit_folder`) without running one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from phenomjax.fitting.grid import FitGridConfig, grid_cost
from phenomjax.fitting.holdout import Holdout, Intervals, SeedBest
from phenomjax.fitting.members import Member
from phenomjax.fitting.report import Best, FitReport, Ranked, RunPart, SeedScore, Settings, Timings
from phenomjax.fitting.scoring import BinScore, LagRow, MemberScore, noise_text
from phenomjax.fitting.verdict import AnyMember, BinVerdict, KnobRow, LevelCheck, Reproduction

NAN = float("nan")


def member(**kw) -> Member:
    base = dict(sweep="stochastic", member=2, seed=3, mode="stochastic", optimizer="adam",
                b1=0.9, b2=0.999, weight_decay=0.0, param="full", w=8, d=8, lr=1e-3, scale=0.1,
                forget=0.0, readout_scale=0.0)  # fmt: skip
    return Member(**{**base, **kw})


def synthetic_report(*, inputs=("s3",), runs=None, K=16, L=8, alpha=1.0, edges=(0, 5, 10, 16),
                     shift=1.0, n_seeds=1, groups: bool = True) -> FitReport:  # fmt: skip
    """A report with every part filled in (a lag row that never reaches, NaN and inf values,
    intervals and a holdout) whose run fields are the given ones."""
    pairs = zip(edges[:-1], edges[1:], strict=False)
    bins = tuple(BinScore(lo, hi, 5, 0.05 * (i + 1), 0.02, 0.01, 0.02, 2.5 * (i + 1))
                 for i, (lo, hi) in enumerate(pairs))  # fmt: skip
    lag = (LagRow(0.75, edges[1], edges[2], 1.6, 1.4, 1.9, n_seeds, 0.1, 1.5, 0.8, "agrees"),
           LagRow(0.5, edges[1], edges[2], 1.9, 1.9, 1.9, n_seeds, 0.1, NAN, NAN,
                  "never reaches"))  # fmt: skip
    score = MemberScore(0.08, 2.0, 7.7, 5.66, shift, False, 0.09, 14, 0.1, bins, lag,
                        ((edges[0], 1.0), (edges[1], 1.5)))  # fmt: skip
    m = member()
    checks = tuple(LevelCheck(r.level, True, r.verdict, r.ratio_ref, r.ratio_lo, r.ratio_hi,
                              r.n_seeds, r.ratio_fit, r.z_lag) for r in lag)  # fmt: skip
    verdicts = (
        BinVerdict(edges[0], edges[1], 2.5, False, True, "top bin (reference)", ()),
        BinVerdict(edges[1], edges[2], 5.0, False, False, "never reaches 0.5", checks),
    )
    cfg = FitGridConfig()
    inter = Intervals((SeedBest("s3", 5.0, 0.9, m),), (1e-3, 1e-3), (0.1, 0.1), (0.9, 0.9), True)
    hold = Holdout("steps", "the later half", tuple(edges), tuple(edges), shift, bins, bins, lag)
    return FitReport(
        version="test",
        run=RunPart(
            tuple(inputs),
            tuple(runs or inputs),
            "transformer",
            "2 heads",
            "complete",
            K,
            L,
            alpha,
            8,
            64,
            3,
            "the run's own bits",
            False,
            noise_text(n_seeds),
            n_seeds,
        ),  # fmt: skip
        settings=Settings(cfg, tuple(edges), None, grid_cost(cfg, K), "by total"),
        best=Best(
            m,
            score,
            (SeedScore(3, 0.08, 2.0, 7.7, 5.66, shift),),
            5.66,
            NAN,
            5.66,
            5.66,
            1,
            "best",
            {"model": {"w": 8}},
        ),  # fmt: skip
        verdicts=verdicts,
        reproduction=Reproduction(False, 2.5, 2, False, True, True, True, False),
        any_member=AnyMember(6, 0, 3, float("inf"), m),
        knobs=(
            KnobRow("optimizer", "adam", 4, 4, 0, 0.7, "5"),
            KnobRow("w", 8.0, 3, 3, 0, 0.6, "5"),
        ),  # fmt: skip
        sign_knob="none: no swept knob flips the sign of the lag",
        top=(Ranked(m, 5.66, 2.0, 7.7, 0.08, shift, False),),
        intervals=inter if groups else None,
        holdout=hold if groups else None,
        timings=Timings(1.0, 2.0, 3.5, (("stochastic", 1.0),)),
        halving=(),
        on_edge=(),
        refined=None,
        members_sha256="0" * 64,
    )


def write_fit_folder(fit: Path, report: FitReport) -> Path:
    """report.json of `report` in `fit` (best/ is the caller's), best.run pointing there."""
    fit.mkdir(parents=True, exist_ok=True)
    best = dataclasses.replace(report.best, run=str(fit / "best"))
    report = dataclasses.replace(report, best=best)
    report.save(fit / "report.json")
    return fit
