"""Write docs/results.md from the runs it cites, so that no number there can drift from the code.

    python scripts/results.py --runs runs            # print
    python scripts/results.py --runs runs --write    # rewrite docs/results.md
    python scripts/results.py --runs runs --write --only capacity   # that section alone

Each section reads run directories that one command makes (named in the section); a section
whose runs are missing says which command makes them instead of showing a number. Nothing is
trained here: the numbers are read from the runs' tables with the package's own summaries (the
same functions `phenomjax analyze`, `fit` and `capacity` print with).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # v3_transformer's table, loaded as a test loads it

from v3_transformer import summary as summary_v3  # noqa: E402

from phenomjax.analysis.binning import bin_label  # noqa: E402
from phenomjax.analysis.discrepancy import _bootstrap, log_ratios, slopes  # noqa: E402
from phenomjax.analysis.pipeline import Request, analyze  # noqa: E402
from phenomjax.analysis.settings import load_analysis_config  # noqa: E402
from phenomjax.analysis.text import lag_rows  # noqa: E402
from phenomjax.fitting.report import FitReport, lag_lines, reproduction_lines  # noqa: E402
from phenomjax.runs import RunDir  # noqa: E402

CPU_EXPERIMENTS = ("small_cpu", "medium_cpu", "large_rope_cpu", "large_lr_cpu")


def _cell(v: object) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def _markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for _, r in df.iterrows():
        cells = [_cell(v) for v in r]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _missing(what: str, command: str) -> list[str]:
    return [f"*Not measured in this build: {what} is missing. `{command}` makes it.*", ""]


def _is_run(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def _complete(path: Path) -> bool:
    """A finished run, or a seed group whose every seed finished."""
    seeds = sorted(path.glob("seed-*")) if path.is_dir() else []
    paths = seeds or [path]
    return all(_is_run(p) and RunDir(p).manifest().get("status") == "complete" for p in paths)


def _manifest(path: Path) -> dict:
    return RunDir(path).manifest()


def _analysis(paths: list[Path], experiment: str):
    cfg = load_analysis_config(None)
    return analyze(cfg, Request(paths=paths, experiment=experiment, selection_name="all"))


def _final_bins(a) -> pd.DataFrame:
    b = a.binned[a.binned["step"] == a.binned["step"].max()]
    cols = [c for c in ("presentations", "loss", "floor", "accuracy", "ceiling") if c in b]
    out = b[["rank_lo", "rank_hi", *cols]].copy()
    labels = [bin_label(int(lo), int(hi)) for lo, hi in zip(b.rank_lo, b.rank_hi, strict=True)]
    out.insert(0, "rank bin", labels)
    return out.drop(columns=["rank_lo", "rank_hi"])


def _fit_lines(fit: Path) -> list[str]:
    report = FitReport.load(fit / "report.json")
    return ["```", *lag_lines(report, ""), *reproduction_lines(report, ""), "```", ""]


def demo_section(runs: Path, name: str = "demo") -> list[str]:
    run, fit = runs / name, runs / f"{name}-fit"
    out = ["## The demo", "", "`phenomjax demo` (phenomjax/configs/demo.toml) writes "
           f"`{run}` and `{fit}`.", ""]  # fmt: skip
    if not _is_run(run) or not (fit / "report.json").is_file():
        return out + _missing("the demo run or its fit", "phenomjax demo")
    m = _manifest(run)
    a = _analysis([run], "demo")
    bits = a.runs.iloc[0].get("memorized_bits", np.nan) if len(a.runs) else np.nan
    out += [f"K = {m.get('K')}, L = {m.get('L')}, {m.get('n_params')} parameters. "
            "Rank bins at the last evaluation (loss in nats; the Bayes floor and accuracy "
            "ceiling are the mixture's):", "", _markdown(_final_bins(a)), ""]  # fmt: skip
    if np.isfinite(bits):
        out += [f"Memorized bits: {bits:.0f} ({bits / m['n_params']:.4f} per parameter).", ""]
    out += [
        "The lag of the transformer and of the fit (ratio of presentations to the top bin's "
        "at each level of normalized excess loss; the fit report's wording):",
        "",
    ]
    return out + _fit_lines(fit)


def experiments_section(runs: Path) -> list[str]:
    out = ["## The four CPU-scale experiments", "",
           "`phenomjax experiments --cpu` trains `experiments/<name>_cpu.toml` into "
           "`runs/<name>_cpu`; `python scripts/fit_experiments.py` fits them into "
           "`runs/<name>_cpu-fit`. Lag ratio per rank bin and level (a run's cell is "
           "\"ratio (ranks reached / ranks)\"):", ""]  # fmt: skip
    found = [runs / n for n in CPU_EXPERIMENTS if _complete(runs / n)]
    if not found:
        return out + _missing("runs/<name>_cpu", "phenomjax experiments --cpu")
    for path in found:
        a = _analysis([path], path.name)
        out += [f"### {path.name}", "", _markdown(lag_rows(a).drop(columns=["member"])), ""]
        fit = path.parent / f"{path.name}-fit"
        if (fit / "report.json").is_file():
            out += _fit_lines(fit)
    missing = sorted(set(CPU_EXPERIMENTS) - {p.name for p in found})
    if missing:
        out += _missing(", ".join(f"runs/{n}" for n in missing), "phenomjax experiments --cpu")
    return out


def capacity_section(runs: Path) -> list[str]:
    out = ["## Capacity", ""]
    forms = (("capacity", ""), ("capacity-quick", " --quick"))
    found = [(runs / n, flag) for n, flag in forms if (runs / n / "capacity_sizes.csv").is_file()]
    if not found:
        cmd = f"phenomjax capacity experiments/capacity_cpu.toml --out {runs / 'capacity'}"
        return out + _missing(f"{runs}/capacity/capacity_sizes.csv", cmd)
    for cap, flag in found:
        out += [f"`phenomjax capacity experiments/capacity_cpu.toml{flag} --out {cap}`. One row "
                "per size (capacity in bits: the peak of memorized bits over K; `estimate` says "
                "whether it converged, was extrapolated or is a lower bound; bits_per_param_core "
                "counts parameters without embeddings, positions and LayerNorm):", "",
                _markdown(pd.read_csv(cap / "capacity_sizes.csv")), ""]  # fmt: skip
        table = pd.read_csv(cap / "capacity.csv")
        cols = ["n_layer", "n_head", "head_dim", "params", "lr", "K", "exposures",
                "memorized_bits", "bits_ceiling", "dataset_bits", "gain_last_doubling",
                "converged", "extrapolated", "bits_estimate", "bits_lo", "bits_hi"]  # fmt: skip
        out += ["Every K of the transformer sizes (capacity.csv; its last budget in exposures per "
                "sequence, the Bayes ceiling beside the dataset bits):", "",
                _markdown(table.loc[table["model"] == "transformer", cols]), ""]  # fmt: skip
        out += _budget_lines(cap / "runs.csv")
        fit_path = cap / "capacity_fit.json"
        if fit_path.is_file():
            out += ["Fitted bits per parameter (capacity_fit.json):", "", "```",
                    json.dumps(json.loads(fit_path.read_text()), indent=1), "```", ""]  # fmt: skip
    return out


def _budget_lines(path: Path) -> list[str]:
    """Memorized bits of every transformer (size, K) at each budget it trained (runs.csv): how
    the doubling gains shrink, or do not."""
    if not path.is_file():
        return []
    runs = pd.read_csv(path)
    runs = runs[(runs["model"] == "transformer") & (runs["role"] == "bracket")]
    if runs.empty:
        return []
    dims = zip(runs.n_layer, runs.n_head, runs.head_dim, strict=True)
    runs = runs.assign(size=[f"{int(a)}x{int(b)}x{int(c)}" for a, b, c in dims])
    table = runs.pivot_table(index=["size", "K"], columns="exposures", values="memorized_bits")
    table.columns = [f"{int(e)}" for e in table.columns]
    table = table.map(lambda b: "-" if pd.isna(b) else f"{b:.0f}").reset_index()
    return ["Memorized bits at each budget (runs.csv; columns: exposures per sequence, - : not "
            "trained, the K having converged or reached its Bayes ceiling before):", "",
            _markdown(table), ""]  # fmt: skip


def _capacity_lines(ver: pd.DataFrame) -> list[str]:
    """The capacity matching per size: the transformer's capacity and its source, V1's matched
    D_eff and V1's own capacity measured there (or why V1 was not fitted)."""
    v1 = ver[ver["D_eff_how"].fillna("") != ""].drop_duplicates("size")
    rows = [{"size": r.size, "transformer capacity (bits)": round(float(r.capacity_bits)),
             "source": r.capacity_source,
             "V1 D_eff": "-" if not np.isfinite(r.D_eff) else int(r.D_eff),
             "V1 capacity (bits)": "-" if not np.isfinite(r.v1_capacity_bits)
             else round(float(r.v1_capacity_bits)), "matched": r.D_eff_how}
            for r in v1.itertuples()]  # fmt: skip
    return ["Capacity matching (regime_verdicts.csv): V1's D_eff is the one whose own measured "
            "capacity on uniform data equals the transformer size's capacity; it is not fitted.",
            "", _markdown(pd.DataFrame(rows)), ""]  # fmt: skip


