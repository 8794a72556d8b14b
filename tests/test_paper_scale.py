"""Paper-scale sizes (K = 100000, L = 100) stay within a few GiB: the Bayes floor, the model's
loss and gradient, its chunked evaluation, and a transformer evaluation chunk at paper width.

Slow (about a minute): `python -m pytest -m slow`. Each case runs in a fresh process so its
peak resident memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, resource
    import jax, jax.numpy as jnp, numpy as np
    from phenomjax import make_bits, per_sequence_floor, phenom, zipf_weights
    from phenomjax.config import load_config
    from phenomjax.transformer.train import TrainConfig, evaluate, init_state

    K, L = 100000, 100
    bits = make_bits(0, K, L)
    w = zipf_weights(K, 1.0)
    floor, ceiling = per_sequence_floor(bits, w)
    model = phenom.PhenomModel(N=L, d=8, w=1)
    params = phenom.init_params(jax.random.key(0), model)
    xb, wb = jnp.asarray(bits), jnp.asarray(w, jnp.float32)
    loss, grads = jax.jit(phenom.loss_and_grad)(params, xb, wb)
    seq_loss, seq_acc = phenom.sequence_metrics(params, xb)
    # NumPy reference of the loss on the first 500 rows (w = 1: logits = bits @ table + c)
    ref = np.asarray(phenom.logits(params, xb[:500]), np.float64)
    x = bits[:500, 1:].astype(np.float64)
    ref_loss = (np.logaddexp(0.0, ref) - x * ref).mean(1)
    # one transformer evaluation at the paper's `small` width (8 heads x 8), 2 layers, K = 4000
    cfg = load_config(TrainConfig, "experiments/small.toml",
                      ["model.n_layer=2", "data.K=4000", "train.eval_chunk=500"])
    tl, ta = evaluate(init_state(cfg)["params"], make_bits(0, 4000, L), cfg)
    print(json.dumps({
        "floor_top10": float(floor[:10].mean()), "floor_rare": float(floor[1000:].mean()),
        "loss": float(loss), "grads_finite": bool(all(np.isfinite(np.asarray(g)).all()
                                                     for g in jax.tree_util.tree_leaves(grads))),
        "seq_err": float(np.abs(np.asarray(seq_loss[:500]) - ref_loss).max()),
        "weighted": float(np.dot(w, np.asarray(seq_loss))),
        "transformer_loss": float(tl.mean()), "shape": list(tl.shape),
        "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }))
    """
)


def test_paper_scale_fits_in_a_few_gib():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rss_gib"] < 4.0, out
    assert out["grads_finite"] and out["seq_err"] < 1e-4, out
    assert abs(out["loss"] - out["weighted"]) < 1e-4 * max(1.0, out["loss"])
    assert 0 < out["floor_top10"] < out["floor_rare"] < 0.7
    assert out["shape"] == [4000] and 0.5 < out["transformer_loss"] < 1.0
