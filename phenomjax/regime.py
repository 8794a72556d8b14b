"""The regime map (docs/design.md §6, "The protocol"): where does the transformer lag, and does
a phenomenological model lag with it?

A regime is one transformer size at one K. Each is trained over several seeds (a seed group,
`<out>/runs/<size>-K<K>/seed-<s>`), and each phenomenological model named in the config (a fit
grid: the model as stated, a variant) is fitted to the group (`<out>/fits/<regime>-<model>`).
Every run and fit is an ordinary run directory or fit folder, reused when finished with the same
config (runs.reuse). The map reads, per regime, the lag ratio of every rank bin at the three
levels for each transformer seed and for each fitted model, places the regime at its
parameters per dataset bit, n_params / (K (L - 1)) (or at capacity / (K (L - 1)) where a capacity
table is given), and scores each model by the pre-registered discrepancy (analysis.discrepancy).

    cfg = load_config(RegimeConfig, "experiments/regime_cpu.toml")
    result = run_regimes(cfg, "runs/regime")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis.binning import bin_label, binned
from .analysis.cache import process_run
from .analysis.discrepancy import agrees, discrepancy, transformer_lags
from .analysis.lag import bin_lag, rank_crossings
from .config import require_positive, to_dict
from .configs import packaged
from .data import DataConfig
from .errors import ConfigError
from .fitting.fit import fit_run, phenom_config, train_best
from .fitting.grid import FitGridConfig, default_grid
from .fitting.holdout import predict
from .fitting.inputs import read_input
from .fitting.report import FitReport
from .fitting.scoring import lag_rows
from .optim import OptimConfig
from .regime_capacity import MATCHED, SizeCapacity, matched, read_table, size_capacity
from .runs import RunDir
from .runs.reuse import ensure_run
from .transformer.model import GPTConfig
from .transformer.train import LoopConfig, TrainConfig, train


@dataclasses.dataclass(frozen=True)
class RegimeSize:
    n_layer: int = 1  # transformer blocks
    n_head: int = 2  # attention heads per block
    head_dim: int = 8  # features per head; width = n_head * head_dim

    def validate(self) -> None:
        require_positive(self, ("n_layer", "n_head", "head_dim"))

    @property
    def name(self) -> str:
        return f"l{self.n_layer}h{self.n_head}d{self.head_dim}"


@dataclasses.dataclass(frozen=True)
class MapSection:
    sizes: tuple[RegimeSize, ...] = (RegimeSize(1, 2, 8), RegimeSize(2, 4, 8))  # small first
    K: tuple[int, ...] = (256, 1024)  # sequences per regime
    L: int = 16  # bits per sequence
    alpha: float = 1.0  # Zipf exponent of the sampling weights
    seeds: tuple[int, ...] = (0, 1, 2)  # one transformer run per seed and regime
    fits: tuple[str, ...] = ("fit_demo",)  # fit grids (packaged names or TOML paths), a model each
    capacity: str = ""  # a capacity_sizes.csv (phenomjax capacity) at this L; "": none
    bits_per_param: float = 0.0  # sizes not in `capacity`: this rate x n_params bits; 0: none
    match: bool = True  # V1's D_eff matched to each size's capacity (regime_capacity)
    max_D_eff: int = 16384  # a matched D_eff above this is not fitted (V1's cost grows with it)
    predict_from: str = ""  # the regime whose fit predicts the others unrefitted; "": the first

    def validate(self) -> None:
        if not self.sizes or not self.K or not self.seeds or not self.fits:
            raise ConfigError("map: sizes, K, seeds and fits each need at least one entry")
        if min(self.K) < 2 or self.L < 2:
            raise ConfigError(f"map: expected K >= 2 and L >= 2, got K {self.K}, L {self.L}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"map.seeds: expected distinct seeds, got {list(self.seeds)}")
        if not self.bits_per_param >= 0 or not 1 <= self.max_D_eff <= 1 << 16:
            raise ConfigError(f"map.bits_per_param / max_D_eff: expected >= 0 / in [1, 65536],"
                              f" got {self.bits_per_param} / {self.max_D_eff}")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RegimeConfig:
    map: MapSection = MapSection()  # sizes x K x seeds, and the models fitted to each regime
    model: GPTConfig = GPTConfig()  # shared by every size (sizes set layers, heads, head_dim)
    optimizer: OptimConfig = OptimConfig()  # shared by every run
    train: LoopConfig = LoopConfig()  # steps, batch and evaluations of every run


@dataclasses.dataclass(frozen=True)
class Regime:
    size: RegimeSize
    K: int
    name: str  # its folder under <out>/runs and the stem of its fits
    configs: tuple[TrainConfig, ...]  # one per seed


@dataclasses.dataclass
class RegimeResult:
    lags: pd.DataFrame  # regime, size, K, n_params, x, model, seed, rank_lo, rank_hi, level, ratio
    discrepancy: pd.DataFrame  # regime, model, then analysis.discrepancy's columns
    verdicts: pd.DataFrame  # regime, model, x, transformer_lags, agrees
    x_label: str
    predictions: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # predict_regime


def regimes(cfg: RegimeConfig) -> list[Regime]:
    """Every regime of the map, small sizes first, each with its per-seed training configs."""
    m = cfg.map
    out = []
    for size in m.sizes:
        model = dataclasses.replace(cfg.model, n_layer=size.n_layer, n_head=size.n_head,
                                    head_dim=size.head_dim)  # fmt: skip
        for K in m.K:
            confs = tuple(
                TrainConfig(
                    data=DataConfig(K=K, L=m.L, alpha=m.alpha, seed=s),
                    model=model,
                    optimizer=cfg.optimizer,
                    train=cfg.train,
                )  # fmt: skip
                for s in m.seeds
            )
            out.append(Regime(size, K, f"{size.name}-K{K}", confs))
    return out


def _grid(name: str) -> FitGridConfig:
    from .config import load_config

    path = Path(name)
    if path.suffix == ".toml":
        return load_config(FitGridConfig, path, [])
    packaged(name)  # a missing name is a one-line error naming the packaged configs
    return default_grid(name)


def _model_name(name: str) -> str:
    return Path(name).stem.replace("_", "-")


def train_regime(r: Regime, out: Path, progress: bool) -> Path:
    """The regime's seed group, trained or reused; its folder."""
    group = out / "runs" / r.name
    for cfg in r.configs:
        path = group / f"seed-{cfg.data.seed}"
        go = lambda resume, c=cfg, p=path: train(c, p, resume=resume, progress=progress)  # noqa: E731
        ensure_run(path, to_dict(cfg), kind="transformer", train=go)
    return group


