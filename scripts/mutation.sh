#!/usr/bin/env bash
# Mutation testing of the numeric cores with mutmut: a development step, not a dependency and
# not part of CI. Each module is mutated alone and run against its own fast tests only.
#
#   .venv/bin/pip install mutmut              # once, into the development venv only
#   scripts/mutation.sh bayes                 # every mutant of phenomjax/bayes.py
#   scripts/mutation.sh legacy 40             # a seeded random sample of 40 mutants
#   scripts/mutation.sh all 30 0              # every module, 30 sampled mutants each, seed 0
#   ONLY="phenomjax.data.x_check_bits__mutmut_19 ..." scripts/mutation.sh data  # these only
#
# Modules: bayes data binning scoring legacy lag. The sample depends only on the mutants
# (i.e. on the module's source) and the seed, so a rerun after adding tests reruns the same
# mutants. Results: one line per mutant and a summary in $OUT/<module>.txt
# (default /tmp/phenomjax-mutation); `mutmut show <name>` (run from the repository root while
# setup.cfg is still there, i.e. KEEP=1) prints a mutant's diff.
#
# mutmut 3 reads its settings from setup.cfg, which this script writes for the run and removes
# afterwards (KEEP=1 keeps it and mutants/ for `mutmut show` / `mutmut browse`). JAX is not
# fork-safe once its backend has started, so workers come from mutmut's fork server.
# CPU-second timeouts: a loaded machine does not turn slow mutants into timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-/tmp/phenomjax-mutation}
NICE=${NICE:-15}
module=${1:?usage: scripts/mutation.sh MODULE|all [SAMPLE [SEED]]}
sample=${2:-0}
seed=${3:-0}

config() {  # module -> source file, test files, optional pytest -k expression
  case $1 in
    bayes) src=phenomjax/bayes.py; tests="tests/test_bayes.py tests/analysis/test_floor.py"; k="" ;;
    data) src=phenomjax/data.py; tests="tests/test_data.py"; k="" ;;
    binning) src=phenomjax/analysis/binning.py
      tests="tests/analysis/test_binning.py"; k="" ;;
    scoring) src=phenomjax/fitting/scoring.py
      tests="tests/fitting/test_scoring.py tests/fitting/test_verdict.py"
      # the fast scoring tests; the identifiability fixture trains and sweeps (minutes)
      k="score or min_overlap or shift or reference or lag or kill" ;;
    legacy) src=phenomjax/analysis/legacy/fields.py  # the field checks (one file per config)
      tests="tests/analysis/test_legacy.py tests/test_hostile.py tests/analysis/test_legacy_mutation_kills.py"
      # test_hostile.py: its loader tests only, not the config and CLI ones
      k="not hostile_configs and not raw_mutated_toml and not set_overrides and not toml_serializer
and not config_file_not_text and not palette and not manifest_fields and not zz_report" ;;
    lag) src=phenomjax/analysis/lag.py
      tests="tests/analysis/test_lag.py"
      k="not load_group_band_and_cli" ;;  # that one trains nothing but runs the CLI (~20 s)
    *) echo "unknown module $1 (bayes data binning scoring legacy lag all)" >&2; exit 2 ;;
  esac
}

write_cfg() {
  {
    echo "[mutmut]"
    echo "source_paths=phenomjax"
    echo "only_mutate=$src"
    echo "process_isolation=forkserver"
    echo "forkserver_warmup=collect"
    echo "pytest_add_cli_args_test_selection="
    for t in $tests; do [ -e "$t" ] && echo "    $t"; done
    if [ -n "$k" ]; then echo "    -k"; echo "    $(echo $k)"; fi
    echo "pytest_add_cli_args="
    echo "    -p"
    echo "    no:cacheprovider"
    echo "    -q"
  } >setup.cfg
}

run_module() {
  config "$1"
  write_cfg
  rm -rf mutants
  mkdir -p "$OUT"
  # 1) generate the mutants and collect which tests reach which function (no mutant runs)
  nice -n "$NICE" "$BIN/mutmut" run --max-children 1 "phenomjax.no_such_mutant" >/dev/null 2>&1 || true
  meta="mutants/$src.meta"
  [ -e "$meta" ] || { echo "mutmut did not generate $meta" >&2; exit 1; }
  # 2) the mutants to run: all, or a seeded sample
  # shellcheck disable=SC2086
  mapfile -t names < <("$BIN/python" - "$meta" "$sample" "$seed" ${ONLY:-} <<'EOF'
import json, random, sys
keys = sorted(json.load(open(sys.argv[1]))["exit_code_by_key"])
n, seed, only = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
if only:  # named mutants (e.g. the survivors of an earlier run)
    keys = [k for k in only if k in keys]
print("\n".join(sorted(random.Random(seed).sample(keys, n)) if 0 < n < len(keys) else keys))
EOF
  )
  echo "$1: ${#names[@]} mutants to run ($src)"
  nice -n "$NICE" "$BIN/mutmut" run --max-children 1 "${names[@]}" >"$OUT/$1.log" 2>&1 || true
  # 3) per-mutant status and the totals
  "$BIN/python" - "$meta" "$1" "$sample" "$seed" "${names[@]}" >"$OUT/$1.txt" <<'EOF'
import collections, json, sys
status = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault",
          -9: "segfault", None: "not checked"}
codes = json.load(open(sys.argv[1]))["exit_code_by_key"]
names = sys.argv[5:]
got = {n: status.get(codes.get(n), "suspicious") for n in names}
for n in names:
    print(f"{got[n]:12s} {n}")
c = collections.Counter(got.values())
total = len(codes)
head = f"{sys.argv[2]}: ran {len(names)} of {total} mutants (sample {sys.argv[3]}, seed {sys.argv[4]})"
print(head + ": " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
EOF
  tail -n 1 "$OUT/$1.txt"
}

cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf setup.cfg mutants; }
trap cleanup EXIT

if [ "$module" = all ]; then
  for m in bayes data binning scoring legacy lag; do run_module "$m"; done
else
  run_module "$module"
fi
