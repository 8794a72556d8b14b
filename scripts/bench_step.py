"""The transformer's matmul backward: with and without the barrier on x, side by side.

`transformer.model.matmul` materialises x^T behind an optimization barrier for the weight
gradient. Without a second barrier on x itself, XLA CPU fuses the transpose with x's producer
(a GELU) and recomputes it in transposed order. This script times one value-and-grad of the
loss per shape with both backwards in one process, in alternating rounds, and checks that
their gradients are bit-identical (exit status 1 if not).

    python scripts/bench_step.py
    python scripts/bench_step.py --shape 2,8,251,1,32 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from phenomjax.transformer import model as gpt

# n_head, head_dim, batch, n_layer, L: the capacity sizes (full batch), then the CPU experiments
SHAPES = ["1,8,228,1,32", "2,8,251,1,32", "4,8,128,1,32", "2,8,64,3,32", "4,16,64,2,16"]


def _old_bwd(res, g):  # the backward before the barrier on x
    x, w = res
    xt = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
    return g @ w.T, xt @ g.reshape(-1, g.shape[-1])


def _program(bwd, cfg, tokens):
    mm = jax.custom_vjp(lambda x, w: x @ w)
    mm.defvjp(gpt._matmul_fwd, bwd)
    saved, gpt.matmul = gpt.matmul, mm
    try:  # traced here, while gpt.matmul is this variant
        return (
            jax.jit(jax.value_and_grad(lambda p: gpt.loss_fn(p, tokens, cfg)))
            .lower(gpt.init_params(jax.random.key(0), cfg, tokens.shape[1]))
            .compile()
        )
    finally:
        gpt.matmul = saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", action="append", help="n_head,head_dim,batch,n_layer,L")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20, help="value-and-grad calls per round")
    args = ap.parse_args(argv)
    ok = True
    print("n_head head_dim batch n_layer L | before (ms) | after (ms) | ratio | same bits")
    for spec in args.shape or SHAPES:
        H, E, B, NL, L = (int(v) for v in spec.split(","))
        cfg = gpt.GPTConfig(n_layer=NL, n_head=H, head_dim=E)
        tokens = jax.random.bernoulli(jax.random.key(1), 0.5, (B, L)).astype(jnp.int32)
        params = gpt.init_params(jax.random.key(0), cfg, L)
        progs = {
            "before": _program(_old_bwd, cfg, tokens),
            "after": _program(gpt._matmul_bwd, cfg, tokens),
        }
        out = {k: jax.block_until_ready(f(params)) for k, f in progs.items()}
        same = all(
            np.array_equal(a, b)
            for a, b in zip(
                jax.tree.leaves(out["before"]), jax.tree.leaves(out["after"]), strict=True
            )
        )
        ok &= same
        times: dict[str, list[float]] = {k: [] for k in progs}
        for _ in range(args.rounds):
            for k, f in progs.items():
                t = time.perf_counter()
                for _ in range(args.calls):
                    r = f(params)
                jax.block_until_ready(r)
                times[k].append((time.perf_counter() - t) / args.calls * 1e3)
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"{H} {E} {B} {NL} {L} | {b:.2f} | {a:.2f} | {b / a:.2f}x | {same}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