def lag_of(path: Path, K: int) -> pd.DataFrame:
    """A run's lag table (lag.bin_lag over its rank crossings), through no cache."""
    p = process_run(path, cache_dir=None)
    return bin_lag(p.crossings, K=K)


def predict_regime(
    source: FitReport,
    grid: FitGridConfig,
    target: Path,
    out: Path,
    progress: bool = False,
    knobs: dict | None = None,
) -> pd.DataFrame:
    """The best member of `source` (a fit at another regime), its dynamics knobs unchanged,
    trained on the target regime's data and steps (`out`, a phenom run directory) and read
    against the target's transformer group at the source's fitted shift: per rank bin its z
    (the error of log loss in units of the target's seed band), and per (bin, level) its lag
    ratio beside the transformer's with z_lag. Nothing is refitted; `knobs` (a matched D_eff:
    the target's own capacity) replace the member's."""
    inp = read_input(target, grid.score)
    best = dataclasses.replace(source.best.member, **(knobs or {}))
    train_best(phenom_config(inp, grid.grid, best.mode, best), out, progress)
    ev = RunDir(out).read_evals()
    bins = predict(binned(ev, inp.edges), source.best.score.shift, inp.ref, grid.score)
    lag = bin_lag(rank_crossings(ev, grid.score.levels, floor=inp.floor), inp.edges)
    rows = [
        {
            "rank_lo": b.rank_lo,
            "rank_hi": b.rank_hi,
            "level": np.nan,
            "z": b.z,
            "ratio_ref": np.nan,
            "ratio_fit": np.nan,
            "verdict": "curve",
        }
        for b in bins
    ]
    rows += [{"rank_lo": r.rank_lo, "rank_hi": r.rank_hi, "level": r.level, "z": r.z_lag,
              "ratio_ref": r.ratio_ref, "ratio_fit": r.ratio_fit, "verdict": r.verdict}
             for r in lag_rows(lag, inp.ref, grid.score)[0]]  # fmt: skip
    return pd.DataFrame(rows)


def _matches(grid: FitGridConfig) -> bool:
    """A grid of only capacity-knob variants (V1): its D_eff is set by matching."""
    return set(grid.grid.variant) <= set(MATCHED)


def _at(grid: FitGridConfig, cap: SizeCapacity) -> FitGridConfig:
    return dataclasses.replace(grid, grid=dataclasses.replace(grid.grid, D_eff=(cap.D_eff,)))


