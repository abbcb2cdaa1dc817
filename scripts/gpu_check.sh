#!/usr/bin/env bash
# The first check of lpstudio on a CUDA machine, in under 8 minutes, with one JSON of results.
#
#   scripts/gpu_check.sh [RESULT.json]      (default: $OUT/gpu_check.json, else ./gpu_check.json)
#
# Needs: this repository checked out with its dependencies installed, and ../shared beside it
# (the synthetic weights the test suite uses, shared/liveportrait). No GPU had been lent to the
# project before this script: cudagraph, tensorrt and compile on CUDA have never run, and this is
# what runs them first. Steps, each under its own `timeout` and within the total budget:
#
#   1. cuda     torch sees a CUDA device (else: one line on stderr, exit 2, nothing else runs)
#   2. pytest   python -m pytest -m gpu --runslow        (the GPU tests, slow ones included)
#   3. bench    lpstudio bench --device cuda --json --budget-s ...  (eager vs fused/cudagraph)
#   4. live     python -m lpstudio.server.live_bench --device cuda --json  (camera-to-screen)
#
# The result holds, per step: the command, its exit code (124: stopped by its timeout), its
# seconds, and its JSON output (bench, live) or the tail of its log. Exit status: 0 when every
# step exited 0, 1 when one did not, 2 without CUDA.
set -uo pipefail

TOTAL_BUDGET_S=${GPU_CHECK_BUDGET_S:-470}  # under the 8 minutes asked for, with 10 s for the bookkeeping
CUDA_TIMEOUT_S=60                          # importing torch and initialising CUDA
PYTEST_TIMEOUT_S=150                       # 4 GPU tests today; each builds small synthetic networks
BENCH_BUDGET_S=150                         # bench's own budget: it skips steps that would end past it
BENCH_TIMEOUT_S=190                        # the budget plus the time to build the engine and report
LIVE_TIMEOUT_S=100                         # 10 warm-up + 100 timed frames; >= 30 fps is the goal
LIVE_FRAMES=100
LIVE_WARMUP=10
KILL_AFTER_S=10                            # SIGKILL this long after a step's SIGTERM
TAIL_CHARS=4000                            # log kept per step in the result

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULT=${1:-${OUT:-.}/gpu_check.json}
PYTHON=${PYTHON:-python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$(dirname "$RESULT")" || { echo "gpu_check: cannot create the folder of $RESULT" >&2; exit 2; }
: >"$WORK/steps.tsv"

# run NAME TIMEOUT_S COMMAND...: run one step (capped by what the total budget leaves), log it.
run() {
  local name=$1 limit=$2
  shift 2
  local left=$((TOTAL_BUDGET_S - SECONDS))
  ((limit > left)) && limit=$left
  local start=$SECONDS rc
  if ((limit < 1)); then
    echo "skipped: the total budget of ${TOTAL_BUDGET_S} s was spent" >"$WORK/$name.log"
    rc=125
  else
    [[ $name == cuda ]] || echo "gpu_check: $name (at most ${limit} s): $*" >&2
    timeout --kill-after="$KILL_AFTER_S" "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log"
    rc=$?
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$*" >>"$WORK/steps.tsv"
  return "$rc"
}

# write_result: the one JSON, from steps.tsv and each step's output and log.
write_result() {
  "$PYTHON" - "$WORK" "$RESULT" "$TAIL_CHARS" "$TOTAL_BUDGET_S" "$SECONDS" <<'PY'
import json, sys, time
from pathlib import Path

work, result, tail, budget, total = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, rc, seconds, command = line.split("\t", 3)
    out = work / f"{name}.out"
    log = work / f"{name}.log"
    text = out.read_text(errors="replace") if out.exists() else ""
    step = {"name": name, "command": command, "exit_code": int(rc), "seconds": int(seconds)}
    try:
        step["json"] = json.loads(text)
    except ValueError:
        both = text + (log.read_text(errors="replace") if log.exists() else "")
        step["log_tail"] = both[-tail:]
    steps.append(step)
report = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "ok": bool(steps) and all(s["exit_code"] == 0 for s in steps),
    "seconds": total,
    "budget_s": budget,
    "steps": steps,
}
tmp = result.with_name(f".{result.name}.partial")
tmp.write_text(json.dumps(report, indent=2) + "\n")
tmp.replace(result)
PY
}

if ! run cuda "$CUDA_TIMEOUT_S" "$PYTHON" -c "import sys, torch; ok = torch.cuda.is_available(); print(torch.cuda.get_device_name(0) if ok else 'none'); sys.exit(0 if ok else 3)"; then
  write_result 2>/dev/null
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is false, or torch failed to import); run this on a machine with an NVIDIA GPU" >&2
  exit 2
fi
echo "gpu_check: CUDA device: $(cat "$WORK/cuda.out")" >&2

status=0
run pytest "$PYTEST_TIMEOUT_S" "$PYTHON" -m pytest -m gpu --runslow -q -rfEs -p no:cacheprovider tests || status=1
run bench "$BENCH_TIMEOUT_S" "$PYTHON" -m lpstudio bench --device cuda --json --budget-s "$BENCH_BUDGET_S" || status=1
run live "$LIVE_TIMEOUT_S" "$PYTHON" -m lpstudio.server.live_bench --device cuda --json \
  --frames "$LIVE_FRAMES" --warmup "$LIVE_WARMUP" || status=1

write_result || { echo "gpu_check: cannot write $RESULT" >&2; exit 1; }
echo "gpu_check: $( ((status == 0)) && echo "all steps passed" || echo "a step failed") in ${SECONDS} s; results in $RESULT" >&2
exit "$status"
