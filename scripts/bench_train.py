"""Training and evaluation throughput: the JAX trainer against PyTorch loops, side by side.

For each config (same model, sizes, batch and threads) it measures sequences/s of
  jax         transformer.train.make_advance: on-device Zipf batches, many steps per dispatch
  torch-hist  the historical style: a Dataset whose __getitem__ draws np.random.choice(K, p=p),
              a DataLoader, a Python loop
  torch-tuned torch.multinomial batches indexed from a bits tensor, no DataLoader
and evaluation of all K sequences (JAX jitted, chunked) against torch inference (no_grad).
Rounds alternate between the contenders; medians are printed with the cores each used
(process CPU time / wall time). JAX compile time is reported separately.

    python scripts/bench_train.py --quick
    python scripts/bench_train.py --config experiments/medium_cpu.toml --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from phenomjax.config import load_config
from phenomjax.data import make_bits, zipf_weights
from phenomjax.transformer.train import (
    TrainConfig,
    embedded_config,
    evaluate,
    init_state,
    make_advance,
)


def cpu_time() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn) -> tuple[float, float]:
    """(wall seconds, cores used) of fn()."""
    c0, t0 = cpu_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (cpu_time() - c0) / max(wall, 1e-9)


# -- PyTorch side --------------------------------------------------------------------------------


def torch_model(cfg: TrainConfig):
    import torch
    from torch import nn

    F = torch.nn.functional
    m, L = cfg.model, cfg.data.L
    D, H, E = m.width, m.n_head, m.head_dim

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D, bias=m.bias), nn.LayerNorm(D, bias=m.bias)
            self.qkv, self.proj = nn.Linear(D, 3 * D, bias=m.bias), nn.Linear(D, D, bias=m.bias)
            self.fc, self.fc2 = nn.Linear(D, 4 * D, bias=m.bias), nn.Linear(4 * D, D, bias=m.bias)

        def forward(self, x, rope):
            B = x.shape[0]
            q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, H, E).unbind(2)
            if rope is not None:
                cos, sin = rope
                q, k = (torch.cat([a[..., : E // 2] * cos - a[..., E // 2 :] * sin,
                                   a[..., E // 2 :] * cos + a[..., : E // 2] * sin], -1)
                        for a in (q, k))  # fmt: skip
            y = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
            x = x + self.proj(y.transpose(1, 2).reshape(B, L, D))
            return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(2, D)
            self.wpe = nn.Embedding(L, D) if m.positions == "learned" else None
            self.blocks = nn.ModuleList(Block() for _ in range(m.n_layer))
            self.lnf, self.head = nn.LayerNorm(D, bias=m.bias), nn.Linear(D, 2, bias=m.bias)
            inv = m.rope_base ** (-torch.arange(E // 2, dtype=torch.float32) * 2 / E)
            ang = torch.arange(L, dtype=torch.float32)[:, None] * inv[None]
            self.rope = None if self.wpe else (ang.cos()[:, None], ang.sin()[:, None])

        def forward(self, x):
            h = self.wte(x)
            if self.wpe is not None:
                h = h + self.wpe.weight[None]
            for b in self.blocks:
                h = b(h, self.rope)
            return self.head(self.lnf(h))

    return GPT()


def torch_loss(model, x):
    import torch

    lg = model(x)[:, :-1]
    return torch.nn.functional.cross_entropy(lg.reshape(-1, 2), x[:, 1:].reshape(-1))


def torch_optimizer(model, cfg: TrainConfig):
    import torch

    o = cfg.optimizer
    return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def torch_hist(cfg: TrainConfig, bits: np.ndarray, steps: int):
    """The historical loop: per-item np.random.choice in a Dataset, a DataLoader."""
    import torch

    p = zipf_weights(cfg.data.K, cfg.data.alpha)
    K, B = cfg.data.K, cfg.train.batch

    class ZipfDataset(torch.utils.data.Dataset):
        def __len__(self):
            return steps * B

        def __getitem__(self, i):
            k = np.random.choice(K, p=p)  # noqa: NPY002 (the historical style, on purpose)
            return torch.from_numpy(bits[k].astype(np.int64)), k

    model = torch_model(cfg)
    opt = torch_optimizer(model, cfg)
    loader = torch.utils.data.DataLoader(ZipfDataset(), batch_size=B)

    def run():
        for x, _ in loader:
            opt.zero_grad(set_to_none=True)
            torch_loss(model, x).backward()
            opt.step()

    return run


def torch_tuned(cfg: TrainConfig, bits: np.ndarray, steps: int):
    import torch

    p = torch.tensor(zipf_weights(cfg.data.K, cfg.data.alpha))
    xs = torch.from_numpy(bits.astype(np.int64))
    counts = torch.zeros(cfg.data.K, dtype=torch.int64)
    model = torch_model(cfg)
    opt = torch_optimizer(model, cfg)

    def run():
        for _ in range(steps):
            ranks = torch.multinomial(p, cfg.train.batch, replacement=True)
            counts.index_add_(0, ranks, torch.ones_like(ranks))
            opt.zero_grad(set_to_none=True)
            torch_loss(model, xs[ranks]).backward()
            opt.step()

    return run, model


def torch_eval(model, bits: np.ndarray, chunk: int):
    import torch

    xs = torch.from_numpy(bits.astype(np.int64))

    def run():
        out = []
        with torch.inference_mode():
            for i in range(0, len(xs), chunk):
                x = xs[i : i + chunk]
                logp = torch.log_softmax(model(x)[:, :-1], -1)
                nll = -logp.gather(-1, x[:, 1:, None])[..., 0]
                out.append(nll.mean(1))
        return torch.cat(out)

    return run


# -- the bench -----------------------------------------------------------------------------------


def bench(path: Path, args) -> None:
    import torch

    cfg = load_config(TrainConfig, path, args.set)
    B, chunk = cfg.train.batch, cfg.train.max_chunk
    steps = args.steps or min(chunk, 200 if args.quick else 500)
    bits_np = make_bits(cfg.data.seed, cfg.data.K, cfg.data.L)
    bits = jnp.asarray(bits_np, jnp.int32)
    m = cfg.model
    print(
        f"\n== {path.name}: K={cfg.data.K} L={cfg.data.L} layers={m.n_layer} heads={m.n_head} "
        f"width={m.width} {m.positions} B={B}; {steps} steps per timing, torch threads "
        f"{torch.get_num_threads()}, jax devices {jax.device_count()}"
    )

    advance = make_advance(cfg, bits)
    state = init_state(cfg)
    t0 = time.perf_counter()
    state, loss = advance(state, steps)  # compiles once (the trip count is dynamic)
    loss.block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, loss = advance(state, steps)
    loss.block_until_ready()
    compile_s = first - (time.perf_counter() - t0)
    print(f"jax compile (train step loop): {compile_s:.1f} s, paid once per run")

    def jax_run():
        nonlocal state
        state, lo = advance(state, steps)
        lo.block_until_ready()

    tuned, tmodel = torch_tuned(cfg, bits_np, steps)
    hist_steps = max(steps // (4 if cfg.data.K >= 10000 else 2), 10)
    hist = torch_hist(cfg, bits_np, hist_steps)
    evaluate(state["params"], bits, cfg)  # compile the evaluation
    ev_jax = lambda: evaluate(state["params"], bits, cfg)  # noqa: E731
    ev_torch = torch_eval(tmodel, bits_np, cfg.train.eval_chunk)

    res: dict[str, list[tuple[float, float]]] = {}
    contenders = {
        "jax": (jax_run, steps * B),
        "torch-tuned": (tuned, steps * B),
        "torch-hist": (hist, hist_steps * B),
        "eval jax": (ev_jax, cfg.data.K),
        "eval torch": (ev_torch, cfg.data.K),
    }
    for r in range(args.rounds + 1):  # round 0 warms up (torch's lazy init, caches)
        for name, (fn, n) in contenders.items():
            wall, cores = timed(fn)
            if r:
                res.setdefault(name, []).append((n / wall, cores))
    med = {k: statistics.median(r for r, _ in v) for k, v in res.items()}
    cores = {k: statistics.median(c for _, c in v) for k, v in res.items()}
    for k in contenders:
        unit = "seq/s (train)" if not k.startswith("eval") else "seq/s (eval, all K)"
        print(f"  {k:<12} {med[k]:>10.0f} {unit:<20} cores used {cores[k]:.1f}")
    print(
        f"  ratios: jax / torch-tuned {med['jax'] / med['torch-tuned']:.2f}, "
        f"jax / torch-hist {med['jax'] / med['torch-hist']:.2f}, "
        f"eval jax / torch {med['eval jax'] / med['eval torch']:.2f}"
    )
    if args.internals:
        jax_internals(cfg, bits, steps, args.rounds)


def jax_internals(cfg: TrainConfig, bits: jax.Array, steps: int, rounds: int) -> None:
    """Backward/forward cost ratio of one batch, and scanned vs unrolled layers."""
    import dataclasses

    from phenomjax.transformer import model as gpt

    params = init_state(cfg)["params"]
    x = bits[: cfg.train.batch]
    fwd = jax.jit(lambda p: gpt.loss_fn(p, x, cfg.model))
    grad = jax.jit(jax.grad(lambda p: gpt.loss_fn(p, x, cfg.model)))
    jax.block_until_ready((fwd(params), grad(params)))

    def per_call(f, n=50):
        t0 = time.perf_counter()
        for _ in range(n):
            out = f(params)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / n

    tf = statistics.median(per_call(fwd) for _ in range(rounds))
    tg = statistics.median(per_call(grad) for _ in range(rounds))
    print(f"  jax one batch: forward {tf * 1e3:.2f} ms, forward+backward {tg * 1e3:.2f} ms "
          f"(backward = {(tg - tf) / tf:.1f}x forward)")  # fmt: skip
    rates = {}
    for scan in (True, False):
        c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, scan_layers=scan))
        adv, st = make_advance(c, bits), init_state(c)
        t0 = time.perf_counter()
        st, lo = adv(st, 1)
        lo.block_until_ready()
        comp = time.perf_counter() - t0
        r = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            st, lo = adv(st, steps)
            lo.block_until_ready()
            r.append(steps * cfg.train.batch / (time.perf_counter() - t0))
        rates[scan] = (statistics.median(r), comp)
    print(f"  jax layers scanned {rates[True][0]:.0f} seq/s (first call {rates[True][1]:.1f} s), "
          f"unrolled {rates[False][0]:.0f} seq/s (first call {rates[False][1]:.1f} s)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", action="append", type=Path, help="TOML config(s) (repeatable)")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--steps", type=int, default=0, help="steps per timing (default: max_chunk)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: CPU count)")
    p.add_argument("--internals", action="store_true", help="backward cost, scan vs unrolled")
    p.add_argument("--quick", action="store_true", help="demo config only, 200 steps, 2 rounds")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (seeds the historical-style Dataset)
    if args.quick:
        args.rounds = min(args.rounds, 2)
    configs = args.config or (
        [embedded_config("demo")]
        if args.quick
        else [embedded_config("demo")] + sorted(Path("experiments").glob("*_cpu.toml"))
    )
    for path in configs:
        bench(path, args)


if __name__ == "__main__":
    main()
