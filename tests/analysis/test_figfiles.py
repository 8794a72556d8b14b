"""Figure files: atomic (a failing write leaves the previous figure), named safely, and never
written outside the figures folder, whatever the name or a link placed there says."""

from __future__ import annotations

import errno
import os

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from phenomjax.analysis import plots
from phenomjax.analysis.figfiles import figure_path, save_figure
from phenomjax.analysis.settings import PlotSettings
from phenomjax.errors import PhenomjaxError, RunDirError
from phenomjax.runs.reuse import owned
from phenomjax.runs.storage import StorageError

plots.use_backend(False)
PLOT = PlotSettings(formats=("png", "pdf"), dpi=30)


def _fig():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    return fig


def test_figure_and_its_csv_are_written_beside_each_other(tmp_path):
    data = pd.DataFrame({"x": [1, 2], "y": [3, 4]})
    paths = save_figure(_fig(), tmp_path / "figs", "small_loss", PLOT, keep=False, data=data)
    assert [p.name for p in paths] == ["small_loss.png", "small_loss.pdf", "small_loss.csv"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    pd.testing.assert_frame_equal(pd.read_csv(paths[2]), data)
    # no temporary file left; the folder it made is marked as phenomjax's own
    assert sorted(os.listdir(tmp_path / "figs")) == sorted([".phenomjax", *(p.name for p in paths)])
    assert owned(tmp_path / "figs")


def test_a_full_disk_leaves_the_old_figure_intact(tmp_path):
    out = tmp_path / "figs"
    old = save_figure(_fig(), out, "f", PLOT, keep=False, data=pd.DataFrame({"a": [1]}))
    before = {p: p.read_bytes() for p in old}
    fig = _fig()

    def full_disk(path, **kw):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half a figure")
        raise OSError(errno.ENOSPC, "No space left on device")

    fig.savefig = full_disk
    with pytest.raises(StorageError, match="cannot write f.png .No space left on device.") as e:
        save_figure(fig, out, "f", PLOT, keep=False, data=pd.DataFrame({"a": [2]}))
    assert isinstance(e.value, PhenomjaxError) and "\n" not in str(e.value)
    assert {p: p.read_bytes() for p in old} == before
    assert sorted(os.listdir(out)) == [".phenomjax", "f.csv", "f.pdf", "f.png"]  # no temp file


def test_names_from_users_and_files_stay_inside_the_folder(tmp_path):
    out = tmp_path / "a" / "figs"
    for name in ("../../x_loss", "/etc/passwd", "a/b c", "..\\..\\y"):
        p = figure_path(out, name, "png")
        assert p.parent == out and "/" not in p.name and not p.name.startswith(".")
    with pytest.raises(RunDirError, match="figure name"):
        figure_path(out, "../..", "png")
    paths = save_figure(_fig(), out, "../../x", PLOT, keep=False)
    assert [p.parent for p in paths] == [out, out]
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "a" / "x.png").exists()


def test_a_link_in_the_folder_is_not_written_through(tmp_path):
    out, outside = tmp_path / "figs", tmp_path / "elsewhere.png"
    out.mkdir()
    outside.write_bytes(b"precious")
    (out / "f.png").symlink_to(outside)
    with pytest.raises(RunDirError, match="resolves outside the figures folder"):
        save_figure(_fig(), out, "f", PLOT, keep=False)
    assert outside.read_bytes() == b"precious"
