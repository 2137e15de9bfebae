#!/usr/bin/env bash
# Runs the README's test command N times in a row while CPU burners keep every core busy, and
# prints how many runs were green and the slowest. A suite that depends on the machine's speed
# fails here; a green line (N/N) is the bar.
#
#   scripts/soak_tests.sh [N]        (default 10; extra pytest arguments in SOAK_PYTEST_ARGS)
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${1:-10}
case $runs in '' | *[!0-9]* | 0) echo "usage: scripts/soak_tests.sh N (a whole number of runs, 1 or more)" >&2; exit 2 ;; esac
logs=$(mktemp -d -t soak-XXXXXX)

burners=()
stop_burners() { [ ${#burners[@]} -eq 0 ] || kill "${burners[@]}" 2>/dev/null; }
trap stop_burners EXIT
for _ in $(seq 1 "$(nproc)"); do
  python3 -c 'while True: pass' &
  burners+=($!)
done
echo "soak: $runs runs of scripts/test.sh with ${#burners[@]} CPU burners; logs in $logs"

green=0 slowest=0
for run in $(seq 1 "$runs"); do
  started=$(date +%s%N)
  # shellcheck disable=SC2086 - extra pytest arguments are words
  scripts/test.sh -q ${SOAK_PYTEST_ARGS:-} >"$logs/run-$run.log" 2>&1
  status=$?
  took=$((($(date +%s%N) - started) / 1000000000))
  summary=$(grep -E '^[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' "$logs/run-$run.log" | tail -n 1)
  if [ $status -eq 0 ]; then
    green=$((green + 1))
    echo "run $run: green in $took s ($summary)"
  else
    echo "run $run: RED in $took s ($summary) -- $logs/run-$run.log"
    grep -E '^(FAILED|ERROR) ' "$logs/run-$run.log" | head -n 10
  fi
  [ "$took" -le "$slowest" ] || slowest=$took
done

echo "$green/$runs green, slowest run $slowest s (scripts/test.sh, ${#burners[@]} CPU burners)"
[ "$green" -eq "$runs" ]
