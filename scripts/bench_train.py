"""Training and evaluation throughput: the JAX trainer against PyTorch loops, side by side.

For each config (same model, sizes, batch and threads) it measures sequences/s of
  jax            transformer.train.make_advance: on-device Zipf batches, many steps per dispatch
  torch-hist     the historical style: a Dataset whose __getitem__ draws np.random.choice(K, p=p),
                 a DataLoader, a Python loop
  torch-tuned    torch.multinomial batches indexed from a bits tensor, no DataLoader (eager)
  torch-compiled the tuned loop with its whole step under torch.compile (inductor): forward and
                 loss with AOTAutograd's compiled backward, then clipping and AdamW as a
                 second graph. The strongest variant measured here (CPU time per step, demo,
                 1 thread: eager 12.0 ms, compiled step 10.7, compiled model 11.7, compiled
                 step with compiled autograd 12.3)
and evaluation of all K sequences (JAX jitted, chunked) against torch inference (no_grad).
Every torch model starts from the JAX initial parameters; before timing, the loss of one batch
at step 0 must agree between JAX, eager and compiled torch, and eager and compiled torch must
follow the same losses for a few steps on the same batches (exit status 1 if not).
Rounds alternate between the contenders; medians are printed with the cores each used
(process CPU time / wall time). Compile times (JAX, and torch.compile with a fresh inductor
cache) are reported apart from the steady-state rates; a summary table closes the run.
Without PyTorch installed only the JAX rows run.

    python scripts/bench_train.py --quick
    python scripts/bench_train.py --config demo --config experiments/medium_cpu.toml --steps 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from phenomjax.config import load_config
from phenomjax.configs import packaged
from phenomjax.data import make_bits, zipf_weights
from phenomjax.transformer import model as gpt
from phenomjax.transformer.train import TrainConfig, evaluate, init_state, make_advance

# loss agreement demanded before timing: JAX vs torch at step 0, eager vs compiled over
# CHECK_STEPS steps; the compiled step's first WARM calls count as its compile time
STEP0_TOL, TRAJ_TOL, CHECK_STEPS, WARM = 1e-5, 1e-4, 6, 3


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


def load_jax_params(model, params: dict) -> None:
    """Copy phenomjax.transformer.model parameters into torch's modules (nn.Linear stores w^T)."""
    import torch

    def put(dst, a, transpose=False):
        t = torch.from_numpy(np.array(a, np.float32))
        dst.data.copy_(t.T if transpose else t)

    put(model.wte.weight, params["wte"])
    if model.wpe is not None:
        put(model.wpe.weight, params["wpe"])
    for i, b in enumerate(model.blocks):
        p = {k: v[i] for k, v in params["blocks"].items()}
        for ln in ("ln1", "ln2"):
            put(getattr(b, ln).weight, p[f"{ln}_g"])
            if getattr(b, ln).bias is not None:
                put(getattr(b, ln).bias, p[f"{ln}_b"])
        for lin in ("qkv", "proj", "fc", "fc2"):
            put(getattr(b, lin).weight, p[f"{lin}_w"], transpose=True)
            if getattr(b, lin).bias is not None:
                put(getattr(b, lin).bias, p[f"{lin}_b"])
    put(model.lnf.weight, params["lnf_g"])
    if model.lnf.bias is not None:
        put(model.lnf.bias, params["lnf_b"])
    put(model.head.weight, params["head_w"], transpose=True)
    if model.head.bias is not None:
        put(model.head.bias, params["head_b"])


def torch_loss(model, x):
    import torch

    lg = model(x)[:, :-1]
    return torch.nn.functional.cross_entropy(lg.reshape(-1, 2), x[:, 1:].reshape(-1))


def torch_optimizer(model, cfg: TrainConfig):
    import torch

    o = cfg.optimizer
    return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def torch_step(model, opt, cfg: TrainConfig):
    """One optimizer step on a batch, returning the loss before the update; clips the gradient
    norm as the JAX optimizer does when the config asks (the warm-up schedule is left out: a
    scalar per step, no cost)."""
    import torch

    clip = cfg.optimizer.clip_norm

    def step(x):
        opt.zero_grad(set_to_none=True)
        loss = torch_loss(model, x)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        opt.step()
        return loss.detach()

    return step


def torch_hist(cfg: TrainConfig, bits: np.ndarray, steps: int, params: dict):
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
    load_jax_params(model, params)
    step = torch_step(model, torch_optimizer(model, cfg), cfg)
    loader = torch.utils.data.DataLoader(ZipfDataset(), batch_size=B)

    def run():
        for x, _ in loader:
            step(x)

    return run