def run_regimes(
    cfg: RegimeConfig,
    out: str | Path,
    *,
    progress: bool = False,
    emit: Callable[[str], None] = lambda _: None,
) -> RegimeResult:
    """Train, fit and read every regime of the map (reusing what is finished). With a capacity
    per size (map.capacity, map.bits_per_param) and map.match, a V1 grid's D_eff is the one
    matched to the size's capacity (regime_capacity); a regime whose match is past
    map.max_D_eff has no V1 fit, and its verdict row says so."""
    m = cfg.map
    m.validate()
    out = Path(out)
    grids = {_model_name(g): _grid(g) for g in m.fits}
    table = read_table(m.capacity) if m.capacity else {}
    known = bool(table) or m.bits_per_param > 0
    caps: dict[str, SizeCapacity] = {}
    rows, disc, verdicts = [], [], []
    for r in regimes(cfg):
        group = train_regime(r, out, progress)
        seeds = [group / f"seed-{c.data.seed}" for c in r.configs]
        n_params = int(RunDir(seeds[0]).manifest().get("n_params") or 0)
        if r.size.name not in caps:
            cap = size_capacity(r.size.name, n_params, table, m.bits_per_param)
            if m.match and any(_matches(g) for g in grids.values()):
                cap = matched(cap, m.L, m.max_D_eff, emit)
            caps[r.size.name] = cap
        cap = caps[r.size.name]
        bits = r.K * (m.L - 1)
        x = (cap.bits if known else n_params) / bits
        emit(f"[regime] {r.name}: {len(seeds)} seeds trained, {n_params} parameters, x {x:.3g}")
        base = {"regime": r.name, "size": r.size.name, "K": r.K, "n_params": n_params, "x": x}
        ref = pd.concat([lag_of(p, r.K).assign(seed=c.data.seed)
                         for p, c in zip(seeds, r.configs, strict=True)])  # fmt: skip
        rows.append(ref.assign(model="transformer", **base))
        for model, grid in grids.items():
            row = {**base, "model": model, **cap.row()}
            if m.match and _matches(grid):
                if not cap.fitted:
                    # the transformer's lag is its own: read it against itself
                    lags_t = transformer_lags(discrepancy(ref, ref))
                    verdicts.append({**row, "transformer_lags": lags_t, "agrees": np.nan})
                    emit(f"[regime] {r.name}: {model} not fitted ({cap.how})")
                    continue
                grid = _at(grid, cap)
            else:
                row.update(D_eff=np.nan, v1_capacity_bits=np.nan, D_eff_how="")
            fit = out / "fits" / f"{r.name}-{model}"
            report = fit_run(group, fit, grid, progress=progress)
            fitted = lag_of(Path(report.best.run), r.K).assign(seed=report.best.member.seed)
            rows.append(fitted.assign(model=model, **base))
            d = discrepancy(ref, fitted)
            disc.append(d.assign(regime=r.name, model=model))
            verdicts.append({**row, "transformer_lags": transformer_lags(d),
                             "agrees": agrees(d)})  # fmt: skip
            emit(f"[regime] {r.name}: {model} fitted ({'agrees' if agrees(d) else 'disagrees'})")
    predictions = _predictions(cfg, out, grids, caps if m.match else {}, progress, emit)
    x_label = ("transformer capacity / dataset bits, capacity / (K (L - 1))" if known
               else "parameters per dataset bit, n_params / (K (L - 1))")  # fmt: skip
    lags = pd.concat(rows, ignore_index=True).rename(columns={"lag_ratio": "ratio"})
    return RegimeResult(lags, pd.concat(disc, ignore_index=True), pd.DataFrame(verdicts), x_label,
                        predictions)  # fmt: skip


