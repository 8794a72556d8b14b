"""Score a phenomenological member against a transformer run or seed group (docs/design.md §6).

One function scores a member, `score_member`, and returns a `MemberScore`; the sweep ranking,
the best member's report, the held-out prediction and the per-seed intervals all read it.

**Curves.** At the empirical bin's mean presentations n, the member's binned loss L_fit is read
at n / s (linear in log presentations, only inside the range its evaluations cover), s > 0
being a presentation-scale factor fitted per member over a dense log grid
(`ScoreConfig.shift_points` factors in [1/shift_range, shift_range], 1 always on it), among the
factors that keep at least `min_overlap` of the points matched at s = 1. Both limits are tight on
purpose: s trades off against the learning rate, and a wide search lets a slow member slide the
late, memorizing part of the frequent bins out of the matched range. Points with presentations
<= 0 are left out (log axes).

- `rmse`, **the** RMSE of a fit: the root mean square of log L_fit(n / s) - log L_emp(n) pooled
  over every matched (bin, evaluation) point, at the member's fitted s. It is secondary; the
  reports, the demo and the overlay all show this one.
- per bin, z = RMSE of (log L_fit - log L_ref) / sigma over its matched points, sigma being the
  noise reference of the bin (`Reference`); `band_score` = root mean z^2 over bins (each bin
  once), and s minimises it.

**Lag** (analysis.lag): per rank bin and level, the ratio of the bin's median presentations to
the top bin's. Per (bin, level) that the transformer reaches in every seed, z_lag = |log r_fit -
mean log r_ref| / sd (sd: the seed std of the log ratio; one run: a bootstrap over the bin's
ranks; floored at `lag_floor`). A fit bin that never reaches such a level counts `censored_z`
in `lag_score` (root mean z_lag^2) and is reported as "never reaches". `total` = root mean of
band_score^2 and lag_score^2 ranks the members.

`lag_verdict` is the one place that decides whether a lag agrees: "never reaches", "wrong sign"
(only when the transformer's whole seed range lies on the other side of 1 from the fit's ratio),
"too far" (z_lag > within) or "agrees".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..analysis import groups
from ..analysis.binning import binned
from ..analysis.lag import bin_lag, rank_crossings
from ..errors import ConfigError, DataError

LAG_KEYS = ["level", "rank_lo", "rank_hi"]


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    shift: bool = True  # fit a presentation-scale factor s per member (else s = 1)
    shift_range: float = 3.0  # s is searched in [1 / shift_range, shift_range]
    shift_points: int = 111  # grid size (odd: s = 1 is on it); 111 over [1/3, 3] = 2% steps
    min_overlap: float = 0.9  # a shift must keep this share of the points matched at s = 1
    levels: tuple[float, ...] = (0.75, 0.5, 0.25)  # normalized excess loss levels of the lag
    within: float = 2.0  # a bin is within its band when its z <= within (lag: z_lag too)
    noise_floor: float = 0.02  # least sigma of log loss per bin (one-run fallback especially)
    lag_floor: float = 0.1  # least sd of a log lag ratio
    censored_z: float = 10.0  # ranking only: z_lag of a fit bin that never reaches a level
    bootstrap: int = 200  # one-run fallback: resamples of ranks for the lag ratio's sd

    def validate(self) -> None:
        for f in ("shift_range", "within", "lag_floor", "censored_z"):
            if not getattr(self, f) > 0:
                raise ConfigError(f"score.{f}: expected > 0, got {getattr(self, f)}")
        if self.shift_range < 1:
            raise ConfigError(f"score.shift_range: expected >= 1, got {self.shift_range}")
        if not all(0 < v < 1 for v in self.levels) or not self.levels:
            raise ConfigError(f"score.levels: expected values in (0, 1), got {list(self.levels)}")

    def grid(self) -> np.ndarray:
        """log(s) values searched; always contains 0."""
        if not self.shift:
            return np.zeros(1)
        n = self.shift_points | 1  # odd, so that 0 is a grid point
        return np.linspace(-np.log(self.shift_range), np.log(self.shift_range), n)


@dataclasses.dataclass(frozen=True)
class BinScore:
    """One rank bin of a member against the reference, at the member's shift."""

    rank_lo: int
    rank_hi: int
    n_points: int  # matched evaluations (0: the bin's curves do not overlap)
    log_loss_rmse: float
    accuracy_rmse: float
    mean_residual: float  # mean of log L_fit - log L_ref (positive: the fit is above)
    sigma: float = float("nan")  # the bin's noise reference of log loss
    z: float = float("nan")  # log_loss_rmse / sigma


