"""The analysis config: experiments -> run paths, plot settings, rank selections, defaults.

It replaces the historical `config.py` (EXPERIMENT_PATHS, PLOT_CONFIG, RANK_SELECTIONS,
ANALYSIS_CONFIG) with a TOML file read strictly: an unknown key or a bad value is a ConfigError
naming the file and the dotted field. The packaged default is phenomjax/configs/analysis.toml.

Run paths are globs; one that starts with "@" names another experiment and expands to its
paths (so `all = ["@small", "@medium", ...]`). A relative path is read from the working
directory, as the historical script did, and otherwise from the config file's folder.
"""

from __future__ import annotations

import dataclasses
import glob
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import apply_overrides, dotted, from_dict, read_toml
from ..configs import packaged
from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PlotSettings:
    figsize: tuple[float, ...] = (8.0, 5.5)  # figure size in inches (width, height)
    dpi: int = 150  # PNG resolution; PDFs are vector
    x_lim: tuple[float, ...] = ()  # presentations axis limits (lo, hi); empty: automatic
    loss_y_lim: tuple[float, ...] = ()  # loss axis limits in nats; empty: automatic
    accuracy_y_lim: tuple[float, ...] = (0.45, 1.01)  # accuracy axis limits
    palette: str = "viridis"  # seaborn/matplotlib palette for rank curves
    run_palette: str = "tab10"  # palette for runs in comparative figures
    legend_loc: str = "best"  # matplotlib legend location
    legend_ncol: int = 1  # legend columns
    formats: tuple[str, ...] = ("png", "pdf")  # files written per figure
    floor: bool = True  # draw the Bayes floor per rank where the bits are known
    max_comparative_bins: int = 0  # comparative figures for the first N rank bins; 0: all

    def validate(self) -> None:
        if len(self.figsize) != 2 or min(self.figsize) <= 0:
            raise ConfigError(f"figsize: expected two positive numbers, got {self.figsize}")
        for name in ("x_lim", "loss_y_lim", "accuracy_y_lim"):
            v = getattr(self, name)
            if len(v) not in (0, 2) or (len(v) == 2 and not v[0] < v[1]):
                raise ConfigError(f"{name}: expected [] or [lo, hi] with lo < hi, got {list(v)}")
        bad = [f for f in self.formats if f not in ("png", "pdf", "svg")]
        if bad or not self.formats:
            raise ConfigError(f"formats: expected some of png, pdf, svg, got {list(self.formats)}")
        if self.dpi < 10:
            raise ConfigError(f"dpi: expected >= 10, got {self.dpi}")
        for name in ("palette", "run_palette"):
            _check_palette(name, getattr(self, name))


def _check_palette(field: str, name: str) -> None:
    """The figures' own palette lookup, run when the config is read: a name that passes here
    draws, and a bad one is a ConfigError naming the field instead of a seaborn traceback."""
    import seaborn as sns

    try:
        sns.color_palette(name, 2)
    except Exception as e:  # noqa: BLE001 - seaborn raises ValueError, matplotlib others
        why = " ".join(str(e).split())[:120]  # one line
        raise ConfigError(
            f"{field}: {name!r} is not a seaborn or matplotlib palette ({why})"
        ) from None


@dataclasses.dataclass(frozen=True)
class Defaults:
    experiment: str = "small"  # experiment analysed when --experiment is not given
    rank_selection: str = "selected"  # ranks drawn when --rank-selection is not given
    show_plots: bool = True  # open windows (only with a display and without --no-show-plots)
    save_plots: bool = True  # write figures (unless --no-save-plots)
    force_reprocess: bool = False  # always rebuild the processed tables


@dataclasses.dataclass(frozen=True)
class Paths:
    figures: str = "cache/zipf_figs"  # figures folder, every figure of a command in it
    processed: str = "cache/processed_data"  # processed-table cache folder


@dataclasses.dataclass(frozen=True)
class LegacySettings:
    steps_per_epoch: int = 0  # optimizer steps per legacy epoch; 0: derive it (see legacy.py)


@dataclasses.dataclass(frozen=True)
class SummarySettings:
    reach_level: float = 0.5  # presentations to bring a bin's excess loss (loss - floor) to this
    #                           share of its first value (accuracy: its deficit to the ceiling)
    loss_threshold: float = 0.0  # nats: also presentations to reach this loss; 0: not shown
    accuracy_threshold: float = 0.0  # fraction: also presentations to this accuracy; 0: not shown
    lag_levels: tuple[float, ...] = (0.75, 0.5, 0.25)  # normalized excess loss levels of the lag
    matched_per_decade: int = 8  # grid points per decade where bins' losses are compared

    def validate(self) -> None:
        if not 0 < self.reach_level < 1:
            raise ConfigError(f"reach_level: expected a share in (0, 1), got {self.reach_level}")
        if self.loss_threshold < 0:
            raise ConfigError(f"loss_threshold: expected >= 0 (0: none), got {self.loss_threshold}")
        if not 0 <= self.accuracy_threshold <= 1:
            raise ConfigError(
                f"accuracy_threshold: expected in [0, 1] (0: none), got {self.accuracy_threshold}"
            )
        if not self.lag_levels or not all(0 < v < 1 for v in self.lag_levels):
            raise ConfigError(f"lag_levels: expected values in (0, 1), got {list(self.lag_levels)}")
        if self.matched_per_decade < 1:
            raise ConfigError(f"matched_per_decade: expected >= 1, got {self.matched_per_decade}")


