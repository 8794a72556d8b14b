"""Score phenomenological curves against an empirical run's binned curves (docs/design.md §6).

The score of a member is the RMSE of log-loss between its rank-binned curves and the run's,
at matched presentations:

    score = sqrt(mean over (bin, eval) of [log L_fit(n / s) - log L_emp(n)]^2)

where n is the empirical bin's mean presentations at an evaluation, L_fit(.) the member's binned
loss interpolated linearly in log-presentations (only inside the range its evaluations cover:
no extrapolation), and s > 0 an optional presentation-scale factor: the fitted model is read as
if its presentations were s times what it counted, i.e. its curve is shifted by log s along
log-presentations. Every (bin, eval) point counts once, so bins with more evaluations inside the
model's range weigh more. Points with presentations <= 0 are left out (log axes).

The scale factor is fitted per member by the exact minimiser over a dense log-spaced grid
(`ScoreConfig.shift_points` factors in [1/shift_range, shift_range], 1 always on the grid),
among the factors that keep at least `min_overlap` of the points matched at s = 1. Both limits
are tight on purpose: s trades off against the learning rate (adam moves ~lr per step), and a
wide search lets a slow member slide the late, memorizing part of the frequent bins out of the
matched range and "win" on the flat rare bins (seen on the demo run with [1/10, 10], 75%).
The accuracy RMSE (in fraction units, no log) is reported at the same s.

Everything here works on binned tables (a few rows per bin and evaluation), never on the K x L
data; `member_binned` bins a sweep's per-sequence curves one member chunk at a time.

**Lag-aware scoring** (docs/design.md §6, "What a score must see"). The pooled RMSE ignores
direction and the top bins' seed noise, so a member is judged per bin in units of the
transformer's seed spread and by its lag ratios:

- the reference (`Reference`): the transformer group's mean binned curve (log loss averaged over
  seeds at equal steps) and, per bin, sigma = the seed std of log loss at equal steps, pooled
  over the evaluations (root mean variance). With one run there is no seed spread; the fallback
  is the standard error of the bin's mean log loss over its ranks (std over ranks / sqrt(ranks),
  pooled the same way), floored at `noise_floor`. It sees which ranks fall in a bin, not init or
  batch order, and the report says `noise: ranks (one run)`;
- per bin, z = RMSE of (log L_fit - log L_ref) / sigma over the matched points; `band_score` =
  root mean z^2 over bins (each bin once) and the presentation shift s minimises it;
- lag (analysis.lag): per rank bin and level, the ratio of the bin's median presentations to the
  top bin's; the reference's mean log ratio over seeds with its seed std (one run: bootstrap over
  the ranks of each bin), floored at `lag_floor`; per (bin, level) z_lag = |log r_fit -
  mean log r_ref| / sd. A fit bin that never reaches a level the reference reaches scores
  `censored_z`. `lag_score` = root mean z_lag^2; `total` = root mean of band_score^2 and
  lag_score^2 ranks the members; the pooled `score` stays as a column.
- verdicts per bin: within the band when z <= `within`; the lag agrees when its sign (ratio
  above or below 1) matches the reference's mean at every comparable level and z_lag <= `within`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..analysis.binning import binned
from ..analysis.lag import bin_lag, rank_crossings
from ..errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    shift: bool = True  # fit a presentation-scale factor s per member (else s = 1)
    shift_range: float = 3.0  # s is searched in [1 / shift_range, shift_range]
    shift_points: int = 111  # grid size (odd: s = 1 is on it); 111 over [1/3, 3] = 2% steps
    min_overlap: float = 0.9  # a shift must keep this share of the points matched at s = 1
    levels: tuple[float, ...] = (0.75, 0.5, 0.25)  # normalized excess loss levels of the lag
    within: float = 2.0  # a bin is within the seed band when its z <= within (lag: z_lag too)
    noise_floor: float = 0.02  # least sigma of log loss per bin (one-run fallback especially)
    lag_floor: float = 0.1  # least sd of a log lag ratio
    censored_z: float = 10.0  # z_lag of a fit bin that never reaches a level the reference does
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


def score_curves(
    emp: pd.DataFrame,
    fit: pd.DataFrame,
    cfg: ScoreConfig = ScoreConfig(),
    sigma: dict[tuple[int, int], float] | None = None,
) -> dict:
    """Score one fitted binned table against the empirical one (see the module docstring).

    Returns score (log-loss RMSE), shift (the factor s), accuracy_rmse, n_points and per_bin
    (a list of {rank_lo, rank_hi, n_points, log_loss_rmse, accuracy_rmse, mean_residual}).
    With `sigma` (per-bin seed spread of log loss), the shift minimises band_score, the root
    mean over bins of (per-bin RMSE / sigma)^2, returned with per-bin `z` and `shift_at_bound`.
    """
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
    rows = []
    for (lo, hi), inside, dy, da in per:
        n = int(inside[j].sum())
        rmse = float(np.sqrt((dy[j] ** 2).sum() / n)) if n else float("nan")
        row = {
            "rank_lo": lo,
            "rank_hi": hi,
            "n_points": n,
            "log_loss_rmse": rmse,
            "accuracy_rmse": float(np.sqrt((da[j] ** 2).sum() / n)) if n else float("nan"),
            "mean_residual": float(dy[j].sum() / n) if n else float("nan"),
        }
        if sigma is not None:
            row["sigma"] = float(sigma.get((lo, hi), np.nan))
            row["z"] = rmse / row["sigma"]
        rows.append(row)
    extra = {}
    if sigma is not None:
        extra = {
            "band_score": float(np.sqrt(band[j])),
            "shift_at_bound": cfg.shift and j in (0, S - 1),
        }
    return {
        **extra,
        "score": float(np.sqrt(mse[j])),
        "shift": float(np.exp(grid[j])),
        "accuracy_rmse": float(np.sqrt(sae[j] / cnt[j])),
        "n_points": int(cnt[j]),
        "score_unshifted": float(np.sqrt(sse[zero] / cnt[zero])),
        "per_bin": rows,
    }


def score_members(
    emp: pd.DataFrame, members_binned: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()
) -> pd.DataFrame:
    """score_curves for every member of a binned sweep table (column "member")."""
    rows = []
    for m, g in members_binned.groupby("member", sort=True):
        try:
            s = score_curves(emp, g, cfg)
        except DataError:
            s = {"score": np.inf, "shift": np.nan, "accuracy_rmse": np.nan, "n_points": 0}
        s.pop("per_bin", None)
        rows.append({"member": int(m), **s})
    return pd.DataFrame(rows)


def member_binned(read_chunk, members: list[int], edges: np.ndarray, chunk: int = 8):
    """Bin a sweep's per-sequence curves `chunk` members at a time (bounded memory);
    `read_chunk(ids)` returns those members' rows (e.g. read_sweep(out, ids)[1])."""
    parts = []
    for i in range(0, len(members), chunk):
        rows = read_chunk(members[i : i + chunk])
        parts.append(binned(rows, edges, group="member"))
    return pd.concat(parts, ignore_index=True)


