"""Hand-assembled hostile pickles and a memory-capped child that loads them.

`craft` writes pickle opcodes from a small expression tree, so a test can call any admitted
global with any arguments and BUILD any state onto any object, including what `pickle.dump`
would never write (a dtype whose state says "no object flags" on an object dtype, issue 12).
`load_in_child` loads files in a separate Python under an address-space limit and reports one
line per file, so a crash (a signal) or a memory blow-up cannot take the test process with it.
"""

from __future__ import annotations

import json
import pickle
import pickletools
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class G:
    """A global: module.name (any spelling, numpy.core or numpy._core)."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """REDUCE: func(*args)."""

    func: Any
    args: tuple


@dataclass(frozen=True)
class NewObj:
    """NEWOBJ: cls.__new__(cls, *args)."""

    cls: Any
    args: tuple


@dataclass(frozen=True)
class Build:
    """BUILD: obj.__setstate__(state), or obj.__dict__.update(state)."""

    obj: Any
    state: Any


@dataclass(frozen=True)
class Put:
    """Memoize `node` at index i (then Get(i) refers to the same object)."""

    i: int
    node: Any


@dataclass(frozen=True)
class Get:
    i: int


def _plain(value: Any) -> bytes:
    """Opcodes of a plain Python value, without PROTO and STOP and without memo traffic."""
    body = pickletools.optimize(pickle.dumps(value, protocol=3))
    assert body[:2] == b"\x80\x03" and body[-1:] == b"."
    return body[2:-1]


def _emit(node: Any) -> bytes:
    if isinstance(node, G):
        return b"c" + node.module.encode() + b"\n" + node.name.encode() + b"\n"
    if isinstance(node, Call):
        return _emit(node.func) + b"(" + b"".join(_emit(a) for a in node.args) + b"tR"
    if isinstance(node, NewObj):
        return _emit(node.cls) + b"(" + b"".join(_emit(a) for a in node.args) + b"t\x81"
    if isinstance(node, Build):
        return _emit(node.obj) + _emit(node.state) + b"b"
    if isinstance(node, Put):
        return _emit(node.node) + b"r" + struct.pack("<I", node.i)  # LONG_BINPUT
    if isinstance(node, Get):
        return b"j" + struct.pack("<I", node.i)  # LONG_BINGET
    if isinstance(node, tuple):
        return b"(" + b"".join(_emit(x) for x in node) + b"t"
    if isinstance(node, list):
        return b"]" + (b"(" + b"".join(_emit(x) for x in node) + b"e" if node else b"")
    if isinstance(node, dict):
        items = b"".join(_emit(k) + _emit(v) for k, v in node.items())
        return b"}" + (b"(" + items + b"u" if node else b"")
    return _plain(node)


def craft(node: Any) -> bytes:
    """A protocol-3 pickle of the expression tree `node`."""
    return b"\x80\x03" + _emit(node) + b"."


# -- the numpy globals a legacy log may name, in both spellings -------------------------------

CORE = ("numpy.core", "numpy._core")


def dtype(code: Any, *, state: Any = None, core: str = "numpy") -> Any:
    node = Call(G(core, "dtype"), (code, False, True))
    return node if state is None else Build(node, state)


def frombuffer(buf: Any, dt: Any, shape: tuple, order: str = "C", core: str = CORE[0]) -> Call:
    return Call(G(f"{core}.numeric", "_frombuffer"), (buf, dt, shape, order))


def scalar(dt: Any, raw: Any, core: str = CORE[0]) -> Call:
    return Call(G(f"{core}.multiarray", "scalar"), (dt, raw))


def reconstruct(shape: tuple, dt: Any, raw: Any, core: str = CORE[0], fortran=False) -> Build:
    base = Call(G(f"{core}.multiarray", "_reconstruct"), (G("numpy", "ndarray"), (0,), b"b"))
    return Build(base, (1, shape, dt, fortran, raw))


# -- a child process that loads files under a memory cap ---------------------------------------

_CHILD = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
from phenomjax.analysis import load_run
from phenomjax.errors import PhenomjaxError

how, n = sys.argv[1].split(":")
cap = int(n)
if how == "above":  # n bytes more than this process maps once the imports are done
    with open("/proc/self/status") as f:
        vm = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
    cap += vm
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
for path in sys.argv[2:]:
    print(json.dumps({"path": path, "start": True}), flush=True)
    try:
        load_run(path)
        out = {"path": path, "outcome": "loaded"}
    except PhenomjaxError as e:
        out = {"path": path, "outcome": "refused", "type": type(e).__name__, "msg": str(e)}
    except BaseException as e:  # what escapes here is a finding: reported, not raised
        out = {"path": path, "outcome": "escaped", "type": type(e).__name__, "msg": str(e)}
    print(json.dumps(out), flush=True)
"""

CAP = 3 * 2**30  # address space of the child: jax and pandas take about 0.7 GiB of it


def load_in_child(
    paths: list[Path], cap: int = CAP, *, above_imports: bool = False, timeout: float = 300
) -> dict[str, dict]:
    """{path: outcome} of phenomjax.load_run in a child under RLIMIT_AS: `cap` bytes, or `cap`
    bytes more than the child maps after its imports (above_imports).

    Raises AssertionError with the child's stderr when it does not exit normally (a signal, a
    traceback, a non-zero status) or leaves a file without an outcome."""
    spec = f"{'above' if above_imports else 'total'}:{cap}"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, spec, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_child_env(),
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    done = {d["path"]: d for d in lines if "outcome" in d}
    started = [d["path"] for d in lines if d.get("start")]
    last = started[-1] if started else None
    assert proc.returncode == 0, (
        f"child ended with status {proc.returncode} (negative: killed by signal "
        f"{-proc.returncode}) while loading {last}; stderr: {proc.stderr[-2000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    missing = [str(p) for p in paths if str(p) not in done]
    assert not missing, missing
    return done


def _child_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.pop("XLA_FLAGS", None)  # one host device is enough to import
    return env