def _interval(r) -> str:
    return "-" if not np.isfinite(r.value) else f"{r.value:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]"


def _discrepancy_lines(disc: pd.DataFrame, lagging: list[str]) -> list[str]:
    """The pre-registered metric where the transformer lags, ranks 5-9: the transformer's mean
    ln lag ratio per level and its slope across levels, and each model's difference from it
    with its 95 % bootstrap interval over seeds (- : a level not compared)."""
    d = disc[(disc["rank_lo"] == 5) & disc["regime"].isin(lagging)]
    if not len(d):
        return []
    rows = []
    for (regime, q), g in d.groupby(["regime", "quantity"], sort=False):
        t = g.iloc[0]
        row = {
            "regime": regime,
            "quantity": q if q == "slope" else f"{float(q):.0%}",
            "transformer": "-"
            if not np.isfinite(t.transformer)
            else f"{t.transformer:+.2f} ({t.transformer_min:+.2f} to {t.transformer_max:+.2f})",
        }
        row.update({m: _interval(r) for m, r in zip(g["model"], g.itertuples(), strict=True)})
        rows.append(row)
    return ["The pre-registered metric where the transformer lags (ranks 5-9; "
            "regime_discrepancy.csv): the transformer's mean ln lag ratio at each level and its "
            "slope against -ln(level) (in parentheses: its range over seeds), then each model "
            "minus the transformer with its 95 % bootstrap interval over seeds. V1 predicts a "
            "slope of 0 (one constant factor), V2 a positive one (a lag that compounds at deeper "
            "levels).", "",
            _markdown(pd.DataFrame(rows).fillna("-")), ""]  # fmt: skip


