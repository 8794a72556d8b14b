#!/usr/bin/env bash
# The first run on an accelerator: `phenomjax plan`'s projections next to measured figures.
# Under 5 minutes on one GPU: the paper-scale `small` transformer for a few hundred steps, the
# paper-scale phenomenological benchmark, and the GPU-relevant tests.
#
#   scripts/accelerator_check.sh             # run it (on the machine with the accelerator)
#   scripts/accelerator_check.sh --dry-run   # print the commands only
#   scripts/accelerator_check.sh --steps 500 --out /tmp/check
#
# Environment: PYTHON (default: python), JAX_PLATFORMS for the tests (default: cuda).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
STEPS=300
OUT="${TMPDIR:-/tmp}/phenomjax-accelerator-check"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --steps) STEPS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "accelerator_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

PY="${PYTHON:-python}"
CLI=("$PY" -c "import sys; from phenomjax.cli import main; sys.exit(main())")
SMALL=(experiments/small.toml --set "train.steps=$STEPS" --set train.num_evals=3)
PHENOM=(experiments/phenom.toml --set data.K=100000 --set data.L=100 --set "train.steps=$STEPS"
        --set train.num_evals=3 --set model.w=8 --set model.d=8)

# run CMD...: echo the command, then run it unless --dry-run
run() { printf '+ %s\n' "$*"; if [ "$DRY" = 0 ]; then "$@"; fi; }
# into FILE CMD...: the same, stdout to FILE
into() { local f="$1"; shift; printf '+ %s > %s\n' "$*" "$f"; if [ "$DRY" = 0 ]; then "$@" > "$f"; fi; }
# timed NAME CMD...: the same, wall seconds written to $OUT/NAME.seconds
timed() {
  local name="$1"; shift
  printf '+ %s   (timed)\n' "$*"
  if [ "$DRY" = 0 ]; then
    local t0; t0=$(date +%s%N)
    "$@"
    awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }' > "$OUT/$name.seconds"
  fi
}

run mkdir -p "$OUT"
run rm -rf "$OUT/small" "$OUT/phenom"
run "$PY" -c "import jax; print(jax.devices())"
# 1. what plan predicts: projections (no timing) and the measured-step prediction here
into "$OUT/small.projection.json" "${CLI[@]}" plan "${SMALL[@]}" --no-measure --json
into "$OUT/small.plan.json" "${CLI[@]}" plan "${SMALL[@]}" --json
into "$OUT/phenom.projection.json" "${CLI[@]}" plan "${PHENOM[@]}" --no-measure --json
into "$OUT/phenom.plan.json" "${CLI[@]}" plan "${PHENOM[@]}" --json
# 2. the real runs, timed whole (start-up to exit)
timed small "${CLI[@]}" train "${SMALL[@]}" --out "$OUT/small" --no-progress
timed phenom "${CLI[@]}" train-phenom "${PHENOM[@]}" --out "$OUT/phenom" --no-progress
# 3. the paper-scale phenomenological benchmark (K = 100000, L = 100 among its shapes)
run "$PY" scripts/bench_phenom.py --rounds 3
# 4. the GPU-relevant tests, on the accelerator (conftest defaults JAX_PLATFORMS to cpu)
run env JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}" "$PY" -m pytest -q -m "not slow" \
  tests/transformer/test_model.py tests/phenom/test_model.py tests/transformer/test_train.py
# 5. predicted next to measured
run "$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path

import jax

out = Path(sys.argv[1])
kind = jax.devices()[0].device_kind
print(f"\ndevice: {kind}")
for name in ("small", "phenom"):
    proj = json.loads((out / f"{name}.projection.json").read_text())
    plan = json.loads((out / f"{name}.plan.json").read_text())
    wall = float((out / f"{name}.seconds").read_text())
    m = plan["measured"] or {}
    print(f"\n{name}: {plan['steps']} steps, {plan['evaluations']} evaluations, "
          f"{plan['params']:,} parameters, peak memory {plan['peak_memory_bytes'] / 2**30:.3g} GiB")
    print(f"  whole run   predicted here {plan['predicted_seconds']:.1f} s   measured {wall:.1f} s"
          f"   ratio {plan['predicted_seconds'] / wall:.2f}")
    for d in proj["devices"]:
        if d["name"].split()[-1].lower() in kind.lower():
            print(f"  step        projected {d['step_s'] * 1e3:.3g} ms ({d['name']})   measured "
                  f"{m.get('step_s', float('nan')) * 1e3:.3g} ms")
            print(f"  evaluation  projected {d['eval_s']:.3g} s   measured "
                  f"{m.get('eval_s', float('nan')):.3g} s")
    print(f"  compile {m.get('compile_s', 0) + m.get('eval_compile_s', 0):.1f} s, start-up and "
          f"setup {m.get('startup_s', 0) + m.get('setup_s', 0):.1f} s (not projected)")
PYEOF