@dataclasses.dataclass(frozen=True)
class _Sections:
    plot: PlotSettings = PlotSettings()
    defaults: Defaults = Defaults()
    paths: Paths = Paths()
    legacy: LegacySettings = LegacySettings()
    summary: SummarySettings = SummarySettings()
    edges: tuple[int, ...] = ()  # rank-bin edges; empty: the historical ones (binning.py)


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    experiments: Mapping[str, tuple[str, ...]]  # name -> run path globs (or "@other")
    rank_selections: Mapping[str, tuple[int, ...]]  # name -> ranks, one curve each
    plot: PlotSettings = PlotSettings()
    defaults: Defaults = Defaults()
    paths: Paths = Paths()
    legacy: LegacySettings = LegacySettings()
    summary: SummarySettings = SummarySettings()
    edges: tuple[int, ...] = ()  # rank-bin edges; empty: the historical ones (binning.py)
    source: str = "analysis.toml"  # the file it was read from

    def run_paths(self, experiment: str) -> list[Path]:
        """The run paths of an experiment, globs expanded; a ConfigError naming them if none."""
        if experiment not in self.experiments:
            raise ConfigError(
                f"{self.source}: experiment {experiment!r} does not exist; "
                f"expected one of {sorted(self.experiments)}"
            )
        base = Path(self.source).parent
        found: list[Path] = []
        skipped = []
        for pattern in self._expand(experiment, ()):
            hits = sorted(glob.glob(pattern))
            if not hits and not Path(pattern).is_absolute():
                hits = sorted(glob.glob(str(base / pattern)))
            skipped += [] if hits else [pattern]
            found.extend(Path(h) for h in hits if Path(h) not in found)
        if found and skipped:
            warnings.warn(
                f"experiment {experiment!r}: nothing at {skipped} (skipped)", stacklevel=2
            )
        if not found:
            pats = "".join(f"\n  {p}" for p in self._expand(experiment, ()))
            raise ConfigError(
                f"{self.source}: experiment {experiment!r}: no run found at{pats}\n"
                "`phenomjax experiments --cpu` trains the four CPU-scale experiments into "
                "runs/<name>_cpu\n(without --cpu the paper-scale ones into runs/<name>); or point "
                "the experiment at legacy pickles\nor run directories (--config FILE or --run PATH)"
            )
        return found

    def _expand(self, name: str, seen: tuple[str, ...]) -> list[str]:
        if name in seen:
            raise ConfigError(
                f"{self.source}: {dotted('experiments', name)}: refers to itself via @"
            )
        out = []
        for p in self.experiments[name]:
            if p.startswith("@"):
                ref = p[1:]
                if ref not in self.experiments:
                    raise ConfigError(
                        f"{self.source}: {dotted('experiments', name)}: unknown {p!r}"
                    )
                out.extend(self._expand(ref, (*seen, name)))
            else:
                out.append(p)
        return out


def _str_lists(data: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of name = [paths]")
    out = {}
    for k, v in data.items():
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise ConfigError(f"{dotted(where, k)}: expected a list of path strings, got {v!r}")
        out[k] = tuple(v)
    return out


def _rank_lists(data: Any, where: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of name = [ranks]")
    out = {}
    for k, v in data.items():
        if k == "all":
            raise ConfigError(f"{where}.all: reserved (it draws every rank bin)")
        ok = isinstance(v, list) and v and all(isinstance(r, int) and r >= 0 for r in v)
        if not ok:
            raise ConfigError(
                f"{dotted(where, k)}: expected a non-empty list of ranks >= 0, got {v!r}"
            )
        out[k] = tuple(v)
    return out


def default_config_path() -> Path:
    return packaged("analysis")


def load_analysis_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> AnalysisConfig:
    """Read an analysis TOML (the packaged default when None); sections are optional."""
    src = Path(path) if path is not None else default_config_path()
    data = apply_overrides(read_toml(src), overrides)
    try:
        experiments = _str_lists(data.pop("experiments", {}), "experiments")
        selections = _rank_lists(data.pop("rank_selections", {}), "rank_selections")
        sections = from_dict(_Sections, data)
    except ConfigError as e:
        raise ConfigError(f"{src}: {e}") from None
    if path is not None and not experiments:
        raise ConfigError(f"{src}: experiments: expected at least one experiment")
    cfg = AnalysisConfig(
        experiments=experiments,
        rank_selections=selections,
        source=str(src),
        **{f.name: getattr(sections, f.name) for f in dataclasses.fields(_Sections)},
    )
    if list(cfg.edges) != sorted(set(cfg.edges)) or (cfg.edges and cfg.edges[0] < 0):
        raise ConfigError(f"{src}: edges: expected strictly increasing ranks >= 0")
    for name in cfg.experiments:
        cfg._expand(name, ())
    return cfg
