"""Where figures are written: `<figures folder>/<name>.<format>` and `<name>.csv` beside them.

A figure's name comes from experiment keys, group and run names, which users and files choose,
so it is made a file name by runs.storage.safe_name and the path is checked to lie inside the
figures folder. Every file is written atomically (runs.storage.atomic_write): a full disk or
a killed process leaves the previous figure as it was.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..errors import RunDirError
from ..runs.reuse import claim
from ..runs.storage import atomic_write, safe_name
from .settings import PlotSettings


@dataclasses.dataclass
class Drawn:
    """What a figure function returns."""

    data: pd.DataFrame  # what was drawn, tidy (also written as <name>.csv)
    paths: list[Path]  # files written (empty when not saving)
    figure: object = None  # the matplotlib figure, closed unless it will be shown


def figure_path(out_dir: str | os.PathLike, name: str, suffix: str) -> Path:
    """out_dir/<safe name>.<suffix>, refused unless it resolves to a file directly inside
    out_dir (so neither a name nor a link placed there leads out of it).

    >>> figure_path("figs", "../../x_loss", "png").as_posix()
    'figs/x_loss.png'
    """
    root = Path(out_dir)
    path = root / f"{safe_name(name, what='figure name')}.{suffix}"
    if path.resolve().parent != root.resolve():
        raise RunDirError(f"{path}: resolves outside the figures folder {root}; remove that link")
    return path


def save_figure(
    fig,
    out_dir: Path | None,
    name: str,
    plot: PlotSettings,
    keep: bool,
    data: pd.DataFrame | None = None,
) -> list[Path]:
    """Write `fig` as out_dir/name.<fmt> for each of plot.formats, and `data` (the tidy rows
    it drew) as out_dir/name.csv, each atomically; close the figure unless `keep`. A folder it
    creates gets the ownership marker (runs/reuse.claim). Returns the paths written (none when
    out_dir is None)."""
    paths = []
    try:
        if out_dir is not None:
            if not os.path.lexists(out_dir):  # a folder it makes is marked as its own
                claim(out_dir, "figures")
            for fmt in plot.formats:
                p = figure_path(out_dir, name, fmt)
                atomic_write(p, lambda t, f=fmt: fig.savefig(t, format=f, bbox_inches="tight",
                                                             dpi=plot.dpi))  # fmt: skip
                paths.append(p)
            if data is not None:
                p = figure_path(out_dir, name, "csv")
                atomic_write(p, lambda t: data.to_csv(t, index=False))
                paths.append(p)
    finally:
        if not keep:
            plt.close(fig)
    return paths