@dataclasses.dataclass(frozen=True)
class CurveScore:
    """`score_curves`' result: pooled and per-bin errors at the fitted shift."""

    rmse: float
    shift: float
    accuracy_rmse: float
    n_points: int
    rmse_unshifted: float  # the RMSE at s = 1
    band_score: float  # NaN without a noise reference
    shift_at_bound: bool
    bins: tuple[BinScore, ...]


@dataclasses.dataclass(frozen=True)
class LagRow:
    """One (bin, level) that the transformer reaches in every seed, against the fit."""

    level: float
    rank_lo: int
    rank_hi: int
    ratio_ref: float  # the transformer's lag ratio: geometric mean over seeds (one run: its own)
    ratio_lo: float  # min over seeds
    ratio_hi: float  # max over seeds
    n_seeds: int
    log_ratio_sd: float  # the unit of z_lag
    ratio_fit: float  # NaN: the fit bin never reaches the level
    z_lag: float  # NaN when there is no ratio to compare; capped at censored_z
    verdict: str  # lag_verdict: agrees, never reaches, no ratio, wrong sign, too far

    @property
    def compared(self) -> bool:
        """Whether the fit has a ratio here to compare (it reaches the level, after 0)."""
        return bool(np.isfinite(self.ratio_fit) and self.ratio_fit > 0)


@dataclasses.dataclass(frozen=True)
class MemberScore:
    """Everything known about one member against one reference (module docstring)."""

    rmse: float  # the pooled log-loss RMSE at the fitted shift (secondary)
    band_score: float
    lag_score: float  # NaN when the reference has no (bin, level) to compare
    total: float  # what ranks the members
    shift: float
    shift_at_bound: bool
    accuracy_rmse: float
    n_points: int
    rmse_unshifted: float
    bins: tuple[BinScore, ...]
    lag: tuple[LagRow, ...]
    mid_lag: tuple[tuple[int, float], ...]  # (rank_lo, the member's ratio at the middle level)


def _curves(b: pd.DataFrame) -> dict[tuple[int, int], tuple[np.ndarray, ...]]:
    """(lo, hi) -> (log presentations increasing, log loss, accuracy), positive x only."""
    out = {}
    for (lo, hi), g in b.groupby(["rank_lo", "rank_hi"], sort=True):
        g = g[(g["presentations"] > 0) & (g["loss"] > 0)].sort_values("step")
        x = np.log(g["presentations"].to_numpy(np.float64))
        if len(x) == 0:
            continue
        # counts can repeat between evaluations (stochastic mode): keep the latest value
        _, last = np.unique(x[::-1], return_index=True)
        idx = np.sort(len(x) - 1 - last)
        out[(int(lo), int(hi))] = (
            x[idx],
            np.log(g["loss"].to_numpy(np.float64)[idx]),
            g["accuracy"].to_numpy(np.float64)[idx],
        )
    return out


def _bin_rows(per: list, j: int, sigma: dict | None) -> tuple[BinScore, ...]:
    rows = []
    for (lo, hi), inside, dy, da in per:
        n = int(inside[j].sum())
        rmse = float(np.sqrt((dy[j] ** 2).sum() / n)) if n else float("nan")
        s = float(sigma.get((lo, hi), np.nan)) if sigma is not None else float("nan")
        rows.append(BinScore(
            rank_lo=lo, rank_hi=hi, n_points=n, log_loss_rmse=rmse,
            accuracy_rmse=float(np.sqrt((da[j] ** 2).sum() / n)) if n else float("nan"),
            mean_residual=float(dy[j].sum() / n) if n else float("nan"),
            sigma=s, z=rmse / s if sigma is not None else float("nan"),
        ))  # fmt: skip
    return tuple(rows)