def _predictions(cfg: RegimeConfig, out: Path, grids: dict, caps: dict, progress: bool,
                 emit) -> pd.DataFrame:  # fmt: skip
    """Every model's fit at map.predict_from (default: the first regime) predicting each other
    regime without refitting (predict_regime); a matched V1 takes the target size's D_eff (its
    capacity is the target transformer's, not a fitted knob) and skips a target without one."""
    rs = regimes(cfg)
    names = [r.name for r in rs]
    size_of = {r.name: r.size.name for r in rs}
    source = cfg.map.predict_from or names[0]
    if source not in names:
        raise ConfigError(f"map.predict_from: expected one of {names}, got {source!r}")
    parts = []
    for model, grid in grids.items():
        report_path = out / "fits" / f"{source}-{model}" / "report.json"
        if not report_path.exists():  # a matched V1 not fitted at the source
            emit(f"[regime] {model}: no fit at {source}, no predictions")
            continue
        report = FitReport.load(report_path)
        for target in (n for n in names if n != source):
            knobs = None
            if caps and _matches(grid):
                cap = caps[size_of[target]]
                if not cap.fitted:
                    continue
                knobs = {"D_eff": cap.D_eff}
            folder = out / "predictions" / f"{model}-{source}-to-{target}"
            p = predict_regime(report, grid, out / "runs" / target, folder, progress, knobs)
            parts.append(p.assign(model=model, source=source, target=target))
            z = p[p.verdict == "curve"].z
            emit(
                f"[regime] {model} fitted at {source} predicts {target}: median z {z.median():.2f}"
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _summary(lags: pd.DataFrame) -> pd.DataFrame:
    """Per (regime, model, bin, level): geometric mean of the ratio over seeds, min, max, n."""
    ok = lags[np.isfinite(lags["ratio"]) & (lags["ratio"] > 0)]
    keys = ["regime", "x", "model", "rank_lo", "rank_hi", "level"]
    g = ok.assign(log=np.log(ok["ratio"])).groupby(keys)
    out = g.agg(mean=("log", "mean"), lo=("ratio", "min"), hi=("ratio", "max"),
                n=("ratio", "size")).reset_index()  # fmt: skip
    return out.assign(mean=np.exp(out["mean"]))


def regime_figure(result: RegimeResult, out_dir: Path | None, bins: int = 2):
    """Lag ratio against the regime's x, one row per rank bin below the top (the first `bins`),
    one column per level: the transformer's geometric mean over seeds with its [min, max], and
    each fitted model's ratio. Returns (the paths written, the drawn rows)."""
    import matplotlib.pyplot as plt

    from .analysis.figfiles import save_figure
    from .analysis.figstyle import palette
    from .analysis.settings import PlotSettings

    s = _summary(result.lags)
    top = s["rank_lo"].min()
    keys = sorted({(int(a), int(b)) for a, b in zip(s.rank_lo, s.rank_hi, strict=True) if a > top})
    keys = keys[:bins]
    levels = sorted(s["level"].unique(), reverse=True)
    models = ["transformer", *sorted(set(s["model"]) - {"transformer"})]
    colors = dict(zip(models, palette("tab10", len(models)), strict=True))
    fig, axes = plt.subplots(len(keys), len(levels), figsize=(3.6 * len(levels), 3.0 * len(keys)),
                             squeeze=False, sharex=True, sharey=True)  # fmt: skip
    for i, (lo, hi) in enumerate(keys):
        for j, lv in enumerate(levels):
            ax = axes[i][j]
            cell = s[(s.rank_lo == lo) & (s.level == lv)]
            for k, m in enumerate(models):
                d = cell[cell.model == m].sort_values("x")
                if not len(d):
                    continue
                x = d["x"] * (1.06 ** (k - (len(models) - 1) / 2))  # side by side, same regime
                err = [d["mean"] - d["lo"], d["hi"] - d["mean"]]
                ax.errorbar(x, d["mean"], yerr=err if m == "transformer" else None, fmt="o-",
                            color=colors[m], ms=4, lw=1, capsize=3,
                            label=m + (" (geo. mean, [min, max] over seeds)"
                                       if m == "transformer" else " (fit)"))  # fmt: skip
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{bin_label(lo, hi)}, {lv:.0%} of initial excess", fontsize=9)
            if i == len(keys) - 1:
                ax.set_xlabel(result.x_label, fontsize=8)
            if j == 0:
                ax.set_ylabel("lag ratio (presentations / top bin's)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(models), fontsize=8,
               bbox_to_anchor=(0.5, -0.06))  # fmt: skip
    fig.suptitle("regime map: lag of rarer rank bins (> 1: the bin lags)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir, "regime_map", PlotSettings(), False, data=s), s


def write_outputs(result: RegimeResult, out: str | Path) -> list[Path]:
    """regime_lags.csv, regime_discrepancy.csv, regime_verdicts.csv, regime_predictions.csv
    and regime_map.png/.pdf
    (with regime_map.csv, the drawn rows) in `out`, atomically."""
    from .runs.storage import atomic_write

    out = Path(out)
    paths = []
    for name, df in (("regime_lags", result.lags), ("regime_discrepancy", result.discrepancy),
                     ("regime_verdicts", result.verdicts),
                     ("regime_predictions", result.predictions)):  # fmt: skip
        p = out / f"{name}.csv"
        atomic_write(p, lambda t, d=df: d.to_csv(t, index=False))
        paths.append(p)
    figs, _ = regime_figure(result, out)
    return paths + figs
