"""Strict configs: unknown keys, wrong types and bad values are named; overrides parse as TOML."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.config import apply_overrides, dotted, from_dict, load_config, to_dict
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


DATA_FIELDS = sorted(f.name for f in dataclasses.fields(DataConfig))


@given(
    st.dictionaries(
        st.sampled_from(DATA_FIELDS) | st.text(min_size=1, max_size=8),
        st.integers(-3, 10**6),
        max_size=4,
    )
)
@settings(max_examples=100, deadline=None)
def test_random_keys_are_refused_by_name(d):
    """An unknown key is a one-line ConfigError naming it; known keys with integer values load
    as given or are refused naming their own field."""
    unknown = sorted(set(d) - set(DATA_FIELDS))
    try:
        cfg = from_dict(DataConfig, d)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg
        if unknown:
            assert msg.startswith(f"{dotted('', unknown[0])}: unknown key"), msg
        else:
            assert any(msg.startswith((f"{k}:", f"data.{k}:")) for k in d), msg
    else:
        assert not unknown, f"unknown keys {unknown} were accepted"
        for k, v in d.items():
            assert getattr(cfg, k) == v


def _np_reference(name: str, cfg: OptimConfig, params: dict, grads: list[dict]) -> list[dict]:
    """Updates of `name` for successive gradients, by the optimizers' published rules (float64):
    global-norm clipping first, then the rule, then the learning-rate step."""
    b1, b2, eps, wd, lr = cfg.b1, cfg.b2, cfg.eps, cfg.weight_decay, cfg.lr
    state = {k: {"m": np.zeros_like(v), "v": np.zeros_like(v), "acc": np.full_like(v, 0.1)}
             for k, v in params.items()}  # fmt: skip
    out = []
    for t, g in enumerate(grads, start=1):
        norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
        scale = min(1.0, cfg.clip_norm / norm) if cfg.clip_norm > 0 else 1.0
        upd = {}
        for k, x in g.items():
            x, s, p = x * scale, state[k], params[k]
            if name == "sgd":
                u = x
            elif name == "momentum":  # heavy ball: trace = g + mu * trace
                s["m"] = x + b1 * s["m"]
                u = s["m"]
            elif name in ("adam", "adamw"):  # Kingma & Ba, bias-corrected; AdamW decoupled
                s["m"] = b1 * s["m"] + (1 - b1) * x
                s["v"] = b2 * s["v"] + (1 - b2) * x**2
                mh, vh = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
                u = mh / (np.sqrt(vh) + eps) + (wd * p if name == "adamw" else 0.0)
            elif name == "rmsprop":  # decay 0.9, eps inside the root (optax's default)
                s["v"] = 0.9 * s["v"] + 0.1 * x**2
                u = x / np.sqrt(s["v"] + eps)
            elif name == "adagrad":  # accumulator starts at 0.1
                s["acc"] = s["acc"] + x**2
                u = x / np.sqrt(s["acc"] + eps)
            else:  # lion (Chen et al. 2023): sign of the interpolation, then the momentum
                u = np.sign(b1 * s["m"] + (1 - b1) * x) + wd * p
                s["m"] = b2 * s["m"] + (1 - b2) * x
            upd[k] = -lr * u
        out.append(upd)
    return out


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "momentum", "rmsprop", "adagrad", "lion"])
def test_optimizers_match_their_rules(name):
    """Each named optimizer's first three updates (with clipping on) against a NumPy reference
    of its rule; the parameters are held fixed so weight decay reads known values."""
    cfg = OptimConfig(name=name, lr=0.05, clip_norm=1.0, weight_decay=0.1)
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3,)), "b": rng.normal(size=(2, 2))}
    # gradient norms above and below the clip threshold
    grads = [{k: f * rng.normal(size=v.shape) for k, v in params.items()} for f in (2.0, 0.1, 1.5)]
    tx = make_optimizer(cfg, 100)
    jp = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    state = tx.init(jp)
    want = _np_reference(name, cfg, params, grads)
    for t, g in enumerate(grads):
        upd, state = tx.update({k: jnp.asarray(v, jnp.float32) for k, v in g.items()}, state, jp)
        for k in params:
            np.testing.assert_allclose(np.asarray(upd[k]), want[t][k], rtol=2e-5, atol=1e-7,
                                       err_msg=f"{name} step {t} leaf {k}")  # fmt: skip


def test_schedule_warmup_stable_decay():
    # decay_steps: warm-up over 10, constant to step 80, linear to 0 over the last 30
    cfg = OptimConfig(lr=1.0, warmup_steps=10, decay="linear", decay_steps=30)
    s = schedule(cfg, 110)
    t = np.arange(111)
    want = np.interp(t, [0, 10, 80, 110], [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose([float(s(i)) for i in t], want, atol=1e-6)
    # a longer run with the same warm-up agrees with it up to its decay
    longer = schedule(dataclasses.replace(cfg, decay_steps=50), 200)
    np.testing.assert_allclose([float(longer(i)) for i in t[:80]], want[:80], atol=1e-6)
    # cosine over the last 30 steps; decay_steps of the whole run or more: the plain decay
    cos = schedule(dataclasses.replace(cfg, decay="cosine"), 110)
    ref = 0.5 * (1 + np.cos(np.pi * (t[80:] - 80) / 30))
    np.testing.assert_allclose([float(cos(i)) for i in t[80:]], ref, atol=1e-6)
    whole = schedule(dataclasses.replace(cfg, decay_steps=500), 110)
    plain = schedule(dataclasses.replace(cfg, decay_steps=0), 110)
    assert all(float(whole(i)) == float(plain(i)) for i in t)


def test_schedule_warmup_and_decay():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, decay="linear", final_lr_frac=0.0)
    s = schedule(cfg, 110)
    assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5, abs=1e-6) and float(s(110)) == pytest.approx(0.0)
    # the schedule reaches the optimizer: sgd's update is -lr(step) x gradient
    tx = make_optimizer(dataclasses.replace(cfg, name="sgd"), 110)
    state = tx.init(jnp.zeros(2))
    for step in range(12):
        upd, state = tx.update(jnp.ones(2), state)
        np.testing.assert_allclose(np.asarray(upd), -float(s(step)), atol=1e-6)