def torch_tuned(cfg: TrainConfig, bits: np.ndarray, steps: int, params: dict, compiled: bool):
    """(run, model, step): the tuned loop, eager or with its step under torch.compile."""
    import torch

    p = torch.tensor(zipf_weights(cfg.data.K, cfg.data.alpha))
    xs = torch.from_numpy(bits.astype(np.int64))
    counts = torch.zeros(cfg.data.K, dtype=torch.int64)
    model = torch_model(cfg)
    load_jax_params(model, params)
    step = torch_step(model, torch_optimizer(model, cfg), cfg)
    if compiled:
        step = torch.compile(step)

    def run():
        for _ in range(steps):
            ranks = torch.multinomial(p, cfg.train.batch, replacement=True)
            counts.index_add_(0, ranks, torch.ones_like(ranks))
            step(xs[ranks])

    return run, model, step


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


def check_losses(cfg: TrainConfig, bits_np: np.ndarray, params: dict, eager, compiled):
    """Loss of the same batches: JAX vs eager vs compiled torch at step 0 (same parameters),
    eager vs compiled over CHECK_STEPS steps. Returns (one-line verdict, compile seconds); a
    mismatch lands in FAILED. The compiled step's first calls compile it (and recompile once
    the optimizer state exists): compile seconds = the first WARM calls' time less the same
    number of later, steady calls."""
    import torch

    rng = np.random.default_rng(1)
    batches = [
        torch.from_numpy(bits_np[rng.integers(0, cfg.data.K, cfg.train.batch)].astype(np.int64))
        for _ in range(CHECK_STEPS)
    ]
    l_jax = float(gpt.loss_fn(params, jnp.asarray(batches[0].numpy(), jnp.int32), cfg.model))
    l_eager = [float(eager(x)) for x in batches]
    l_comp, t_comp = [], []
    for x in batches:
        t0 = time.perf_counter()
        l_comp.append(float(compiled(x)))
        t_comp.append(time.perf_counter() - t0)
    compile_s = sum(t_comp[:WARM]) - WARM * statistics.median(t_comp[WARM:])
    d0 = max(abs(l_eager[0] - l_jax), abs(l_comp[0] - l_jax))
    dt = max(abs(a - b) for a, b in zip(l_eager, l_comp, strict=True))
    ok = d0 <= STEP0_TOL and dt <= TRAJ_TOL
    if not ok:
        FAILED.append(cfg)
    verdict = (
        f"losses {'agree' if ok else 'DISAGREE'}: step 0 jax {l_jax:.6f} eager {l_eager[0]:.6f} "
        f"compiled {l_comp[0]:.6f} (max |diff| {d0:.1e}, tol {STEP0_TOL:.0e}); eager vs "
        f"compiled over {CHECK_STEPS} steps max |diff| {dt:.1e} (tol {TRAJ_TOL:.0e})"
    )
    return verdict, compile_s


FAILED: list = []


def config_path(name: str) -> Path:
    """A TOML path, or the name of a packaged config (demo, tiny) as `phenomjax train` takes."""
    p = Path(name)
    return p if p.suffix or p.exists() else packaged(name)


