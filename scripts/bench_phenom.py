"""Benchmark of the phenomenological model core (issue 2, item 8), everything side by side in
one process so that the ratios survive a noisy, shared machine (medians of alternating rounds).

    python scripts/bench_phenom.py            # full run (about 3 minutes on 2 cores)
    python scripts/bench_phenom.py --quick    # smoke run: small shapes, few rounds
    python scripts/bench_phenom.py --paper --grid-only   # the fit grid at K = 100000 too

Sections: this machine's float32 GEMM rate; value_and_grad (full, random E, w = 1) against two
(M x N) @ (N x N) products, a NumPy and a PyTorch (if installed) version of the same N x N
formulation; then, with the fitter's step functions (phenomjax.phenom.modes), a 1000-step fit in one
scan vs a Python loop of jitted steps, stochastic-mode steps/s with presentation counts and
evaluation snapshots, and a 16-member vmapped sweep vs 16 sequential runs of one program; last,
the default grid of `phenomjax fit` (w = 1, 4, 8, d = 8, expected and stochastic) as sweep steps
of its 8 (lr, scale) members: member-steps/s and the distance to each shape's two-GEMM bound.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from phenomjax import phenom as ph
from phenomjax.data import key_streams, log_spaced_steps, make_bits, zipf_weights


def timed(fn, *args):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def race(fns: dict, rounds: int, reps: int = 1, settle: float = 0.0) -> dict:
    """Median seconds per call of each fn over `rounds`, alternating the fns every round.

    Each turn sleeps `settle` seconds (the previous library's worker threads stop spin-waiting:
    OpenBLAS, OpenMP and XLA's pools each busy-wait after a call, which on 2 cores slows the next
    library many times over), makes one untimed call, then `reps` timed calls.
    """
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(settle)
            jax.block_until_ready(f())
            times[k].append(sum(timed(f) for _ in range(reps)) / reps)
    return {k: float(np.median(v)) for k, v in times.items()}


def gemm_rate(n: int = 2048, rounds: int = 5) -> float:
    """This machine's float32 GEMM rate through XLA, GFLOP/s, on an n x n x n product."""
    X = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
    f = jax.jit(lambda X: X @ X)
    return 2 * n**3 / race({"g": lambda: f(X)}, rounds)["g"] / 1e9


# ---------- reference implementations of the same N x N formulation (w = 1) ----------


def numpy_value_and_grad(p: dict, bits: np.ndarray, weights: np.ndarray):
    A, B, E = p["A"], p["B"], p["E"]
    P = A.shape[0]
    mask = np.tril(np.ones((P, P), np.float32))[:, :, None]
    C = np.tensordot(B, A, axes=(0, 2)) * mask  # (n, i, e)
    U = np.einsum("nie,ive->niv", C, E[:P], optimize=True)
    T, c = (U[:, :, 1] - U[:, :, 0]).T, U[:, :, 0].sum(1)
    X = bits[:, :-1].astype(np.float32)
    Y = bits[:, 1:].astype(np.float32)
    z = X @ T + c
    e = np.exp(-np.abs(z))
    loss = weights @ ((np.maximum(z, 0) - Y * z + np.log1p(e)).mean(1))
    G = (np.where(z >= 0, 1.0, e) / (1 + e) - Y) * (weights / P)[:, None]
    dT, dc = X.T @ G, G.sum(0)
    dU = np.stack([dc[:, None] - dT.T, dT.T], axis=-1)
    dC = np.einsum("niv,ive->nie", dU, E[:P]) * mask
    dE = np.zeros_like(E)
    dE[:P] = np.einsum("niv,nie->ive", dU, C)
    return loss, {
        "A": np.einsum("nie,d->nide", dC, B),
        "B": np.einsum("nie,nide->d", dC, A),
        "E": dE,
    }