FIVE_SEEDS = ("phenomjax regime experiments/regime_cpu.toml --out runs/regime-5seeds "
              "--set 'map.sizes=[{n_layer=2,n_head=2,head_dim=8}]' --set 'map.K=[1024]' "
              "--set 'map.seeds=[0,1,2,3,4]'")  # fmt: skip


def _five_seed_lines(five: Path) -> list[str]:
    """The same metric over five seeds at one regime (the protocol's bootstrap over >= 5)."""
    path = five / "regime_discrepancy.csv"
    if not path.is_file():
        return _missing(str(path), FIVE_SEEDS)
    d = pd.read_csv(path)
    lines = _discrepancy_lines(d, sorted(set(d["regime"])))
    return [f"Five seeds (`{FIVE_SEEDS}`; seeds 0-2 are the map's runs, reused):", "",
            *lines[2:]]  # fmt: skip


V3 = "python scripts/v3_transformer.py --regime l2h2d8-K1024 --out runs/v3_tail.csv"


def _v3_lines(path: Path) -> list[str]:
    """The V3 control on the transformer: ranks 5-9's lag ratio per seed on the Zipf data and
    with the tail replaced by one constant sequence of the same mass."""
    head = ["The V3 control on the transformer (`" + V3 + "`): the regime's three seeds trained "
            "on their Zipf data and on ranks 0-9 plus one constant sequence carrying the tail's "
            "mass. Lag ratio of ranks 5-9 per seed, and their geometric mean. V1 predicts that "
            "the lag stays (ranks 0-4 still deflate ranks 5-9), cross-talk from the tail (V3) "
            "that it vanishes.", ""]  # fmt: skip
    if not path.is_file():
        return head + _missing(str(path), V3)
    t = summary_v3(pd.read_csv(path))
    t["geo_mean"] = [f"{v:.2f}" if np.isfinite(v) else "-" for v in t["geo_mean"]]
    t = t.rename(columns={"geo_mean": "geometric mean", "lags_in_every_seed": "lags in every seed"})
    return head + [_markdown(t), ""]