def bench(path: Path, args, torch) -> dict:
    cfg = load_config(TrainConfig, path, args.set)
    B, chunk = cfg.train.batch, cfg.train.max_chunk
    steps = args.steps or min(chunk, 200 if args.quick else 500)
    bits_np = make_bits(cfg.data.seed, cfg.data.K, cfg.data.L)
    bits = jnp.asarray(bits_np, jnp.int32)
    m = cfg.model
    threads = f"torch threads {torch.get_num_threads()}" if torch else "no torch"
    print(
        f"\n== {path.name}: K={cfg.data.K} L={cfg.data.L} layers={m.n_layer} heads={m.n_head} "
        f"width={m.width} {m.positions} B={B}; {steps} steps per timing, {threads}, "
        f"jax devices {jax.device_count()}; load average {os.getloadavg()[0]:.1f}"
    )

    advance = make_advance(cfg, bits)
    state = init_state(cfg)
    params0 = jax.tree.map(np.asarray, state["params"])
    t0 = time.perf_counter()
    state, loss = advance(state, steps)  # compiles once (the trip count is dynamic)
    loss.block_until_ready()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, loss = advance(state, steps)
    loss.block_until_ready()
    compile_s = {"jax": first - (time.perf_counter() - t0)}
    print(f"jax compile (train step loop): {compile_s['jax']:.1f} s, paid once per run")

    def jax_run():
        nonlocal state
        state, lo = advance(state, steps)
        lo.block_until_ready()

    evaluate(state["params"], bits, cfg)  # compile the evaluation
    contenders = {"jax": (jax_run, steps * B)}
    if torch is not None:
        # the timed torch loops start from JAX's parameters, advanced by the check's few steps
        tuned, tmodel, estep = torch_tuned(cfg, bits_np, steps, params0, compiled=False)
        comp, _, cstep = torch_tuned(cfg, bits_np, steps, params0, compiled=True)
        verdict, compile_s["torch"] = check_losses(cfg, bits_np, params0, estep, cstep)
        print(f"torch.compile (inductor, whole step): {compile_s['torch']:.1f} s")
        print(verdict)
        hist_steps = max(steps // (4 if cfg.data.K >= 10000 else 2), 10)
        hist = torch_hist(cfg, bits_np, hist_steps, params0)
        contenders |= {
            "torch-tuned": (tuned, steps * B),
            "torch-compiled": (comp, steps * B),
            "torch-hist": (hist, hist_steps * B),
        }
    contenders["eval jax"] = (lambda: evaluate(state["params"], bits, cfg), cfg.data.K)
    if torch is not None:
        contenders["eval torch"] = (torch_eval(tmodel, bits_np, cfg.train.eval_chunk), cfg.data.K)

    res: dict[str, list[tuple[float, float]]] = {}
    for r in range(args.rounds + 1):  # round 0 warms up (torch's lazy init, caches)
        for name, (fn, n) in contenders.items():
            wall, cores = timed(fn)
            if r:
                res.setdefault(name, []).append((n / wall, cores))
    med = {k: statistics.median(r for r, _ in v) for k, v in res.items()}
    cores = {k: statistics.median(c for _, c in v) for k, v in res.items()}
    for k in contenders:
        unit = "seq/s (train)" if not k.startswith("eval") else "seq/s (eval, all K)"
        print(f"  {k:<14} {med[k]:>10.0f} {unit:<20} cores used {cores[k]:.1f}")
    if torch is not None:
        print(
            f"  ratios: jax / torch-compiled {med['jax'] / med['torch-compiled']:.2f}, "
            f"jax / torch-tuned {med['jax'] / med['torch-tuned']:.2f}, "
            f"jax / torch-hist {med['jax'] / med['torch-hist']:.2f}, "
            f"torch compiled / eager {med['torch-compiled'] / med['torch-tuned']:.2f}, "
            f"eval jax / torch {med['eval jax'] / med['eval torch']:.2f}"
        )
    if args.internals:
        jax_internals(cfg, bits, steps, args.rounds)
    return {"name": path.name, "med": med, "compile": compile_s}


def summary(rows: list[dict]) -> None:
    """One row per config: training seq/s of each contender, JAX's ratios, compile seconds."""
    print(f"\n== summary (train seq/s, medians; load average {os.getloadavg()[0]:.1f})")
    print(
        f"{'config':<18} {'jax':>7} {'eager':>7} {'compiled':>8} {'hist':>7} "
        f"{'jax/comp':>8} {'jax/eager':>9} {'comp/eager':>10} {'jax comp s':>10} "
        f"{'torch comp s':>12}"
    )
    nan = float("nan")
    for r in rows:
        m, c = r["med"], r["compile"]
        j, e, t, h = (m.get(k, nan) for k in ("jax", "torch-tuned", "torch-compiled", "torch-hist"))
        print(
            f"{r['name']:<18} {j:7.0f} {e:7.0f} {t:8.0f} {h:7.0f} {j / t:8.2f} {j / e:9.2f} "
            f"{t / e:10.2f} {c['jax']:10.1f} {c.get('torch', nan):12.1f}"
        )


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
    p.add_argument(
        "--config", action="append", type=config_path, help="TOML path or packaged name (repeat)"
    )
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--steps", type=int, default=0, help="steps per timing (default: max_chunk)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: CPU count)")
    p.add_argument("--internals", action="store_true", help="backward cost, scan vs unrolled")
    p.add_argument("--quick", action="store_true", help="demo config only, 200 steps, 2 rounds")
    args = p.parse_args()
    # a fresh inductor cache, so the reported compile time is what a new machine pays
    cache = tempfile.mkdtemp(prefix="bench_train_inductor_")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache)
    try:
        import torch
    except ImportError:
        torch = None
        print("torch is not installed: only the JAX rows run (pip install torch==2.13.0)")
    if torch is not None:
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
        torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (seeds the historical-style Dataset)
    if args.quick:
        args.rounds = min(args.rounds, 2)
    configs = args.config or (
        [packaged("demo")]
        if args.quick
        else [packaged("demo")] + sorted(Path("experiments").glob("*_cpu.toml"))
    )
    try:
        rows = [bench(path, args, torch) for path in configs]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if torch is not None:
        summary(rows)
    if FAILED:
        sys.exit(1)


if __name__ == "__main__":
    main()
