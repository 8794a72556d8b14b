"""A reader run under a memory cap, for tests/test_fuzz_readers.py.

`python fuzz_worker.py HEADROOM` sets RLIMIT_AS to HEADROOM bytes above the address space its
imports mapped, then reads `reader<TAB>path[<TAB>cache]` lines from stdin and answers
each with one JSON line: {"outcome": "ok" | "refused" | "crash", "type", "msg"}.

One process serves every example (importing pandas per example would take most of the time);
a crash of the process itself (a segfault, the kernel's OOM killer) is seen by the parent as
the pipe closing, a hang as no answer before its timeout."""

from __future__ import annotations

import json
import resource
import sys
import warnings


def _readers() -> dict:
    from phenomjax.analysis.cache import process_run
    from phenomjax.analysis.load import load_run
    from phenomjax.analysis.settings import load_analysis_config
    from phenomjax.config import load_config
    from phenomjax.transformer.train import TrainConfig

    return {
        "load_run": lambda p, _: load_run(p, per_position=True),
        "process_run": lambda p, cache: process_run(p, cache_dir=cache),
        "train_toml": lambda p, _: load_config(TrainConfig, p),
        "analysis_toml": lambda p, _: load_analysis_config(p),
    }


def _vm_size() -> int:
    """Bytes of address space mapped now (the imports): the cap is set that far above it."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def main() -> None:
    readers = _readers()  # imported before the cap: the cap is on what reading takes
    from phenomjax.errors import PhenomjaxError

    cap = _vm_size() + int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    warnings.simplefilter("ignore")  # a rebuilt cache entry warns; that is a success
    for line in sys.stdin:
        reader, path, cache = (line.rstrip("\n").split("\t") + [""])[:3]
        try:
            readers[reader](path, cache or None)
            out = {"outcome": "ok", "type": "", "msg": ""}
        except PhenomjaxError as e:
            out = {"outcome": "refused", "type": type(e).__name__, "msg": str(e)}
        except BaseException as e:  # noqa: BLE001  (what the test is looking for)
            out = {"outcome": "crash", "type": type(e).__name__, "msg": repr(e)[:2000]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
