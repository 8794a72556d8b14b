"""capacity/config.py and the command: bad configs name their field, --quick's overrides,
the shipped configs load."""

from __future__ import annotations

import pytest

from phenomjax.capacity import CapacityConfig, apply_quick
from phenomjax.cli import main
from phenomjax.config import load_config
from phenomjax.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[model]\nn_layer = 3\n", "model.n_layer"),
        ("[ladder]\nsizes = []\n", "ladder.sizes"),
        ("[ladder]\nL = 1\n", "ladder.L"),
        ("[bracket]\nfactors = []\n", "bracket.factors"),
        ("[saturation]\nfirst_exposures = 2000\n", "saturation.first_exposures"),
        ("[saturation]\nlrs = [0.0]\n", "saturation.lrs"),
        ("[quick]\nmax_K = -1\n", "quick.max_K"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, text, field):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(CapacityConfig, bad)


def test_cli_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[saturation]\nrel_tol = 0\n")
    assert main(["capacity", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phenomjax capacity: error:") and "saturation" in err
    assert "\n" not in err


def test_quick_overrides_and_shipped_configs():
    for name in ("capacity_cpu", "capacity"):
        cfg = load_config(CapacityConfig, f"experiments/{name}.toml")
        q = apply_quick(cfg)
        s = q.saturation
        assert s.first_exposures <= s.min_exposures <= s.max_exposures
        if cfg.quick.max_exposures:
            assert s.max_exposures == cfg.quick.max_exposures
        if cfg.quick.lrs:
            assert s.lrs == cfg.quick.lrs
    cfg = load_config(CapacityConfig, "experiments/capacity_cpu.toml", ["ladder.L=64"])
    assert cfg.ladder.L == 64
