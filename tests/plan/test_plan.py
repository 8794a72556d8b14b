"""`phenomjax plan` and the memory refusal: exact counts, FLOPs against XLA's cost analysis,
memory against XLA's memory analysis, the report's keys, and one-line refusals of configs that
cannot fit or do not fit the device's integer types."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.cli import main
from phenomjax.config import INT32_MAX, from_dict, load_config
from phenomjax.configs import packaged
from phenomjax.data import DataConfig, log_spaced_steps
from phenomjax.errors import ConfigError
from phenomjax.phenom import cost as phenom_cost
from phenomjax.phenom import model as phenom
from phenomjax.phenom.train import ModelSection, PhenomConfig, TrainSection, build_model
from phenomjax.plan import devices, estimate, memory, timing
from phenomjax.plan.report import plan
from phenomjax.training import Schedule, drive
from phenomjax.transformer import cost as transformer_cost
from phenomjax.transformer import model as gpt
from phenomjax.transformer.model import GPTConfig
from phenomjax.transformer.train import LoopConfig, TrainConfig, init_state


def _cost(compiled) -> dict:
    ca = compiled.cost_analysis()
    return ca[0] if isinstance(ca, list) else ca


def _gpt_cfg(NL, H, E, L, B, positions="learned", K=64) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(K=K, L=L),
        model=GPTConfig(n_layer=NL, n_head=H, head_dim=E, positions=positions, scan_layers=False),
        train=LoopConfig(steps=10, batch=B, eval_chunk=B),
    )


# -- counts --------------------------------------------------------------------------------------


def test_transformer_param_count_is_the_init_count():
    cfg = load_config(TrainConfig, packaged("demo"))
    params, opt = transformer_cost.shapes(cfg)
    real = init_state(cfg)
    assert estimate.tree_size(params) == gpt.n_params(real["params"])
    assert estimate.tree_bytes(opt) == estimate.tree_bytes(real["opt_state"])


def test_phenom_trainable_count_matches_the_init():
    cfg = PhenomConfig(data=DataConfig(K=50, L=12), model=ModelSection(w=3, d=4))
    model = build_model(cfg)
    params, _, trainable = phenom_cost.shapes(cfg, model)
    real = phenom.init_params(jax.random.key(0), model)
    mask = phenom.trainable_mask(real, model)
    assert trainable == sum(v.size for k, v in real.items() if mask[k])
    assert estimate.tree_size(params) == sum(v.size for v in real.values())


@pytest.mark.parametrize(
    "NL,H,E,L,B,pos",
    [
        (2, 2, 16, 32, 64, "learned"),
        pytest.param(3, 2, 8, 32, 64, "learned", marks=pytest.mark.slow),  # a third layer
        (2, 4, 8, 48, 16, "rope"),
    ],  # fmt: skip
)
def test_transformer_flops_match_xla_cost_analysis(NL, H, E, L, B, pos):
    """The analytic step and evaluation FLOPs within 15% of XLA's count of the same programs
    (unrolled layers: XLA counts a loop body once)."""
    cfg = _gpt_cfg(NL, H, E, L, B, pos)
    params = gpt.init_params(jax.random.key(0), cfg.model, L)
    x = jnp.zeros((B, L), jnp.int32)
    grad = jax.jit(jax.value_and_grad(gpt.loss_fn), static_argnums=2)
    xla_step = _cost(grad.lower(params, x, cfg.model).compile())["flops"]
    fwd = jax.jit(gpt.position_losses, static_argnums=2)
    xla_fwd = _cost(fwd.lower(params, x, cfg.model).compile())["flops"]
    matmul, elem = transformer_cost.forward_flops(L, H * E, H, NL)
    assert B * (3 * matmul + 4 * elem) == pytest.approx(xla_step, rel=0.15)
    assert B * (matmul + elem) == pytest.approx(xla_fwd, rel=0.15)
    step, ev = transformer_cost.work(cfg, gpt.n_params(params))
    assert ev.flops == pytest.approx(cfg.data.K * (matmul + elem))  # K = 64: whole chunks
    assert step.flops > B * 3 * matmul


@pytest.mark.parametrize(
    "w,d,param",
    [
        (1, 8, "full"),
        (4, 8, "full"),
        (6, 32, "full"),
        (8, 8, "full"),
        (4, 8, "shared"),
        (4, 8, "relative"),
    ],  # fmt: skip
)
def test_phenom_flops_match_xla_cost_analysis(w, d, param):
    """One block of rows (no loop for XLA to count once): step and evaluation within 10%."""
    K, L = 100, 24
    cfg = PhenomConfig(data=DataConfig(K=K, L=L), model=ModelSection(w=w, d=d, param=param))
    model = build_model(cfg)
    _, _, trainable = phenom_cost.shapes(cfg, model)
    step, ev = phenom_cost.work(cfg, model, trainable, trainable)
    p = phenom.init_params(jax.random.key(0), model)
    bits, wts = jnp.zeros((K, L), jnp.uint8), jnp.full((K,), 1.0 / K)
    xla_step = _cost(jax.jit(phenom.loss_and_grad).lower(p, bits, wts).compile())["flops"]
    metrics = jax.jit(lambda p, b: phenom.sequence_metrics(p, b, chunk=K))
    xla_eval = _cost(metrics.lower(p, bits).compile())["flops"]
    assert step.flops - 12 * trainable == pytest.approx(xla_step, rel=0.1)
    assert ev.flops == pytest.approx(xla_eval, rel=0.1)


@pytest.mark.parametrize(  # bf16 behind slow: on the CPU one count serves both (docstring)
    "compute_dtype", ["float32", pytest.param("bfloat16", marks=pytest.mark.slow)]
)
def test_activation_memory_is_near_xla_memory_analysis(compute_dtype):
    """The backward's kept activations within a factor 1.5 of XLA's temporary buffers, in bf16
    too (the CPU keeps bf16 intermediates in float32, so one count serves both)."""
    for NL, H, E, L, B in ((2, 2, 16, 32, 64), (3, 4, 8, 64, 16)):
        cfg = _gpt_cfg(NL, H, E, L, B)
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, compute_dtype=compute_dtype)
        )
        params = gpt.init_params(jax.random.key(0), cfg.model, L)
        grad = jax.jit(jax.value_and_grad(gpt.loss_fn), static_argnums=2)
        temp = grad.lower(params, jnp.zeros((B, L), jnp.int32), cfg.model).compile()
        temp = temp.memory_analysis().temp_size_in_bytes
        est = transformer_cost.activation_bytes(B, L, H * E, H, NL)
        assert temp / 1.5 < est < temp * 1.5


def test_roofline_takes_the_slower_of_compute_and_memory():
    dev = devices.Accelerator("x", peak_flops=100.0, bandwidth=10.0, memory=1.0, launch_s=0.5)
    assert devices.project_seconds(100.0, 1.0, 0, dev, 0.5) == pytest.approx(2.0)
    assert devices.project_seconds(1.0, 100.0, 2, dev, 0.5) == pytest.approx(20.0 + 1.0)
    names = {d.name for d in devices.DEVICES}
    assert {"H100", "H200", "TPU v5e"} <= names


def test_host_memory_is_the_machine_total():
    total = devices.host_memory_bytes()
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert total == pytest.approx(kib * 1024, rel=0.05)


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(1, 3000),
    n=st.integers(1, 20),
    max_chunk=st.integers(1, 700),
)
def test_dispatch_count_equals_drive(total, n, max_chunk):
    grid = log_spaced_steps(total, n)
    calls = []

    def advance(state, k):
        calls.append(k)
        return state, np.zeros(k, np.float32)

    drive(0, Schedule(total, total, tuple(grid), max_chunk), step=0, advance=advance,
          evaluate=lambda s, t: None, progress=False)  # fmt: skip
    assert timing.n_chunks(grid, total, max_chunk) == len(calls)


# -- the report ----------------------------------------------------------------------------------


def test_plan_json_of_an_embedded_config(capsys):
    assert main(["plan", "tiny", "--json", "--budget", "0.2"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("params", "flops_per_step", "peak_memory_bytes", "predicted_seconds",
                "predicted_seconds_by_device"):  # fmt: skip
        assert key in r
    assert set(r["predicted_seconds_by_device"]) == {"H100", "H200", "TPU v5e"}
    assert r["predicted_seconds"] > 0 and r["fits"]
    parts = sum(p["nbytes"] for p in r["memory"])
    assert r["peak_memory_bytes"] == pytest.approx(parts)
    assert r["evaluations"] == 6 and r["steps"] == 60


def test_plan_text_of_a_phenom_sweep(tmp_path, capsys):
    cfg = tmp_path / "p.toml"
    cfg.write_text("[data]\nK = 200\nL = 12\n[model]\nw = 2\nd = 4\n[train]\nsteps = 20\n")
    args = ["plan", str(cfg), "--sweep-members", "6", "--sweep-seeds", "2", "--no-measure"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sweep group of 6 members" in out and "projection" in out and "H100" in out


def test_sweep_memory_grows_with_members():
    cfg = PhenomConfig(data=DataConfig(K=500, L=20), model=ModelSection(w=4, d=8))
    two = {p.name: p.nbytes for p in cfg.cost(members=2, seeds=2).parts}
    eight = {p.name: p.nbytes for p in cfg.cost(members=8, seeds=2).parts}
    for name in ("parameters", "optimizer state", "gradients", "curve rows of one evaluation"):
        assert eight[name] == pytest.approx(4 * two[name])
    assert eight["bits: device copy"] == two["bits: device copy"] == 2 * 500 * 20
    r1 = plan(cfg, measure=False)
    r8 = plan(cfg, members=8, seeds=2, measure=False)
    assert r8["flops_per_step"] == pytest.approx(8 * r1["flops_per_step"])


def test_check_fits_names_the_largest_parts_fields(monkeypatch):
    monkeypatch.setattr(memory, "available", lambda: (1e6, 1e6, "1 MB of RAM"))
    cfg = load_config(TrainConfig, packaged("demo"))
    with pytest.raises(ConfigError, match=r"^data\.L, train\.eval_chunk.*more than 1 MB of RAM"):
        memory.check_fits(cfg.cost().parts)
    parts = dataclasses.replace(cfg, data=DataConfig(K=16, L=8)).cost().parts
    # at K = 16 the data parts vanish: what is left is the model (parameters, optimizer state,
    # gradients: 4 copies) and one batch's activations, independent of K
    byname = {p.name: p.nbytes for p in parts}
    model = byname["parameters"] + byname["optimizer state"] + byname["gradients"]
    assert model == pytest.approx(4 * byname["parameters"], rel=1e-3)
    batch = byname["activations of one batch (forward kept for backward)"]
    assert estimate.total(parts) < 1.1 * (model + batch + byname["evaluation chunk activations"])


# -- bounds and refusals -------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.integers(-(2**70), 2**70))
def test_integers_beyond_int64_are_config_errors(value):
    if -(2**63) <= value < 2**63 and 1 <= value <= INT32_MAX:
        assert from_dict(DataConfig, {"K": value}).K == value
    else:
        with pytest.raises(ConfigError, match=r"^data\.K: expected an integer"):
            from_dict(DataConfig, {"K": value}, where="data")


@pytest.mark.parametrize("field", ["steps", "batch", "num_evals", "max_chunk", "eval_chunk"])
def test_loop_sizes_are_bounded_by_int32(field):
    with pytest.raises(ConfigError, match=rf"{field}: expected an integer in \[1, 2147483647\]"):
        from_dict(LoopConfig, {field: INT32_MAX + 1})
    assert getattr(from_dict(LoopConfig, {field: INT32_MAX}), field) == INT32_MAX


def _cli(args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    code = "import sys; from phenomjax.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "demo", "--set", "data.K=3000000000"], "data.K: expected an integer in [1,"),
        (["train", "demo", "--set", "data.K=99999999999999999999999"], "int64 range"),
        (["train", "demo", "--set", "data.L=100000"], "data.L, train.eval_chunk, model.n_head:"),
        (["train", "demo", "--set", "train.batch=100000000"], "train.batch, data.L, model.n_"),
    ],
)
def test_train_refuses_with_one_line_and_no_run_folder(tmp_path, args, needle):
    p = _cli([*args, "--out", str(tmp_path / "run")], tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phenomjax train: error: ")
    assert needle in lines[0]
    assert not (tmp_path / "run").exists()


def test_train_phenom_and_sweep_refuse_what_cannot_fit(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text("[data]\nK = 2000000000\nL = 100\n[model]\nw = 4\nd = 8\n")
    for cmd in (["train-phenom", str(cfg)], ["sweep", str(cfg), "--lr", "1e-3,1e-2"]):
        p = _cli([*cmd, "--out", str(tmp_path / "out")], tmp_path)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "data.K" in lines[0] and "GiB of memory" in lines[0]
        assert not (tmp_path / "out").exists()


# -- what max_chunk sizes (issue 21 item 7) ------------------------------------------------------


def test_everything_sized_by_max_chunk_is_counted_and_bounded_by_the_run(monkeypatch):
    """The per-chunk loss buffer (device and host) and a chunk's train rows are counted, at the
    longest chunk a run dispatches: min(max_chunk, steps)."""
    tiny = load_config(TrainConfig, packaged("tiny"), ["train.max_chunk=2147483647"])
    loop = TrainSection(steps=7, max_chunk=INT32_MAX)
    phenom_cfg = PhenomConfig(data=DataConfig(K=32, L=6), train=loop)
    for cfg, steps in ((tiny, 60), (phenom_cfg, 7)):
        byname = {p.name: p for p in cfg.cost().parts}
        buf = byname["per-step losses of one chunk (device)"]
        assert buf.nbytes == 4 * steps and "train.max_chunk" in buf.fields
        assert byname["per-step losses of one chunk (host copy)"].nbytes == 4 * steps
        assert byname["train rows of one chunk"].nbytes == estimate.CHUNK_ROW * steps
    group = {p.name for p in phenom_cfg.cost(members=4).parts}
    assert (
        "per-step losses of one chunk (device)" in group and "train rows of one chunk" not in group
    )
    # a run that does dispatch 2^31 - 1 steps at once is refused before anything is allocated
    monkeypatch.setattr(memory, "available", lambda: (8 * 2**30, 8 * 2**30, "8 GiB of RAM"))
    huge = load_config(TrainConfig, packaged("tiny"), [f"train.steps={INT32_MAX}",
                                                       f"train.max_chunk={INT32_MAX}"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"^train\.steps: this run needs about 2\d\d GiB"):
        memory.check_fits(huge.cost().parts, "run")
    parts = {p.name: p.nbytes for p in huge.cost().parts}
    assert parts["per-step losses of one chunk (device)"] == 4 * INT32_MAX


def test_the_capacity_ladder_counts_max_chunk_alike():
    from phenomjax.capacity import CapacityConfig
    from phenomjax.capacity import plan as ladder

    cfg = load_config(CapacityConfig, "experiments/capacity_cpu.toml",
                      [f"train.max_chunk={INT32_MAX}"])  # fmt: skip
    for job in ladder(cfg, quick=True):
        buf = {p.name: p.nbytes for p in job.cfg.cost().parts}
        assert buf["per-step losses of one chunk (device)"] <= 4 * job.cfg.train.steps


PHENOM_TOML = Path(__file__).resolve().parents[2] / "experiments" / "phenom.toml"
# the child's own peak RSS: VmHWM belongs to the program exec'd (ru_maxrss would carry over the
# parent's peak, since Linux keeps it across fork and exec)
PEAK_RSS = (
    "import sys\nfrom phenomjax.cli import main\nrc = main()\n"
    "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0].split()[1]\n"
    "print('peak_rss_kib', hwm, file=sys.stderr)\nsys.exit(rc)"
)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "tiny", "--set", "train.steps=20"],
        ["train-phenom", str(PHENOM_TOML), "--set", "train.steps=20"],
        ["sweep", str(PHENOM_TOML), "--lr", "1e-2,3e-2", "--set", "train.steps=20"],
    ],
)
def test_a_huge_max_chunk_allocates_nothing_of_its_size(tmp_path, args):
    """`--set train.max_chunk=2147483647` once allocated max_chunk floats twice (16 GiB); the
    buffer is now as long as the longest chunk the run dispatches, so the run stays small."""
    small = ["--set", "data.K=32", "--set", "data.L=6", "--set", "model.w=2", "--set",
             "model.d=2"] if args[0] != "train" else []  # fmt: skip
    argv = [*args, *small, "--set", f"train.max_chunk={INT32_MAX}", "--no-progress",
            "--out", str(tmp_path / "out")]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", PEAK_RSS, *argv], cwd=tmp_path.parent, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    peak_kib = int(p.stderr.strip().splitlines()[-1].split()[1])
    assert peak_kib < 3 * 2**20, f"peak RSS {peak_kib / 2**20:.2f} GiB"  # the old code: > 8


def test_the_report_asks_only_the_configs_cost(monkeypatch):
    """plan() names no family: any config with data, train and a cost() is reported, and a
    device apart from the host is checked apart (the largest device part's fields named)."""

    @dataclasses.dataclass(frozen=True)
    class Toy:
        data: DataConfig = DataConfig(K=10, L=4)
        train: LoopConfig = LoopConfig(steps=100, num_evals=3)

        def cost(self, members: int = 1, seeds: int = 1) -> estimate.Cost:
            parts = (estimate.Part("weights", 6e5, ("toy.width",)),
                     estimate.Part("rows", 2e5, ("data.K",), "host"))  # fmt: skip
            return estimate.Cost("toy", "toy training", 7, 5, estimate.Work(10.0, 20.0, 1),
                                 estimate.Work(3.0, 4.0, 1), parts)  # fmt: skip

    r = plan(Toy(), measure=True)
    assert r["what"] == "toy training" and r["params"] == 7 and r["trainable_params"] == 5
    assert r["flops_per_step"] == 10.0 and r["peak_memory_bytes"] == 8e5
    assert r["measured"] is None  # no probe: nothing to time
    monkeypatch.setattr(memory, "available", lambda: (5e5, 1e9, "the GPU's 0.5 MB"))
    assert not memory.fits(Toy().cost().parts)
    with pytest.raises(ConfigError, match=r"^toy\.width: this run needs about .* weights"):
        memory.check_fits(Toy().cost().parts, "run")
    monkeypatch.setattr(memory, "available", lambda: (1e6, 1e5, "the GPU's 1 MB"))
    with pytest.raises(ConfigError, match=r"^data\.K: this run needs about .* rows"):
        memory.check_fits(Toy().cost().parts, "run")
