"""fitting.html and `phenomjax report FIT`: the page is one self-contained file (every image a
data: URI, no http(s) reference, no external style or script), its tables hold every rank bin
and lag row of the report, text from files is escaped, it is written only into a folder
phenomjax owns; and where Chromium is installed, it renders headless."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fixtures.run_dirs import make_run_dir

from phenomjax.analysis.settings import PlotSettings
from phenomjax.cli import main
from phenomjax.fitting.html import lag_band_of, write_html
from phenomjax.fitting.report import FitReport, Refined
from phenomjax.runs.reuse import claim, remove_owned

from .reports import member, synthetic_report, write_fit_folder

SMALL = PlotSettings(dpi=50)  # where only the page, not the figures' detail, is tested


class Page(HTMLParser):
    """Every tag's attributes, the table cells' text and all text, as parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self.text: list[str] = []
        self._cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        self._cell = False if tag in ("td", "th") else self._cell

    def handle_data(self, data):
        self.text.append(data)
        if self._cell:
            self.cells.append(data)


def _group_fit(tmp: Path, label: str = "2 heads") -> tuple[Path, Path]:
    """A seed group (two fabricated runs) and a fit folder of it that phenomjax owns."""
    grp = tmp / "grp"
    for s in (0, 1):
        make_run_dir(grp / f"seed-{s}", seed=s, steps=(0, 4, 16, 64, 256))
    fit = claim(tmp / "grp-fit", "a fit")
    make_run_dir(fit / "best", seed=0, steps=(0, 4, 16, 64, 256))
    rep = synthetic_report(inputs=(str(grp),), runs=(str(grp / "seed-0"), str(grp / "seed-1")),
                           n_seeds=2)  # fmt: skip
    rep = dataclasses.replace(rep, run=dataclasses.replace(rep.run, label=label))
    write_fit_folder(fit, rep)
    return grp, fit


def _parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_the_page_is_self_contained_and_holds_every_bin(tmp_path, capsys):
    grp, fit = _group_fit(tmp_path, label="<script>alert(1)</script> & co")
    assert main(["report", str(fit)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == fit / "report.html"
    page = _parse(path)
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == 2  # the overlay and the lag figure
    assert all(a["src"].startswith("data:image/png;base64,") and len(a["src"]) > 5000
               for a in imgs)  # fmt: skip
    raw = path.read_text(encoding="utf-8")
    assert "http://" not in raw and "https://" not in raw
    assert not [t for t, a in page.tags if t in ("script", "link", "iframe")]
    assert all(a["src"].startswith("data:") for _, a in page.tags if "src" in a)
    rep = FitReport.load(fit / "report.json")
    for v in rep.verdicts:
        assert f"{v.rank_lo}-{v.rank_hi - 1}" in page.cells
    for x in (x for v in rep.verdicts for x in v.levels):  # each lag row, with its verdict
        assert f"{x.level:.2f}" in page.cells and x.status in page.cells
    assert "never reaches" in page.cells  # a fit bin that never reaches, said so (not a z)
    assert "<script>alert" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "wall time" in raw.lower() and f"{rep.timings.total_s:.1f}" in page.cells


def test_lag_band_of_the_report_is_its_lag_rows():
    rep = synthetic_report(n_seeds=2)
    band = lag_band_of(rep)
    tr = band[(band.experiment == "transformer") & (band.rank_lo == 5)].set_index("level")
    for x in rep.verdicts[1].levels:
        row = tr.loc[x.level]
        assert (row.lag_ratio_mean, row.lag_ratio_lo, row.lag_ratio_hi) == (
            x.ratio_ref, x.ratio_lo, x.ratio_hi)  # fmt: skip
    fit = band[(band.experiment != "transformer") & (band.rank_lo == 5)].set_index("level")
    assert fit.loc[0.5, "lag_ratio_n"] == 0  # never reaches: no point
    top = band[band.rank_lo == 0]
    assert (top.lag_ratio_mean == 1.0).all() and len(top) == 4  # 2 levels x 2 experiments


def test_report_refuses_a_folder_it_does_not_own_and_bad_inputs(tmp_path, capsys):
    grp, fit = _group_fit(tmp_path)
    marker = (fit / ".phenomjax").read_bytes()
    (fit / ".phenomjax").unlink()  # a folder phenomjax did not mark (no run manifest either)
    assert main(["report", str(fit)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder phenomjax wrote" in err
    assert not (fit / "report.html").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a fit folder" in capsys.readouterr().err
    (fit / ".phenomjax").write_bytes(marker)
    (tmp_path / "moved").mkdir()
    shutil.move(grp, tmp_path / "moved" / "grp")  # the recorded path is gone, the name kept
    assert main(["report", str(fit)]) == 2
    assert "--run RUN" in capsys.readouterr().err
    assert main(["report", str(fit), "--run", str(tmp_path / "moved" / "grp")]) == 0
    capsys.readouterr()


def test_report_html_is_one_of_the_files_a_fit_folder_may_hold(tmp_path):
    _, fit = _group_fit(tmp_path)
    write_html(fit, plot=SMALL)
    shutil.rmtree(fit / "best")
    remove_owned(fit)  # report.html counts as phenomjax's own
    assert not fit.exists()


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)),
                None)  # fmt: skip


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed")
def test_the_page_renders_in_headless_chromium(tmp_path):
    _, fit = _group_fit(tmp_path)
    path = write_html(fit, plot=SMALL)
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--screenshot={shot}", "--window-size=1200,3000", path.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a page with figures, not a blank one
    dom = subprocess.run([*cmd[:-2], "--dump-dom", cmd[-1]], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert dom.returncode == 0 and "Verdict per rank bin" in dom.stdout
    assert dom.stdout.count("<img") == 2


def test_the_page_shows_the_refinement(tmp_path, capsys):
    grp, fit = _group_fit(tmp_path)
    rep = FitReport.load(fit / "report.json")
    refined = Refined(member=member(mode="expected"), mode="expected",
                      knobs=("lr", "scale", "shift"), before=(0.01, 0.1, 0.0),
                      after=(0.0123, 0.087, 0.05),
                      objective_before=5.3819, objective_after=5.3532, grad_norm=0.0204,
                      steps=10, total=5.3534, start_total=5.3833)  # fmt: skip
    rep = dataclasses.replace(rep, refined=refined, on_edge=("lr 0.0003 (the lowest)",))
    write_fit_folder(fit, rep)
    assert main(["report", str(fit)]) == 0
    page = _parse(Path(capsys.readouterr().out.strip()))
    cells, text = page.cells, " ".join(page.text)
    assert "Refinement" in text and "gradient norm at the refined optimum 0.0204" in text
    for row in (["lr", "0.01", "0.0123"], ["surrogate", "5.3819", "5.3532"],
                ["total (scored as a member)", "5.3833", "5.3534"]):  # fmt: skip
        i = cells.index(row[0])
        assert cells[i : i + 3] == row
    assert "best on a grid edge: lr 0.0003 (the lowest)" in text
