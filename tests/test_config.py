"""Strict configs: unknown keys, wrong types and bad values are named; overrides parse as TOML."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.config import apply_overrides, from_dict, load_config, to_dict
from phenomjax.data import DataConfig
from phenomjax.errors import ConfigError
from phenomjax.optim import OptimConfig, make_optimizer, schedule


@dataclasses.dataclass(frozen=True)
class Cfg:
    data: DataConfig = DataConfig()
    optimizer: OptimConfig = OptimConfig()
    name: str = "x"


def test_roundtrip_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "y"\n[data]\nK = 12\nalpha = 0\n[optimizer]\nname = "sgd"\n')
    cfg = load_config(Cfg, p, ["data.L=5", "optimizer.lr=3e-4", "optimizer.decay=cosine"])
    assert cfg.data == DataConfig(K=12, L=5, alpha=0.0)
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 3e-4
    assert cfg.optimizer.decay == "cosine"
    assert from_dict(Cfg, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[data]\nKK = 3\n", "data.KK: unknown key"),
        ("[data]\nK = 0\n", "data.K"),
        ("[data]\nL = 1\n", "data.L"),
        ("[data]\nalpha = -1.0\n", "data.alpha"),
        ('[data]\nK = "many"\n', "data.K: expected an integer"),
        ('[optimizer]\nname = "adamax2"\n', "optimizer.name"),
        ('[optimizer]\ndecay = "step"\n', "optimizer.decay"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[data\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_field(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, p)
    assert needle in str(e.value) and "bad.toml" in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["data.K"])
    with pytest.raises(ConfigError, match="data.nope"):
        load_config(Cfg, None, ["data.nope=3"])


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=4))
@settings(max_examples=50, deadline=None)
def test_random_keys_never_crash_deep(d):
    try:
        from_dict(DataConfig, d)
    except ConfigError as e:
        assert "\n" not in str(e)


def test_schedule_warmup_and_decay():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, decay="linear", final_lr_frac=0.0)
    s = schedule(cfg, 110)
    assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5, abs=1e-6) and float(s(110)) == pytest.approx(0.0)
    for name in ("adam", "adamw", "sgd", "momentum", "rmsprop", "adagrad", "lion"):
        make_optimizer(dataclasses.replace(cfg, name=name, clip_norm=1.0), 100)