def torch_value_and_grad_fn(p: dict, bits: np.ndarray, weights: np.ndarray):
    import torch

    tp = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in p.items()}
    X = torch.tensor(bits[:, :-1], dtype=torch.float32)
    Y = torch.tensor(bits[:, 1:], dtype=torch.float32)
    w = torch.tensor(weights)
    P = X.shape[1]
    mask = torch.tril(torch.ones(P, P))[:, :, None]

    def run():
        for v in tp.values():
            v.grad = None
        C = torch.einsum("d,nide->nie", tp["B"], tp["A"]) * mask
        U = torch.einsum("nie,ive->niv", C, tp["E"][:P])
        z = X @ (U[:, :, 1] - U[:, :, 0]).T + U[:, :, 0].sum(1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(z, Y, reduction="none")
        loss = bce.mean(1) @ w
        loss.backward()
        return loss.item()

    return run


def core_one(M: int, N: int, d: int, rounds: int, torch) -> None:
    model = ph.PhenomModel(N=N, d=d)
    params = ph.init_params(jax.random.key(0), model)
    bits = make_bits(0, M, N)
    weights = zipf_weights(M).astype(np.float32)
    xb, wj = jnp.asarray(bits), jnp.asarray(weights)
    X = jnp.asarray(np.random.default_rng(0).random((M, N), np.float32))
    W = jnp.asarray(np.random.default_rng(1).random((N, N), np.float32))
    gemm = jax.jit(lambda X, W: X @ W)
    two = jax.jit(lambda X, W: X.T @ (X @ W))  # the two same-shape products of one v&g
    vg = jax.jit(ph.loss_and_grad)
    pn = {k: np.asarray(v) for k, v in params.items()}
    fns = {
        "gemm": lambda: gemm(X, W),
        "two": lambda: two(X, W),
        "vg": lambda: vg(params, xb, wj),
        "numpy": lambda: numpy_value_and_grad(pn, bits, weights),
    }
    if torch is not None:
        fns["torch"] = torch_value_and_grad_fn(pn, bits, weights)
    t = race(fns, rounds, reps=max(1, 20000 // M), settle=0.5)
    rate = 2 * M * N * N / t["gemm"] / 1e9
    tt = t.get("torch", float("nan"))
    print(
        f"{f'{M},{N},{d}':>16} {rate:9.1f} {1e3 * t['two']:9.2f} {1e3 * t['vg']:8.2f} "
        f"{t['two'] / t['vg']:6.2f} {1e3 * t['numpy']:9.2f} {t['numpy'] / t['vg']:7.2f} "
        f"{1e3 * tt:9.2f} {tt / t['vg']:7.2f}"
    )


def core_section(shapes, rounds: int) -> None:
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
    print(f"\nfloat32 GEMM rate (2048^3, XLA): {gemm_rate():.1f} GFLOP/s")
    print(f"\n== value_and_grad (full, random E, w=1) vs GEMMs; {os.cpu_count()} CPU threads ==")
    print(
        f"{'M,N,d':>16} {'gemm GF/s':>9} {'2 gemm ms':>9} {'v&g ms':>8} {'share':>6} "
        f"{'numpy ms':>9} {'x numpy':>7} {'torch ms':>9} {'x torch':>7}"
    )
    for M, N, d in shapes:
        core_one(M, N, d, rounds, torch)
    print("share = (two-GEMM time) / (v&g time): 1.0 means v&g runs at the two-GEMM rate")


# ---------- fitting with the fitter's step functions ----------


def fit_parts(K: int, L: int, d: int, mode: str, batch: int, lr: float = 1e-2, w: int = 1):
    import optax

    from phenomjax.phenom.modes import freeze_untrained, init_state, make_data, make_step

    model = ph.PhenomModel(N=L, d=d, w=w)
    keys = key_streams(0)
    data = make_data(make_bits(0, K, L), zipf_weights(K), keys["batches"])
    like = ph.init_params(keys["init"], model)
    tx = freeze_untrained(optax.adam(lr), like, model)
    state = init_state(keys["init"], model, tx, mode=mode, K=K)
    return model, data, tx, state, make_step(tx, mode=mode, batch=batch)


def scan_vs_loop(shapes, steps: int) -> None:
    print(
        f"\n== {steps}-step expected-mode Adam fit: one lax.scan vs a Python loop of jitted steps"
    )
    print(
        f"{'K,L,d':>14} {'scan comp s':>11} {'scan ms/step':>12} {'loop comp s':>11} "
        f"{'loop ms/step':>12} {'v&g ms':>7} {'v&g in scan':>11} {'step/v&g':>8} "
        f"{'(in scan)':>9} {'same traj':>9}"
    )
    for K, L, d in shapes:
        scan_one(K, L, d, steps)


def scan_one(K: int, L: int, d: int, steps: int) -> None:
    model, data, tx, state, step = fit_parts(K, L, d, "expected", 64)
    scan = jax.jit(lambda s, dt: jax.lax.scan(lambda c, _: step(c, dt), s, None, length=steps))
    t0 = time.perf_counter()
    scan_c = scan.lower(state, data).compile()
    comp_scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = jax.jit(step).lower(state, data).compile()
    comp_loop = time.perf_counter() - t0
    vg = jax.jit(ph.loss_and_grad)

    def loop():
        s, out = state, []
        for _ in range(steps):
            s, loss = one(s, data)
            out.append(loss)
        return s, jnp.stack(out)

    (_, l_scan), (_, l_loop) = scan_c(state, data), loop()
    same = bool(np.array_equal(np.asarray(l_scan), np.asarray(l_loop)))
    p = state["params"]
    t = race(
        {"scan": lambda: scan_c(state, data), "loop": loop},
        3,
    )

    def vg_step(q, _):  # value_and_grad alone in the same loop (a trivial update keeps it live)
        loss, g = ph.loss_and_grad(q, data.bits, data.weights)
        return jax.tree.map(lambda a, b: a - 1e-9 * b, q, g), loss

    vg_scan = jax.jit(lambda q: jax.lax.scan(vg_step, q, None, length=steps))
    t_vg = race({"vg": lambda: vg(p, data.bits, data.weights)}, 5, reps=50)
    t_vg |= race({"vg_scan": lambda: vg_scan(p)}, 3)
    per = t["scan"] / steps
    print(
        f"{f'{K},{L},{d}':>14} {comp_scan:11.2f} {1e3 * per:12.3f} {comp_loop:11.2f} "
        f"{1e3 * t['loop'] / steps:12.3f} {1e3 * t_vg['vg']:7.3f} "
        f"{1e3 * t_vg['vg_scan'] / steps:11.3f} {per / t_vg['vg']:8.2f} "
        f"{per * steps / t_vg['vg_scan']:9.2f} {str(same):>9}"
    )


def stochastic_rate(K: int, L: int, d: int, batch: int, steps: int, num_evals: int) -> None:
    from phenomjax.training import make_advance

    print(f"\n== stochastic mode B={batch} at (K,L,d)=({K},{L},{d}), {steps} steps, counts + evals")
    model, data, tx, state, step = fit_parts(K, L, d, "stochastic", batch)
    advance = make_advance(step, 1000)
    metrics = jax.jit(lambda p, b: ph.sequence_metrics(p, b, chunk=min(4096, K)))
    grid = log_spaced_steps(steps, num_evals)

    def run():
        s, done = state, 0
        for target in grid:
            while done < target:
                n = min(1000, int(target) - done)
                s, _ = advance(s, jnp.int32(n), data)
                done += n
            loss, acc = metrics(s["params"], data.bits)
            np.asarray(loss), np.asarray(acc), np.asarray(s["counts"])  # read like the fitter
        return s["counts"]

    t0 = time.perf_counter()
    counts = run()
    first = time.perf_counter() - t0
    t = race({"run": run}, 3)["run"]
    print(
        f"steps/s {steps / t:,.0f} (first run incl. compile {first:.2f} s; {len(grid)} evals); "
        f"presentations sum {int(np.asarray(counts).sum())} = steps x batch {steps * batch}"
    )


def sweep_vs_sequential(K: int, L: int, d: int, steps: int, members: int) -> None:
    from phenomjax.optim import OptimConfig, make_injectable, set_learning_rate
    from phenomjax.phenom.modes import init_state, make_data, make_step

    print(
        f"\n== {members}-member vmapped sweep over lr vs {members} sequential runs, {steps} steps"
    )
    model = ph.PhenomModel(N=L, d=d)
    keys = key_streams(0)
    data = make_data(make_bits(0, K, L), zipf_weights(K), keys["batches"])
    tx = make_injectable(OptimConfig(name="adam", lr=1e-2))
    lrs = jnp.asarray(np.logspace(-3, -1, members), jnp.float32)

    def init(lr):
        s = init_state(keys["init"], model, tx, mode="expected", K=K)
        s["opt_state"] = set_learning_rate(s["opt_state"], lr)
        return s

    step = make_step(tx, mode="expected", batch=64)

    def fit(s):
        return jax.lax.scan(lambda c, _: step(c, data), s, None, length=steps)

    vfit = jax.jit(jax.vmap(fit))
    sfit = jax.jit(fit)
    states = jax.vmap(init)(lrs)
    singles = [init(lr) for lr in lrs]
    t0 = time.perf_counter()
    (_, lv) = vfit(states)
    jax.block_until_ready(lv)
    comp_v = time.perf_counter() - t0
    t0 = time.perf_counter()
    (_, l0) = sfit(singles[0])
    jax.block_until_ready(l0)
    comp_s = time.perf_counter() - t0
    t = race(
        {"vmap": lambda: vfit(states), "seq": lambda: [sfit(s) for s in singles]},
        3,
    )
    diff = float(jnp.max(jnp.abs(lv[0] - l0)))
    print(
        f"vmapped {t['vmap']:.3f} s (first call {comp_v:.2f} s), sequential {t['seq']:.3f} s "
        f"(first call {comp_s:.2f} s); sequential / vmapped = {t['seq'] / t['vmap']:.2f}; "
        f"member 0 vs its single run: max |loss diff| {diff:.2e}"
    )


# ---------- the default fit grid: vmapped sweep steps against their two-GEMM bound ----------


def sweep_parts(K: int, L: int, mode: str, batch: int, w: int, d: int, max_chunk: int) -> dict:
    """One (w, d) group of `fit_run`'s sweep (one seed, the default lr x scale members) built as
    phenomjax.phenom.sweep builds it for one seed ("sweep": one vmap over members, the data
    shared), and the same members under a size-1 seed axis ("seed axis": vmap over seeds around
    vmap over members, the data batched over seeds, as multi-seed sweeps run)."""
    DEFAULT_LRS, DEFAULT_SCALES = _default_grid_axes()

    from phenomjax.data import DataConfig
    from phenomjax.optim import set_learning_rate
    from phenomjax.phenom.modes import FitData, freeze_untrained, init_state, make_data, make_step
    from phenomjax.phenom.sweep import _guarded, sweep_optimizer
    from phenomjax.phenom.train import ModelSection, PhenomConfig, TrainSection, build_model
    from phenomjax.training import make_advance

    cfg = PhenomConfig(
        data=DataConfig(K=K, L=L),
        model=ModelSection(w=w, d=d),
        train=TrainSection(mode=mode, batch=batch, max_chunk=max_chunk),
    )
    model = build_model(cfg)
    keys = key_streams(0)
    flat_data = make_data(make_bits(0, K, L), zipf_weights(K), keys["batches"])
    like = ph.init_params(keys["init"], model)
    tx = freeze_untrained(sweep_optimizer(cfg), like, model)
    hyper = [(lr, s) for lr in DEFAULT_LRS for s in DEFAULT_SCALES]
    lrs = jnp.asarray([h[0] for h in hyper], jnp.float32)
    scales = jnp.asarray([h[1] for h in hyper], jnp.float32)

    def init_member(lr, scale):
        st = init_state(keys["init"], model, tx, mode=mode, K=K, scale=scale)
        st["opt_state"] = set_learning_rate(st["opt_state"], lr)
        st["live"] = jnp.array(True)
        st["diverged_step"] = jnp.array(-1, jnp.int32)
        st["train_loss"] = jnp.array(jnp.nan, jnp.float32)
        return st

    flat_state = jax.jit(jax.vmap(init_member))(lrs, scales)
    step = _guarded(make_step(tx, mode=mode, batch=batch))
    data_axes = FitData(bits=0, weights=None, cdf=None, batches_key=0)
    vstep = jax.vmap(jax.vmap(step, (0, None)), (0, data_axes))
    return {
        "sweep": (
            make_advance(jax.vmap(step, (0, None)), max_chunk, loss_of=jnp.nanmin),
            flat_state,
            flat_data,
        ),
        "seed axis": (
            make_advance(vstep, max_chunk, loss_of=jnp.nanmin),
            jax.tree.map(lambda a: a[None], flat_state),  # a size-1 seed axis
            flat_data._replace(bits=flat_data.bits[None], batches_key=keys["batches"][None]),
        ),
        "members": len(hyper),
        "F": ph.tables(like)[0].shape[0],  # rows of the logit table: L-1 (w = 1) or (L-1) d
    }


def two_gemms(M: int, F: int, P: int):
    """The two GEMMs of one member's value_and_grad at full size, z = X @ T and dT = X^T @ G,
    with jnp.dot: (fn, args). A lower bound on the member's step (the kernel also does the
    loss, the tables and the update)."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.random((M, F), np.float32))
    T = jnp.asarray(rng.random((F, P), np.float32))
    G = jnp.asarray(rng.random((M, P), np.float32))
    return jax.jit(lambda X, T, G: (jnp.dot(X, T), jnp.dot(X.T, G))), (X, T, G)


def _default_grid_axes() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Adam's learning rates and the initial scales of the shipped fit grid (configs/fit.toml)."""
    from phenomjax.fitting.grid import default_grid

    g = default_grid()
    adam = next(o for o in g.optimizers if o.name == "adam")
    return tuple(adam.lr), tuple(g.grid.scale)


def fit_grid(scales, ws, d: int, rounds: int, target_s: float) -> None:
    DEFAULT_LRS, DEFAULT_SCALES = _default_grid_axes()

    H = len(DEFAULT_LRS) * len(DEFAULT_SCALES)
    print(
        f"\n== default fit grid (`phenomjax fit`): one vmapped step of its {H} (lr, scale) "
        f"members per (w, d={d}) group,\n   as phenomjax.phenom.sweep runs it (one seed, no seed "
        f"axis) and under a size-1 seed axis, against the two-GEMM bound ({H} x one member's two "
        f"GEMMs)"
    )
    print(
        f"{'K,L,B':>14} {'mode':>10} {'w':>2} {'F':>4} {'comp s':>6} {'sweep ms':>9} "
        f"{'member-steps/s':>14} {'x bound':>7} {'seed-axis ms':>12} {'x bound':>7} "
        f"{'bound ms':>8} {'bound GF/s':>10}"
    )
    for K, L, B in scales:
        for mode in ("expected", "stochastic"):
            for w in ws:
                grid_one(K, L, B, mode, w, d, rounds, target_s)
    print(
        "sweep ms = one step of all members; member-steps/s = members / (sweep step s);\n"
        "x bound = step time / (members x two GEMMs of one member: z = X @ T, dT = X^T @ G with "
        "X (M, F),\n  M = K (expected) or B (stochastic), F = L-1 (w = 1: the bits) or (L-1) d "
        "(w > 1: gathered embeddings), T (F, L-1)).\n  w = 1 can beat it: the members share "
        "their features (the bits), so their logits are one wide GEMM."
    )


def grid_one(K, L, B, mode, w, d, rounds, target_s) -> None:
    chunk = 1000
    parts = sweep_parts(K, L, mode, B, w, d, chunk)
    H, F, M = parts["members"], parts["F"], (K if mode == "expected" else B)
    fns, comp = {}, 0.0
    for name in ("sweep", "seed axis"):
        advance, state, data = parts[name]
        t0 = time.perf_counter()
        jax.block_until_ready(advance(state, jnp.int32(1), data))
        comp += time.perf_counter() - t0 if name == "sweep" else 0.0
        per = timed(advance, state, jnp.int32(2), data) / 2
        n = int(min(chunk, max(1, target_s / max(per, 1e-6))))
        fns[name] = (lambda a=advance, s=state, dt=data, n=n: a(s, jnp.int32(n), dt)), n
    gemm, args = two_gemms(M, F, L - 1)
    t = race({k: f for k, (f, _) in fns.items()} | {"bound": lambda: gemm(*args)}, rounds)
    sweep_s, axis_s = t["sweep"] / fns["sweep"][1], t["seed axis"] / fns["seed axis"][1]
    bound_s = H * t["bound"]
    gflops = H * 4 * M * F * (L - 1) / bound_s / 1e9
    print(
        f"{f'{K},{L},{B}':>14} {mode:>10} {w:2d} {F:4d} {comp:6.2f} {1e3 * sweep_s:9.3f} "
        f"{H / sweep_s:14,.0f} {sweep_s / bound_s:7.2f} {1e3 * axis_s:12.3f} "
        f"{axis_s / bound_s:7.2f} {1e3 * bound_s:8.3f} {gflops:10.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes and few rounds")
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds per measurement")
    ap.add_argument("--skip-fit", action="store_true", help="only the value_and_grad section")
    ap.add_argument(
        "--paper", action="store_true", help="also the fit grid at K=100000, L=100 (minutes)"
    )
    ap.add_argument("--grid-only", action="store_true", help="only the fit-grid section")
    args = ap.parse_args()
    quick = args.quick
    rounds = args.rounds or (3 if quick else 5)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs")
    grid = [(1000, 32, 64)] + ([(100000, 100, 128)] if args.paper else [])
    if args.grid_only:
        fit_grid(grid, (1, 4, 8), 8, 2 if quick else 3, 0.2 if quick else 0.3)
        return
    shapes = [(1000, 32, 8), (10000, 64, 16)] + ([] if quick else [(100000, 100, 8)])
    core_section(shapes, rounds)
    if args.skip_fit:
        return
    try:
        import phenomjax.phenom.modes  # noqa: F401
    except ImportError as e:
        print(f"\n(fit sections skipped: {e})")
        return
    scan_vs_loop([(1000, 32, 8)] if quick else [(1000, 32, 8), (10000, 64, 16)], 300)
    stochastic_rate(1000, 32, 8, 64, 2000 if quick else 10000, 15)
    sweep_vs_sequential(1000, 32, 8, 200 if quick else 500, 16)
    fit_grid(grid, (1, 4, 8), 8, 2 if quick else 3, 0.2 if quick else 0.3)


if __name__ == "__main__":
    main()
