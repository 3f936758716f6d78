#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the tests: the C++ unit tests (ctest) and the Python tests.
#   scripts/test.sh [--quick] [--no-sanitizers] [--no-real-servers] [PYTEST ARGS...]
# The default is what CI runs:
# - after the C++ unit tests, the sanitizer runs (scripts/sanitize.sh asan, then tsan: the unit tests
#   and a short engine-against-simulator run) and the fuzz targets (scripts/fuzz.sh 60: a minute
#   each); on 2 cores ~10 min the first time (measured: asan 3.8, tsan 1.4, fuzz 4.7 min), ~6 after;
# - after the Python tests, the real-server tier (pytest marker real_server: vLLM CPU, llama.cpp's
#   llama-server, transformers serve, installed once by scripts/servers/ into
#   ~/.cache/agentperf-servers, outside the clone, keyed by version; from an empty cache the
#   installs and the llama.cpp build take ~15 min on 2 cores, the tier's tests ~15 min).
# --no-sanitizers and --no-real-servers leave one out; --quick leaves both out (the inner loop).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
sanitizers=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; sanitizers=0; shift ;;
    --no-real-servers) quick=1; shift ;;
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
echo "test: Python tests"
py -q -m "not real_server" "$@"
if [ "$quick" = 0 ]; then
  # after the others, so that installs and servers do not load the machine under timing-sensitive
  # tests; the three installs run side by side (a failed one fails its tests with its own message)
  echo "test: the real-server tier (each server installed once into ${AGENTPERF_SERVERS_CACHE:-~/.cache/agentperf-servers})"
  for s in vllm_cpu llama_cpp hf_serve; do ./scripts/servers/$s.sh install >/dev/null & done
  wait || true
  py -q -m real_server "$@"
fi