def _slope_interval(lags: pd.DataFrame, n: int = 4000) -> tuple[float, float, float, int]:
    """The transformer's ranks 5-9 slope of ln lag ratio against -ln(level): mean over seeds
    and its 95 % percentile bootstrap interval, and the number of seeds."""
    t = lags[lags["model"] == "transformer"].rename(columns={"ratio": "lag_ratio"})
    s = slopes(log_ratios(t).get((5, 10), np.full((1, 3), np.nan)))
    s = s[np.isfinite(s)]
    if len(s) < 2:
        return np.nan, np.nan, np.nan, len(s)
    mean, lo, hi = _bootstrap(np.zeros(1), s, n, np.random.default_rng(0))  # s's mean - 0
    return mean, lo, hi, len(s)


def _answer_lines(runs: Path, disc: pd.DataFrame, ver: pd.DataFrame, lagging: list[str]):
    """The answer in words, each clause computed from the tables of this section."""
    out = ["**The answer.**"]
    matched = sorted(set(ver.loc[ver["D_eff_how"].fillna("") != "", "model"])) if (
        "D_eff_how" in ver.columns) else []  # fmt: skip
    d = disc[(disc["rank_lo"] == 5) & disc["regime"].isin(lagging) & disc["compared"]
             & (disc["quantity"] != "slope")]  # fmt: skip
    counts = []
    for m in ["fit-demo", *matched]:
        g = d[d["model"] == m]
        if len(g):
            ahead = int((g["transformer"] + g["value"] < 0).sum())
            counts.append(f"{ahead} of {len(g)} for {m}")
    if counts:
        out.append("Where the transformer lags, the fitted models put ranks 5-9 ahead of ranks "
                   "0-4 (lag ratio below 1) at these shares of the compared levels: "
                   + ", ".join(counts) + ".")  # fmt: skip
    five = runs / "regime-5seeds" / "regime_lags.csv"
    if five.is_file():
        mean, lo, hi, n = _slope_interval(pd.read_csv(five))
        if np.isfinite(mean):
            form = ("one constant factor, V1's form, is inside it" if lo <= 0 <= hi else
                    "a lag that compounds at deeper levels, V2's form" if lo > 0 else
                    "a lag that shrinks at deeper levels, neither V1's nor V2's form")  # fmt: skip
            out.append(f"Over {n} seeds the transformer's slope across levels is {mean:+.2f} "
                       f"[{lo:+.2f}, {hi:+.2f}]: {form}.")  # fmt: skip
    v3 = runs / "v3_tail.csv"
    if v3.is_file():
        t = summary_v3(pd.read_csv(v3))
        lv = {k: ", ".join(g.loc[g["lags_in_every_seed"], "level"]) or "no level"
              for k, g in t.groupby("data")}  # fmt: skip
        out.append(f"Replacing the tail by one constant sequence of its mass, ranks 5-9 lag in "
                   f"every seed at {lv.get('head + constant tail', 'no level')}, against "
                   f"{lv.get('zipf', 'no level')} on the Zipf data.")  # fmt: skip
    return [" ".join(out), ""]


