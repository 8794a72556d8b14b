"""The registry of variants (phenomjax/phenom/variants): plug-ins through sweep, grid and plan."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plan.test_plan import _cost

from phenomjax.errors import ConfigError
from phenomjax.fitting.grid import FitGridConfig, GridSection, grid_cost
from phenomjax.phenom import cost as phenom_cost
from phenomjax.phenom import model as phenom
from phenomjax.phenom import variants
from phenomjax.phenom.sweep import describe, read_sweep, sweep
from phenomjax.phenom.train import ModelSection, PhenomConfig, build_model

from .test_sweep import base, single

HOOKS = ("Knobs", "init", "trainable_mask", "loss_and_grad", "sequence_metrics", "post_update",
         "features_width", "table_flops", "row_flops", "table_floats")  # fmt: skip


def test_every_variant_has_every_hook_and_the_registry_imports_no_jax():
    for name, mod in variants.VARIANTS.items():
        assert [h for h in HOOKS if not hasattr(mod, h)] == [], name
    code = (
        "import json, sys; from phenomjax.phenom import variants; "
        "from phenomjax.fitting import members, grid; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'jax')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout  # fmt: skip
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_old_configs_name_their_variant():
    """forget / readout_scale at top level is readout_forget; neither is the model as stated."""
    assert phenom.PhenomModel(N=4).variant == "stated"
    assert phenom.PhenomModel(N=4, forget=0.1).variant == "readout_forget"
    assert phenom.PhenomModel(N=4, readout_scale=1.0).variant == "readout_forget"
    cfg = dataclasses.replace(base(), model=ModelSection(w=2, d=4, variant="v1", D_eff=8))
    assert build_model(cfg).variant == "v1" and build_model(cfg).D_eff == 8


def test_a_variant_axis_sweeps_only_its_own_knobs_and_a_member_equals_its_single_run(tmp_path):
    cfg = base()
    axes = {"lr": [1e-2], "variant": ["stated", "v1"], "D_eff": [4, 8]}
    table = sweep(cfg, axes, out=tmp_path / "sw", progress=False)
    assert table.variant.tolist() == ["stated", "v1", "v1"]  # no stated member with D_eff 8
    assert table.D_eff.tolist() == [64, 4, 8] and table.member.tolist() == [0, 1, 2]
    assert describe(cfg, axes)["axes"]["variant"] == ("stated", "v1")
    _, curves = read_sweep(tmp_path / "sw", members=[2])
    one = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, variant="v1", D_eff=8))
    ref = single(one, tmp_path, lr=1e-2, scale=0.1, seed=0, name="ref")
    np.testing.assert_allclose(curves.loss, ref.loss, rtol=1e-5, atol=1e-6)
    plain = sweep(cfg, {"lr": [1e-2]}, out=tmp_path / "plain", progress=False)
    _, plain_curves = read_sweep(tmp_path / "plain")
    _, stated = read_sweep(tmp_path / "sw", members=[0])
    np.testing.assert_array_equal(stated.loss, plain_curves.loss)
    assert plain.variant.tolist() == ["stated"]


def test_grid_counts_the_variant_settings_and_refuses_bad_knobs():
    g = GridSection(w=(2,), variant=("stated", "v1"), D_eff=(16, 64), forget=(0.0,))
    g.validate()
    cost = grid_cost(FitGridConfig(grid=g), K=10)
    assert cost.groups == 2 * 3  # two modes x (stated, v1 D_eff 16, v1 D_eff 64)
    with pytest.raises(ConfigError, match="D_eff: expected an integer"):
        GridSection(D_eff=(0,)).validate()
    with pytest.raises(ConfigError, match="variant: expected names"):
        GridSection(variant=("nope",)).validate()
    with pytest.raises(ConfigError, match="forget: expected a number in"):
        GridSection(forget=(1.5,)).validate()


@pytest.mark.parametrize("D_eff", [4, 32])
def test_v1_flops_match_xla_cost_analysis(D_eff):
    """The plan's FLOPs of V1 (variants/deflation.py, row_flops) within 10% of XLA's."""
    K, L = 100, 12
    cfg = PhenomConfig(model=ModelSection(variant="v1", D_eff=D_eff))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, K=K, L=L))
    model = build_model(cfg)
    _, _, trainable = phenom_cost.shapes(cfg, model)
    step, ev = phenom_cost.work(cfg, model, trainable, trainable)
    p = phenom.init_params(jax.random.key(0), model)
    bits, wts = jnp.zeros((K, L), jnp.uint8), jnp.full((K,), 1.0 / K)
    loss_and_grad, metrics = phenom.kernels_of(model)
    xla_step = _cost(jax.jit(loss_and_grad).lower(p, bits, wts).compile())["flops"]
    xla_eval = _cost(jax.jit(lambda p, b: metrics(p, b, chunk=K)).lower(p, bits).compile())
    assert step.flops - 12 * trainable == pytest.approx(xla_step, rel=0.1)
    assert ev.flops == pytest.approx(xla_eval["flops"], rel=0.1)
