#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the tests: the C++ unit tests (ctest) and the Python tests.
#   scripts/test.sh [--quick | --real-servers] [--no-sanitizers] [PYTEST ARGS...]
# After the C++ unit tests come the sanitizer runs (scripts/sanitize.sh asan, then tsan: the unit
# tests and a short engine-against-simulator run) and the fuzz targets (scripts/fuzz.sh 60: a minute
# each); on 2 cores they add ~10 min the first time (measured: asan 3.8, tsan 1.4, fuzz 4.7 min) and
# ~6 min after (their builds under build/ are kept; the fuzzing itself always takes its 4 min).
# --no-sanitizers leaves them out (the inner loop; CI runs the default).
# --real-servers adds the real-server tier (pytest marker real_server: vLLM CPU, llama.cpp's
# llama-server, transformers serve, installed once by scripts/servers/ into
# ~/.cache/agentperf-servers, outside the clone; the first run builds llama.cpp: ~15 min on 2 cores).
# The tier is not in the default run yet: on a shared 2-core box its capacity assertions against
# tiny CPU models did not yet repeat reliably (see scripts/servers/README.md). --quick is the default.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=1
sanitizers=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) shift ;;
    --real-servers) quick=0; shift ;;
    --no-sanitizers) sanitizers=0; shift ;;
    *) break ;;
  esac
done
./scripts/setup.sh

echo "test: building the C++ unit tests"
cmake -S . -B build/cpp-tests -DAGENTPERF_BUILD_TESTS=ON -DAGENTPERF_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp-tests -j "$(nproc)" >/dev/null
(cd build/cpp-tests && ctest --output-on-failure)

if [ "$sanitizers" = 1 ]; then
  timed() { local t0=$SECONDS; "$@"; echo "test: $* took $((SECONDS - t0)) s"; }
  echo "test: sanitizers and fuzzing (scripts/test.sh --no-sanitizers leaves them out)"
  timed ./scripts/sanitize.sh asan
  timed ./scripts/sanitize.sh tsan
  timed ./scripts/fuzz.sh 60
fi

# pytest exits 5 when the selection holds no test (e.g. a file of the other group was named)
py() { local rc=0; .venv/bin/python -m pytest "$@" || rc=$?; [ "$rc" = 0 ] || [ "$rc" = 5 ] || exit "$rc"; }
if [ "$quick" = 1 ]; then
  echo "test: Python tests (without the real-server tier: scripts/test.sh --real-servers runs it)"
  py -q -m "not real_server" "$@"
else
  echo "test: Python tests"
  py -q -m "not real_server" "$@"
  # after the others, so that installs and servers do not load the machine under timing-sensitive tests
  echo "test: the real-server tier (installs each server once into ~/.cache/agentperf-servers)"
  py -q -m real_server "$@"
fi
