#!/usr/bin/env bash
# Runs every libFuzzer target (cpp/fuzz/fuzz_*.cpp: the SSE parser, the HTTP/1.1 response parser,
# the simulator's request parser, the client's HTTP/2 session) for a bounded time each:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s, every target)
# Needs clang (scripts/setup.sh installs it). Builds into build/fuzz (CMake option
# AGENTPERF_BUILD_FUZZERS, with AddressSanitizer + UndefinedBehaviorSanitizer; ~3 min on 2 cores
# the first time). Each target starts from its committed seeds (cpp/fuzz/corpus/<target>/, written
# by cpp/fuzz/make_seeds.py; every seed is replayed first) plus what earlier runs on this machine
# found (build/fuzz/corpus/<target>/). A crash, a sanitizer report, a broken property (abort), a
# leak, or an input that takes over 30 s (a hang; generous for a loaded machine) or 2 GiB fails the
# command; the input is saved as build/fuzz/artifacts/<target>-crash-... (or -timeout-, -oom-,
# -leak-) and replays with: build/fuzz/<target> <that file>.
# A fixed crash gets a C++ unit test and its input goes into the target's seed folder.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
case "$seconds" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is not installed: run scripts/setup.sh (or apt-get install clang)" >&2
  exit 1
fi
build=build/fuzz

echo "fuzz: building the targets into $build"
CC=clang CXX=clang++ cmake -S . -B "$build" -DAGENTPERF_BUILD_FUZZERS=ON -DAGENTPERF_BUILD_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 -DCMAKE_C_FLAGS=-O1 >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in cpp/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$build/artifacts"
failed=()
for t in "${targets[@]}"; do
  [ -x "$build/$t" ] || { echo "fuzz: no target $t (see cpp/fuzz/)" >&2; exit 2; }
  mkdir -p "$build/corpus/$t"
  dict=()
  [ -f "cpp/fuzz/$t.dict" ] && dict=("-dict=cpp/fuzz/$t.dict")
  log=$build/$t.log
  rc=0
  # New inputs go into the first folder (build/); the committed seeds are only read.
  "$build/$t" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "${dict[@]}" "$build/corpus/$t" "cpp/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  if [ "$rc" = 0 ]; then
    echo "fuzz: $t ok: ${runs:-?} inputs in ${seconds} s, ${cov:-cov: ?} edges, corpus $(ls "$build/corpus/$t" | wc -l) files"
  else
    echo "fuzz: $t FAILED (status $rc); the end of $log:" >&2
    grep -v '^#' "$log" | tail -n 40 >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ok"