@dataclasses.dataclass
class Reference:
    """What members are scored against: the transformer's mean binned curves, per-bin sigma of
    log loss, and per (level, bin) the mean log lag ratio with its sd (module docstring)."""

    curves: pd.DataFrame  # binned: step, rank_lo, rank_hi, presentations, loss, accuracy
    sigma: dict[tuple[int, int], float]
    lag: pd.DataFrame  # level, rank_lo, rank_hi, log_ratio, log_ratio_sd, ratio_lo, ratio_hi
    n_runs: int
    noise: str  # "seeds (n runs)" or "ranks (one run)"


def _pooled_sd(var: pd.Series) -> float:
    v = var.to_numpy(np.float64)
    v = v[np.isfinite(v)]
    return float(np.sqrt(v.mean())) if len(v) else float("nan")


def _bootstrap_lag(cr: pd.DataFrame, edges: np.ndarray, n: int, seed: int = 0) -> pd.DataFrame:
    """Per (level, bin): sd of the log lag ratio over resamples of each bin's ranks."""
    rng = np.random.default_rng(seed)
    b = np.searchsorted(edges, cr["rank"].to_numpy(), side="right") - 1
    draws = []
    for _ in range(n):
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(b == k), (b == k).sum()) for k in np.unique(b)]
        )
        t = cr.iloc[idx].copy()
        draws.append(bin_lag(t, edges))
    d = pd.concat(draws, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        d["log_ratio"] = np.log(d["lag_ratio"])
    d = d[np.isfinite(d["log_ratio"])]
    return d.groupby(["level", "rank_lo", "rank_hi"])["log_ratio"].std(ddof=1).rename("sd")


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
    keys = ["rank_lo", "rank_hi", "step"]
    g = allb.groupby(keys, sort=True)
    curves = g[["presentations", "accuracy", "log_loss"]].mean().reset_index()
    curves["loss"] = np.exp(curves.pop("log_loss"))
    if len(runs) > 1:
        var = g["log_loss"].var(ddof=1).reset_index()
        var = var[curves["presentations"].to_numpy() > 0]
        sigma = {k: _pooled_sd(v["log_loss"]) for k, v in var.groupby(["rank_lo", "rank_hi"])}
        noise = f"seeds ({len(runs)} runs)"
    else:
        ev = evals if runs[0] is None else evals.drop(columns="run")
        e = ev.assign(log_loss=np.log(ev["loss"].to_numpy(np.float64)))
        bi = np.searchsorted(edges, e["rank"].to_numpy(), side="right") - 1
        e = e.assign(rank_lo=edges[np.clip(bi, 0, len(edges) - 2)])
        e = e[e["presentations"] > 0]
        se = e.groupby(["rank_lo", "step"])["log_loss"].agg(["var", "count"])
        se = (se["var"] / se["count"]).reset_index()
        sigma = {
            (int(lo), int(edges[np.searchsorted(edges, lo) + 1])): _pooled_sd(v[0])
            for lo, v in se.groupby("rank_lo")
        }
        noise = "ranks (one run): the standard error over a bin's ranks, not seed noise"
    sigma = {k: max(v, cfg.noise_floor) if np.isfinite(v) else cfg.noise_floor
             for k, v in sigma.items()}  # fmt: skip
    lag = pd.concat(lags, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lag["log_ratio"] = np.log(lag["lag_ratio"])
    lk = ["level", "rank_lo", "rank_hi"]
    fin = lag[np.isfinite(lag["log_ratio"])]
    agg = fin.groupby(lk)["log_ratio"].agg(["mean", "std", "count"])
    agg["ratio_lo"] = np.exp(fin.groupby(lk)["log_ratio"].min())
    agg["ratio_hi"] = np.exp(fin.groupby(lk)["log_ratio"].max())
    if len(runs) == 1 and len(agg):
        agg["std"] = _bootstrap_lag(crs[0], edges, cfg.bootstrap).reindex(agg.index)
    agg["std"] = np.maximum(agg["std"].fillna(cfg.lag_floor), cfg.lag_floor)
    # a (level, bin) counts only when every seed reaches it: a censored seed is not a ratio
    agg = agg[agg["count"] == len(runs)]
    lag_ref = agg.rename(columns={"mean": "log_ratio", "std": "log_ratio_sd", "count": "n_runs"})
    return Reference(curves, sigma, lag_ref.reset_index(), len(runs), noise)


def lag_agreement(fit_lag: pd.DataFrame, ref: Reference, cfg: ScoreConfig = ScoreConfig()):
    """(lag_score, per (level, bin) rows) of a member's `bin_lag` table against the reference:
    z_lag = |log r_fit - mean log r_ref| / sd; censored fit bins score cfg.censored_z. Bins
    other than the top one only; lag_score is NaN when the reference has none to compare."""
    f = fit_lag.set_index(["level", "rank_lo", "rank_hi"])["lag_ratio"]
    rows = []
    top = ref.lag["rank_lo"].min() if len(ref.lag) else 0
    for r in ref.lag.itertuples():
        if r.rank_lo == top:
            continue
        rf = float(f.get((r.level, r.rank_lo, r.rank_hi), np.nan))
        ok = np.isfinite(rf) and rf > 0
        z = abs(np.log(rf) - r.log_ratio) / r.log_ratio_sd if ok else cfg.censored_z
        rows.append({
            "level": float(r.level), "rank_lo": int(r.rank_lo), "rank_hi": int(r.rank_hi),
            "ratio_ref": float(np.exp(r.log_ratio)), "ratio_ref_lo": float(r.ratio_lo),
            "ratio_ref_hi": float(r.ratio_hi), "log_ratio_sd": float(r.log_ratio_sd),
            "ratio_fit": rf, "z_lag": float(min(z, cfg.censored_z)),
            "sign_agrees": bool(ok and np.sign(np.log(rf)) == np.sign(r.log_ratio)),
        })  # fmt: skip
    if not rows:
        return float("nan"), rows
    z = np.asarray([x["z_lag"] for x in rows])
    return float(np.sqrt((z**2).mean())), rows


def total_score(band_score: float, lag_score: float) -> float:
    """Root mean of the two squared scores; the band score alone without a lag to compare."""
    if not np.isfinite(lag_score):
        return band_score
    return float(np.sqrt((band_score**2 + lag_score**2) / 2))


def member_tables(read_chunk, members: list[int], edges: np.ndarray, floor: np.ndarray,
                  levels, chunk: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(binned, bin_lag) per member of a sweep, `chunk` members read at a time; `read_chunk(ids)`
    returns those members' per-sequence rows. floor: the per-rank Bayes floor of their bits."""
    parts, lags = [], []
    for i in range(0, len(members), chunk):
        rows = read_chunk(members[i : i + chunk])
        parts.append(binned(rows, edges, group="member"))
        for m, g in rows.groupby("member", sort=True):
            cr = rank_crossings(g.drop(columns="member"), levels, floor=floor)
            lags.append(bin_lag(cr, edges).assign(member=int(m)))
    return pd.concat(parts, ignore_index=True), pd.concat(lags, ignore_index=True)


def score_members_lag(binned_m: pd.DataFrame, lag_m: pd.DataFrame, ref: Reference,
                      cfg: ScoreConfig = ScoreConfig()) -> pd.DataFrame:  # fmt: skip
    """Per member: score (pooled RMSE), band_score, lag_score, total, shift, shift_at_bound,
    accuracy_rmse, n_points, and lag5 (bin 5-9's ratio at the middle level, for the tables)."""
    rows = []
    lags = dict(tuple(lag_m.groupby("member")))
    for m, g in binned_m.groupby("member", sort=True):
        try:
            s = score_curves(ref.curves, g, cfg, ref.sigma)
        except DataError:
            s = {"score": np.inf, "band_score": np.inf, "shift": np.nan, "accuracy_rmse": np.nan,
                 "n_points": 0, "shift_at_bound": False}  # fmt: skip
        s.pop("per_bin", None)
        ls, _ = lag_agreement(lags[m], ref, cfg) if m in lags else (np.nan, [])
        s["lag_score"] = ls
        s["total"] = total_score(s["band_score"], ls)
        rows.append({"member": int(m), **s, **_lag_columns(lags.get(m), cfg)})
    return pd.DataFrame(rows)


def _lag_columns(lag: pd.DataFrame | None, cfg: ScoreConfig) -> dict:
    """The member's lag ratio per bin at the middle level, as columns lag_<lo> (for tables)."""
    if lag is None:
        return {}
    mid = sorted(cfg.levels)[len(cfg.levels) // 2]
    g = lag[np.isclose(lag["level"], mid)]
    return {f"lag_{int(r.rank_lo)}": float(r.lag_ratio) for r in g.itertuples()}
