"""The researcher's path of docs/design.md §1, end to end at tiny size through the commands:
`train --seeds 0,1` -> `analyze --run GROUP` -> `fit GROUP` -> `compare GROUP FIT` ->
`report FIT`, each reading what the one before wrote, with no step in between."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from phenomjax.cli import main

GRID = """[grid]
mode = ["expected"]
w = [2]
d = [2]
scale = [0.1]
refit_seeds = 1
num_evals = 6

[[optimizers]]
name = "adam"
lr = [3e-2]
"""


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


def test_train_analyze_fit_compare_report_on_a_seed_group(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("grid.toml").write_text(GRID)
    steps = ["--set", "train.steps=30", "--set", "train.num_evals=4"]
    assert main(["train", "tiny", "--seeds", "0,1", "--out", "runs/grp", *steps,
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["analyze", "--run", "runs/grp", "--no-show-plots"]) == 0
    out = capsys.readouterr().out
    assert "seed group(s) grp" in out and "geo. mean [min, max] over 2 seeds" in out
    figs = sorted(p.name for p in Path("cache/zipf_figs").glob("*.png"))
    assert figs and all(n.startswith("grp_") for n in figs)  # <experiment>_<quantity>.png
    assert main(["fit", "runs/grp", "--config", "grid.toml", "--no-progress"]) == 0
    assert "seed band over 2 seeds" in capsys.readouterr().out
    assert main(["compare", "runs/grp", "runs/grp-fit"]) == 0
    assert Path("runs/grp-fit/figures/grp_overlay.png").is_file()
    capsys.readouterr()
    assert main(["report", "runs/grp-fit"]) == 0
    page = Path(capsys.readouterr().out.strip())
    assert page == Path("runs/grp-fit/report.html")
    imgs = Images()
    imgs.feed(page.read_text(encoding="utf-8"))
    assert imgs.src and all(s.startswith("data:image/png;base64,") for s in imgs.src)