def regime_section(runs: Path) -> list[str]:
    reg = runs / "regime"
    out = ["## The regime map", "", f"`phenomjax regime experiments/regime_cpu.toml --out {reg}`: "
           "three transformer sizes x two K, three seeds each, with the model as stated "
           "(fit-demo) and the capacity variants V1 (fit-v1) and V2 (fit-v2), each with its D_eff "
           "matched to the size's capacity, fitted to every seed group. Lag ratio of ranks 5-9 "
           "(presentations to reach a level of normalized "
           "excess loss over ranks 0-4's): the transformer's three seeds, and each fitted "
           "model's best member (- : never reaches it). x is the transformer's capacity per "
           "dataset bit, capacity / (K (L - 1)) (parameters per dataset bit where no capacity "
           "is known).", ""]  # fmt: skip
    if not (reg / "regime_lags.csv").is_file():
        return out + _missing(f"{reg}/regime_lags.csv",
                              "phenomjax regime experiments/regime_cpu.toml")  # fmt: skip
    lags = pd.read_csv(reg / "regime_lags.csv")
    lags = lags[lags["rank_lo"] == 5]
    rows = []
    for (name, x, model), g in lags.groupby(["regime", "x", "model"], sort=False):
        row = {"regime": name, "x": round(float(x), 3), "model": model}
        for lv, h in g.groupby("level"):
            row[f"{lv:.0%}"] = " ".join("-" if not np.isfinite(v) else f"{v:.2f}"
                                        for v in h["ratio"])  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["x", "model"])
    out += [_markdown(table[["regime", "x", "model", "75%", "50%", "25%"]]), ""]
    ver = pd.read_csv(reg / "regime_verdicts.csv")
    if "capacity_bits" in ver.columns:
        out += _capacity_lines(ver)
    lagging = sorted(set(ver.loc[ver["transformer_lags"] == True, "regime"]))  # noqa: E712
    passing = ver[ver["agrees"] == True]  # noqa: E712 (NaN: not fitted)
    good = passing[passing["regime"].isin(lagging)]
    invented = passing[~passing["regime"].isin(lagging)]
    out += [f"**In words.** The transformer lags in {len(lagging)} of {ver['regime'].nunique()} "
            f"regimes ({', '.join(lagging) or 'none'}). A fitted model passes the comparison in "
            f"{len(good)} of the {len(lagging) * ver['model'].nunique()} (regime, model) pairs "
            "where it lags"
            + (f" ({', '.join(good['regime'] + ' ' + good['model'])})" if len(good) else "")
            + f", and in {len(invented)} where it does not"
            + (f" ({', '.join(invented['regime'] + ' ' + invented['model'])})"
               if len(invented) else "") + ".", ""]  # fmt: skip
    disc = reg / "regime_discrepancy.csv"
    if disc.is_file():
        out += _discrepancy_lines(pd.read_csv(disc), lagging)
    out += _five_seed_lines(runs / "regime-5seeds")
    out += _v3_lines(runs / "v3_tail.csv")
    if disc.is_file():
        out += _answer_lines(runs, pd.read_csv(disc), ver, lagging)
    out += ["The pre-registered verdict (analysis/discrepancy.py: every level that all transformer "
            "seeds reach compared, each within a factor 2 and of the transformer's sign; "
            "`transformer_lags`: some bin's whole seed range above 1):", "",
            _markdown(ver[["regime", "x", "model", "transformer_lags", "agrees"]]
                      .fillna({"agrees": "not fitted"})), ""]  # fmt: skip
    pred = reg / "regime_predictions.csv"
    if pred.is_file():
        p = pd.read_csv(pred)
        z = (p[p["verdict"] == "curve"].groupby(["model", "source", "target"])["z"].median()
             .reset_index().rename(columns={"z": "median z per bin"}))  # fmt: skip
        out += ["Prediction across regimes without refitting (the best member at the first "
                "regime trained on each other regime's data, scored against its seed band; "
                "z <= 2 is within the band):", "", _markdown(z), ""]  # fmt: skip
    return out


SECTIONS = {"demo": demo_section, "experiments": experiments_section,
            "regime": regime_section, "capacity": capacity_section}  # fmt: skip


def _stamp() -> str:
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    return f"{datetime.date.today().isoformat()} ({machine})"


def splice(text: str, name: str, runs: Path) -> str:
    """`text` (docs/results.md) with section `name` regenerated from `runs` and stamped; the
    other sections are kept as they were generated."""
    new = SECTIONS[name](runs)
    new[1:1] = ["", f"This section alone was regenerated by `python scripts/results.py --runs "
                f"{runs} --write --only {name}` on {_stamp()}."]  # fmt: skip
    lines = text.rstrip("\n").split("\n")
    head = new[0]
    if head not in lines:
        return "\n".join([*lines, "", *new]).rstrip() + "\n"
    i = lines.index(head)
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
    return "\n".join([*lines[:i], *new, *lines[j:]]).rstrip() + "\n"


def render(runs: Path) -> str:
    out = ["# Results", "",
           f"Generated by `python scripts/results.py --runs {runs} --write` on {_stamp()} "
           "from the run directories each section names; do not edit by hand. Loss in nats; "
           "presentations are the exact number of times a rank was drawn into a batch.",
           ""]  # fmt: skip
    for section in SECTIONS.values():
        out += section(runs)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder of the runs")
    parser.add_argument("--write", action="store_true", help="rewrite docs/results.md")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="regenerate one section alone")
    args = parser.parse_args(argv)
    path = ROOT / "docs" / "results.md"
    text = splice(path.read_text(), args.only, args.runs) if args.only else render(args.runs)
    if args.write:
        path.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
