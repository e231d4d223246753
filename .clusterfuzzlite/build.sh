#!/usr/bin/env bash
# Builds every cargo-fuzz target into $OUT, with its committed seed corpus as
# $OUT/<target>_seed_corpus.zip (ClusterFuzzLite / OSS-Fuzz convention).
#
# In the OSS-Fuzz image, `cargo fuzz build` picks up the sanitizer flags from the environment.
# Locally (no Docker) it needs cargo-fuzz and a nightly toolchain:
#   OUT=$(mktemp -d) .clusterfuzzlite/build.sh
set -euo pipefail
: "${OUT:?set OUT to the output directory}"
here="$(cd "$(dirname "$0")/.." && pwd)"
src="${SRC:-}"
root="${src:+$src/crashsim}"
root="${root:-$here}"
[ -d "$root/fuzz" ] || root="$here"
cd "$root/fuzz"

targets=$(cargo fuzz list)
# Outside OSS-Fuzz there is no default toolchain override: use nightly for the sanitizer flags.
toolchain=()
if [ -z "${SANITIZER:-}" ]; then toolchain=(+nightly); fi
cargo "${toolchain[@]}" fuzz build -O --debug-assertions

triple_dir=$(find target -maxdepth 3 -type d -path '*/release' -not -path '*/build/*' | head -n1)
mkdir -p "$OUT"
for t in $targets; do
  cp "$triple_dir/$t" "$OUT/$t"
  # regression-* inputs pin open bugs; they are not seeds.
  if [ -d "$root/corpus/$t" ]; then
    (cd "$root/corpus/$t" && zip -q -r -j "$OUT/${t}_seed_corpus.zip" . -x "regression-*")
  fi
done
echo "built into $OUT: $targets"
