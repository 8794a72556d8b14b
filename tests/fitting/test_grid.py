"""fitting.grid: the fit grid as a config, the CLI's short flags as --set aliases, and the cost
of a grid, counted (against a brute-force count) and refused above its bound."""

from __future__ import annotations

import argparse
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.cli import fit as cli_fit
from phenomjax.config import load_config
from phenomjax.errors import ConfigError
from phenomjax.fitting.grid import (
    MAX_GROUPS,
    ROW_BYTES,
    FitGridConfig,
    GridSection,
    OptimizerEntry,
    check_cost,
    default_grid,
    grid_cost,
    grid_path,
)


def test_shipped_grids_load_and_set_overrides(tmp_path):
    g = default_grid()
    assert {o.name for o in g.optimizers} == {"adam", "sgd", "adamw"}
    assert sum(len(o.lr) * len(o.settings()) for o in g.optimizers) == 8  # 96 members
    demo = default_grid("fit_demo")
    assert demo.grid.mode == ("stochastic",) and demo.grid.refit_seeds == 2
    path = tmp_path / "g.toml"
    path.write_text('[grid]\nw = [2]\n[[optimizers]]\nname = "adamw"\nweight_decay = [0.1, 1.0]\n')
    cfg = load_config(FitGridConfig, path, ["grid.w=[1,8]", "score.within=3"])
    assert cfg.grid.w == (1, 8) and cfg.score.within == 3
    assert [s["weight_decay"] for s in cfg.optimizers[0].settings()] == [0.1, 1.0]
    # fields an optimizer does not use do not multiply its members
    sgd = OptimizerEntry(name="sgd", lr=(1.0,), b1=(0.8, 0.9), weight_decay=(0.0, 0.1))
    assert sgd.settings() == [{"name": "sgd", "weight_decay": 0.0}]
    with pytest.raises(ConfigError, match="optimizers"):
        load_config(FitGridConfig, path, ["optimizers=[]"])
    with pytest.raises(ConfigError, match="grid.refit_seeds"):
        load_config(FitGridConfig, path, ["grid.refit_seeds=0"])
    with pytest.raises(ConfigError, match="grid.mode"):
        load_config(FitGridConfig, path, ["grid.mode=['sideways']"])
    with pytest.raises(ConfigError, match="grid.modes: unknown key"):  # one spelling: mode
        load_config(FitGridConfig, path, ["grid.modes=['expected']"])


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli_fit.add_arguments(p)
    argv = ["RUN"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return p.parse_args(argv)


def test_old_flags_are_aliases_of_set_overrides():
    """Each short flag is the --set override ALIASES names; the loaded grids are equal."""
    base = default_grid()
    cases = {
        "w": ("1,2", "grid.w=[1, 2]"), "d": ("4", "grid.d=[4]"),
        "scale": ("0.1", "grid.scale=[0.1]"), "modes": ("expected", 'grid.mode=["expected"]'),
        "param": ("shared", 'grid.param=["shared"]'), "batch": ("8", "grid.batch=8"),
        "num_evals": ("12", "grid.num_evals=12"), "refit_seeds": ("2", "grid.refit_seeds=2"),
        "no_shift": (True, "score.shift=false"),
    }  # fmt: skip
    for flag, (value, override) in cases.items():
        got = cli_fit.alias_overrides(_args(**{flag: value}), base)
        assert got == [override], flag
        a = load_config(FitGridConfig, grid_path(), got)
        b = load_config(FitGridConfig, grid_path(), [override])
        assert a == b
    # --lr (and --optimizer): one [[optimizers]] entry, the first entry's betas kept
    got = cli_fit.alias_overrides(_args(lr="0.01,0.03", optimizer="sgd"), base)
    cfg = load_config(FitGridConfig, grid_path(), got)
    assert [(o.name, o.lr) for o in cfg.optimizers] == [("sgd", (0.01, 0.03))]
    only_lr = load_config(FitGridConfig, grid_path(), cli_fit.alias_overrides(_args(lr="1"), base))
    assert [(o.name, o.lr, o.b2) for o in only_lr.optimizers] == [("adam", (1.0,), (0.999,))]


def test_seeds_is_a_deprecated_alias(recwarn):
    got = cli_fit.alias_overrides(_args(seeds=4), default_grid())
    assert got == ["grid.refit_seeds=4"]
    assert any("--refit-seeds" in str(w.message) for w in recwarn.list)


def _brute_groups(cfg: FitGridConfig) -> tuple[int, int]:
    g = cfg.grid
    families = {"adam": "adamw", "adamw": "adamw", "sgd": "momentum", "momentum": "momentum"}
    groups, members = set(), 0
    for mode, e in itertools.product(g.mode, cfg.optimizers):
        for s in itertools.product(e.settings(), g.w, g.d, g.param, g.forget, g.readout_scale):
            groups.add((mode, families[e.name], *s[1:]))  # a family shares one program
            members += len(e.lr) * len(g.scale)
    return len(groups), members


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 2),
       st.sampled_from(["adam", "sgd", "adamw"]), st.integers(1, 3), st.integers(1, 5000),
       st.integers(1, 30))  # fmt: skip
def test_cost_counts_members_groups_and_rows(nw, nd, nlr, nwd, opt, seeds, K, evals):
    cfg = FitGridConfig(
        grid=GridSection(mode=("expected", "stochastic"), w=tuple(range(1, nw + 1)),
                         d=tuple(range(1, nd + 1)), forget=(0.0, 0.01), refit_seeds=seeds,
                         num_evals=evals),
        optimizers=(OptimizerEntry(name=opt, lr=tuple(10.0 ** -i for i in range(1, nlr + 1)),
                                   weight_decay=tuple(0.1 * i for i in range(nwd))),
                    OptimizerEntry(name="sgd", lr=(1.0,))),
    )  # fmt: skip
    c = grid_cost(cfg, K)
    assert (c.groups, c.members) == _brute_groups(cfg)
    assert c.refit_members == seeds - 1
    assert c.curve_rows == (c.members + seeds - 1) * K * (evals + 1)
    assert c.curve_bytes == c.curve_rows * ROW_BYTES


def test_a_grid_past_the_bound_is_refused_in_one_line():
    too_many = FitGridConfig(
        grid=GridSection(w=tuple(range(1, MAX_GROUPS + 2)), mode=("expected",))
    )
    with pytest.raises(ConfigError, match=f"compiled groups .*at most {MAX_GROUPS}"):
        check_cost(grid_cost(too_many, 100), "fit of r")
    wide = FitGridConfig(grid=GridSection(num_evals=10_000))
    with pytest.raises(
        ConfigError, match=r"curve rows .* GiB before compression\); at most 64 GiB"
    ):
        check_cost(grid_cost(wide, 100_000), "fit of r")
    check_cost(grid_cost(default_grid(), 100_000), "the default grid at paper scale")