def score_curves(
    emp: pd.DataFrame,
    fit: pd.DataFrame,
    cfg: ScoreConfig = ScoreConfig(),
    sigma: dict[tuple[int, int], float] | None = None,
) -> CurveScore:
    """Score one fitted binned table against the empirical one (see the module docstring).

    Without `sigma` the shift minimises the pooled RMSE; with it (per-bin noise of log loss)
    it minimises band_score, the root mean over bins of (per-bin RMSE / sigma)^2."""
    E, F = _curves(emp), _curves(fit)
    common = sorted(set(E) & set(F))
    if not common:
        raise DataError("scoring: the empirical and fitted curves share no rank bin")
    grid = cfg.grid()
    S = len(grid)
    sse, sae, cnt = np.zeros(S), np.zeros(S), np.zeros(S)
    zsum, nb = np.zeros(S), np.zeros(S)
    per = []
    for key in common:
        xe, ye, ae = E[key]
        xm, ym, am = F[key]
        xq = xe[None, :] - grid[:, None]  # model read at n / s
        inside = (xq >= xm[0] - 1e-12) & (xq <= xm[-1] + 1e-12)
        dy = np.where(inside, np.interp(xq, xm, ym) - ye[None, :], 0.0)
        da = np.where(inside, np.interp(xq, xm, am) - ae[None, :], 0.0)
        sse += (dy**2).sum(1)
        sae += (da**2).sum(1)
        cnt += inside.sum(1)
        if sigma is not None and key in sigma:
            n_in = inside.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                zb = (dy**2).sum(1) / np.maximum(n_in, 1) / sigma[key] ** 2
            zsum += np.where(n_in > 0, zb, 0.0)
            nb += n_in > 0
        per.append((key, inside, dy, da))
    zero = S // 2 if cfg.shift else 0
    if cnt[zero] == 0:
        raise DataError("scoring: no empirical point lies inside the fitted presentations range")
    allowed = cnt >= max(1.0, cfg.min_overlap * cnt[zero])
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.where(allowed, sse / np.maximum(cnt, 1), np.inf)
        band = np.where(allowed & (nb > 0), zsum / np.maximum(nb, 1), np.inf)
    j = int(np.argmin(band if sigma is not None else mse))
    return CurveScore(
        rmse=float(np.sqrt(mse[j])),
        shift=float(np.exp(grid[j])),
        accuracy_rmse=float(np.sqrt(sae[j] / cnt[j])),
        n_points=int(cnt[j]),
        rmse_unshifted=float(np.sqrt(sse[zero] / cnt[zero])),
        band_score=float(np.sqrt(band[j])) if sigma is not None else float("nan"),
        shift_at_bound=bool(sigma is not None and cfg.shift and j in (0, S - 1)),
        bins=_bin_rows(per, j, sigma),
    )


