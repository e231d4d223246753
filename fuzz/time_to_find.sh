#!/usr/bin/env bash
# Time to find one catalogue bug with the crash_workload fuzz target (docs/bugs.md).
#
#   fuzz/time_to_find.sh BUG corpus|empty [CAP_SECONDS]
#
# Runs the already built binary (`cd fuzz && cargo fuzz build -O --no-trace-compares -s none
# crash_workload`, the campaign build; `BIN=PATH` names another), so no build time is
# counted, from a copy of the committed corpus or from an empty one, and prints one table row:
# bug|mode|seconds|headline class|last execution count|exit code.
set -u
bug=$1; mode=$2; cap=${3:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/fuzz/target/x86_64-unknown-linux-gnu/release/crash_workload}
[ -x "$bin" ] || { echo "build it first: cd fuzz && cargo fuzz build -O --no-trace-compares -s none crash_workload" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/corpus" "$dir/artifacts"
if [ "$mode" = corpus ]; then cp "$root"/corpus/crash_workload/* "$dir/corpus/"; fi
start=$(date +%s.%N)
CRASHSIM_BUGS=$bug "$bin" "$dir/corpus" -max_total_time="$cap" -timeout=120 -seed=1 \
  -artifact_prefix="$dir/artifacts/" > "$dir/log" 2>&1
rc=$?
end=$(date +%s.%N)
secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
last=$(grep -oE '^#[0-9]+' "$dir/log" | tail -1)
if grep -q "headline:" "$dir/log"; then
  class=$(grep -oE "headline: [A-Za-z]+" "$dir/log" | head -1 | cut -d' ' -f2)
  echo "$bug|$mode|$secs|$class|${last:-first inputs}|rc=$rc"
else
  runs=$(grep -oE "Done [0-9]+ runs" "$dir/log" | grep -oE "[0-9]+")
  echo "$bug|$mode|not found in $cap s|-|${runs:-?} runs|rc=$rc"
fi
