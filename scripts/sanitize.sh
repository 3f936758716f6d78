#!/usr/bin/env bash
# Runs the C++ unit tests (the ctest binary) and a short engine-against-simulator run
# (cpp/tests/sanitize/engine_sim_run.cpp: both in one process, HTTP/1.1 and HTTP/2, every fault of
# the simulator on) under sanitizers:
#   scripts/sanitize.sh asan [SECONDS]   AddressSanitizer + UndefinedBehaviorSanitizer (and leaks)
#   scripts/sanitize.sh tsan [SECONDS]   ThreadSanitizer (the engine's and the simulator's threads)
# SECONDS: how long each of the run's four scenarios lasts (default 1.5). Builds into build/asan or
# build/tsan (CMake option AGENTPERF_SANITIZE=address|thread): the first build takes a few minutes
# on 2 cores, the run itself about a minute. Any sanitizer report stops the program and fails the
# command (exit 86: halt_on_error, -fno-sanitize-recover). A unit test whose checks fail is run once
# more on its own before it fails the command: the timing tests are sensitive to a loaded machine,
# and a sanitizer slows everything down.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-}
seconds=${2:-1.5}
case "$kind" in
  asan) option=address ;;
  tsan) option=thread ;;
  *) echo "usage: scripts/sanitize.sh asan|tsan [SECONDS_PER_SCENARIO]" >&2; exit 2 ;;
esac
build=build/$kind
report=86  # the exit status of a sanitizer report (see the options below)

echo "sanitize($kind): building into $build"
cmake -S . -B "$build" -DAGENTPERF_BUILD_TESTS=ON -DAGENTPERF_BUILD_PYTHON=OFF -DAGENTPERF_SANITIZE=$option \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 -DCMAKE_C_FLAGS=-O1 >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

export ASAN_OPTIONS="halt_on_error=1:exitcode=$report:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:exitcode=$report:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:exitcode=$report:second_deadlock_stack=1"

fail() { echo "sanitize($kind): FAILED: $*" >&2; exit 1; }

echo "sanitize($kind): C++ unit tests"
log=$build/unit_tests.log
rc=0
"$build/agentperf_cpp_tests" >"$log" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
  grep -v '^ok ' "$log" | tail -n 60 >&2
  [ "$rc" != "$report" ] || fail "a sanitizer report in the unit tests (full log: $log)"
  failed=$(sed -n 's/^FAIL  *//p' "$log")
  [ -n "$failed" ] || fail "the unit tests exited with status $rc (full log: $log)"
  for t in $failed; do
    echo "sanitize($kind): running $t again on its own"
    rc=0
    "$build/agentperf_cpp_tests" "$t" >"$log.retry" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { cat "$log.retry" >&2; fail "unit test $t (status $rc)"; }
  done
  echo "sanitize($kind): $(tail -n 1 "$log"), then passed when run again: $(echo $failed)"
else
  tail -n 1 "$log"
fi

echo "sanitize($kind): the engine against the simulator ($seconds s per scenario)"
rc=0
"$build/engine_sim_run" "$seconds" || rc=$?
[ "$rc" = 0 ] || fail "the engine-against-simulator run (status $rc$([ "$rc" = "$report" ] && echo ': a sanitizer report'))"
echo "sanitize($kind): ok"