def seed_band(table: pd.DataFrame, values: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """analysis.groups.seed_band, the one seed band (<v>_mean, _std, _lo, _hi, _n), over the
    rows of each `by` key (one per run; a table without a `run` column counts each row as
    one), with the keys that hold no finite value left out."""
    t = table if "run" in table.columns else table.assign(run=np.arange(len(table)))
    t = t.assign(run=t["run"].astype(str))  # a single run's None is a run too
    band = groups.seed_band(t, values, by).drop(columns="n_runs")
    return band[(band[[f"{v}_n" for v in values]] > 0).any(axis=1)].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class Reference:
    """What members are scored against: the transformer's mean binned curves (log loss averaged
    over seeds at equal steps), per-bin sigma of log loss, and per (level, bin) the seed band of
    the log lag ratio: log_ratio_mean/_std/_lo/_hi/_n, ratio_mean (the geometric mean),
    ratio_lo, ratio_hi, log_ratio_sd (the unit of z_lag) and compared (reached in every seed)."""

    curves: pd.DataFrame  # binned: step, rank_lo, rank_hi, presentations, loss, accuracy
    sigma: dict[tuple[int, int], float]
    lag: pd.DataFrame
    n_runs: int
    noise: str  # the noise reference, in words

    def compared(self) -> pd.DataFrame:
        """The (level, bin) rows the transformer reaches in every seed."""
        return self.lag[self.lag["compared"]] if len(self.lag) else self.lag


def noise_text(n_runs: int) -> str:
    """The noise reference in words: a seed band only when there are seeds."""
    if n_runs > 1:
        return (f"seed band over {n_runs} seeds (std of log loss at equal steps, pooled over "
                "evaluations; lag: std of the log ratio over seeds)")  # fmt: skip
    return ("spread over a bin's ranks (one run): the standard error of the bin's mean log loss "
            "over its ranks; lag: a bootstrap over the bin's ranks; no seed band")  # fmt: skip


def _pooled_sd(var: pd.Series) -> float:
    v = var.to_numpy(np.float64)
    v = v[np.isfinite(v)]
    return float(np.sqrt(v.mean())) if len(v) else float("nan")


def _bootstrap_lag(cr: pd.DataFrame, edges: np.ndarray, n: int, seed: int = 0) -> pd.Series:
    """Per (level, bin): sd of the log lag ratio over resamples of each bin's ranks."""
    rng = np.random.default_rng(seed)
    b = np.searchsorted(edges, cr["rank"].to_numpy(), side="right") - 1
    draws = []
    for _ in range(n):
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(b == k), (b == k).sum()) for k in np.unique(b)]
        )
        draws.append(bin_lag(cr.iloc[idx].copy(), edges))
    d = pd.concat(draws, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        d["log_ratio"] = np.log(d["lag_ratio"])
    d = d[np.isfinite(d["log_ratio"])]
    return d.groupby(LAG_KEYS)["log_ratio"].std(ddof=1).rename("sd")


def _rank_sigma(ev: pd.DataFrame, edges: np.ndarray) -> dict:
    """One run: per bin, the standard error of its mean log loss over its ranks, pooled."""
    e = ev.assign(log_loss=np.log(ev["loss"].to_numpy(np.float64)))
    bi = np.searchsorted(edges, e["rank"].to_numpy(), side="right") - 1
    e = e.assign(rank_lo=edges[np.clip(bi, 0, len(edges) - 2)])
    e = e[e["presentations"] > 0]
    se = e.groupby(["rank_lo", "step"])["log_loss"].agg(["var", "count"])
    se = (se["var"] / se["count"]).reset_index()
    return {
        (int(lo), int(edges[np.searchsorted(edges, lo) + 1])): _pooled_sd(v[0])
        for lo, v in se.groupby("rank_lo")
    }


def _lag_reference(lags: list, crs: list, edges, cfg: ScoreConfig) -> pd.DataFrame:
    """The seed band of the log lag ratio per (level, bin), with the unit of z_lag."""
    lag = pd.concat(lags, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lag["log_ratio"] = np.log(lag["lag_ratio"])
    band = seed_band(lag, ["log_ratio"], LAG_KEYS)
    sd = band["log_ratio_std"]
    if len(lags) == 1 and len(band):
        boot = _bootstrap_lag(crs[0], edges, cfg.bootstrap)
        sd = boot.reindex(pd.MultiIndex.from_frame(band[LAG_KEYS])).to_numpy()
    band["log_ratio_sd"] = np.maximum(pd.Series(sd).fillna(cfg.lag_floor), cfg.lag_floor)
    band["ratio_mean"] = np.exp(band["log_ratio_mean"])
    band["ratio_lo"] = np.exp(band["log_ratio_lo"])
    band["ratio_hi"] = np.exp(band["log_ratio_hi"])
    # a (level, bin) is compared only when every seed reaches it: a censored seed is no ratio
    band["compared"] = band["log_ratio_n"] == len(lags)
    return band


def build_reference(
    evals: pd.DataFrame, floors: dict, edges: np.ndarray, cfg: ScoreConfig = ScoreConfig()
) -> Reference:
    """The reference of a transformer run or seed group (per-sequence table; a `run` column
    for a group, as analysis.groups.load_group gives). floors: run name (or None) -> the
    per-rank Bayes floor (the seeds of a group have their own bits)."""
    runs = list(evals["run"].unique()) if "run" in evals.columns else [None]
    parts, lags, crs = [], [], []
    for r in runs:
        ev = evals if r is None else evals[evals["run"] == r].drop(columns="run")
        b = binned(ev, edges)
        with np.errstate(divide="ignore"):
            b["log_loss"] = np.log(b["loss"])
        parts.append(b.assign(run=r))
        cr = rank_crossings(ev, cfg.levels, floor=floors[r])
        crs.append(cr)
        lags.append(bin_lag(cr, edges).assign(run=r))
    allb = pd.concat(parts, ignore_index=True)
    g = allb.groupby(["rank_lo", "rank_hi", "step"], sort=True)
    curves = g[["presentations", "accuracy", "log_loss"]].mean().reset_index()
    curves["loss"] = np.exp(curves.pop("log_loss"))
    if len(runs) > 1:
        var = g["log_loss"].var(ddof=1).reset_index()
        var = var[curves["presentations"].to_numpy() > 0]
        sigma = {k: _pooled_sd(v["log_loss"]) for k, v in var.groupby(["rank_lo", "rank_hi"])}
    else:
        sigma = _rank_sigma(evals if runs[0] is None else evals.drop(columns="run"), edges)
    sigma = {k: max(v, cfg.noise_floor) if np.isfinite(v) else cfg.noise_floor
             for k, v in sigma.items()}  # fmt: skip
    lag = _lag_reference(lags, crs, edges, cfg)
    return Reference(curves, sigma, lag, len(runs), noise_text(len(runs)))


def lag_side(lo: float, hi: float) -> int:
    """+1 when the transformer's whole seed range lags (above 1), -1 when it is ahead, else 0."""
    return 1 if lo > 1 else -1 if hi < 1 else 0


def lag_verdict(ratio_fit: float, lo: float, hi: float, z_lag: float, within: float) -> str:
    """Whether a fit's lag ratio agrees with the transformer's at one (bin, level): the one
    place this is decided (module docstring)."""
    if not np.isfinite(ratio_fit):
        return "never reaches"
    if ratio_fit <= 0:
        return "no ratio (the bin reaches the level at 0 presentations)"
    side = lag_side(lo, hi)
    if side and int(np.sign(np.log(ratio_fit))) != side:
        return "wrong sign"
    return "too far" if z_lag > within else "agrees"


def lag_rows(
    fit_lag: pd.DataFrame | None, ref: Reference, cfg: ScoreConfig = ScoreConfig()
) -> tuple[tuple[LagRow, ...], float]:
    """(rows, lag_score) of a member's `bin_lag` table against the reference's compared
    (level, bin) rows, the top bin left out; lag_score NaN when there is nothing to compare."""
    f = (fit_lag.set_index(LAG_KEYS)["lag_ratio"] if fit_lag is not None and len(fit_lag)
         else pd.Series(dtype=float))  # fmt: skip
    top = ref.lag["rank_lo"].min() if len(ref.lag) else 0
    rows, zs = [], []
    for r in ref.compared().itertuples():
        if r.rank_lo == top:
            continue
        rf = float(f.get((r.level, r.rank_lo, r.rank_hi), np.nan))
        ok = np.isfinite(rf) and rf > 0
        z = abs(np.log(rf) - r.log_ratio_mean) / r.log_ratio_sd if ok else cfg.censored_z
        z = float(min(z, cfg.censored_z))
        zs.append(z)
        zl = z if ok else float("nan")
        rows.append(LagRow(
            level=float(r.level), rank_lo=int(r.rank_lo), rank_hi=int(r.rank_hi),
            ratio_ref=float(r.ratio_mean), ratio_lo=float(r.ratio_lo), ratio_hi=float(r.ratio_hi),
            n_seeds=int(r.log_ratio_n), log_ratio_sd=float(r.log_ratio_sd), ratio_fit=rf,
            z_lag=zl, verdict=lag_verdict(rf, r.ratio_lo, r.ratio_hi, zl, cfg.within),
        ))  # fmt: skip
    if not rows:
        return (), float("nan")
    return tuple(rows), float(np.sqrt((np.asarray(zs) ** 2).mean()))


def total_score(band_score: float, lag_score: float) -> float:
    """Root mean of the two squared scores; the band score alone without a lag to compare."""
    if not np.isfinite(lag_score):
        return band_score
    return float(np.sqrt((band_score**2 + lag_score**2) / 2))


def _mid_lag(lag: pd.DataFrame | None, cfg: ScoreConfig) -> tuple[tuple[int, float], ...]:
    """The member's lag ratio per bin at the middle level (the members table's lag_<lo>)."""
    if lag is None or not len(lag):
        return ()
    mid = sorted(cfg.levels)[len(cfg.levels) // 2]
    g = lag[np.isclose(lag["level"], mid)]
    return tuple((int(r.rank_lo), float(r.lag_ratio)) for r in g.itertuples())


def score_member(
    curves: pd.DataFrame,
    lag: pd.DataFrame | None,
    ref: Reference,
    cfg: ScoreConfig = ScoreConfig(),
) -> MemberScore:
    """One member's binned curves (`binned`) and `bin_lag` table (None: curves only) against
    `ref`. A member whose curves share no matched point with the reference scores inf."""
    rows, ls = lag_rows(lag, ref, cfg) if lag is not None else ((), float("nan"))
    try:
        c = score_curves(ref.curves, curves, cfg, ref.sigma)
    except DataError:
        inf = float("inf")
        c = CurveScore(inf, float("nan"), float("nan"), 0, inf, inf, False, ())
    return MemberScore(
        rmse=c.rmse, band_score=c.band_score, lag_score=ls, total=total_score(c.band_score, ls),
        shift=c.shift, shift_at_bound=c.shift_at_bound, accuracy_rmse=c.accuracy_rmse,
        n_points=c.n_points, rmse_unshifted=c.rmse_unshifted, bins=c.bins, lag=rows,
        mid_lag=_mid_lag(lag, cfg),
    )  # fmt: skip
