#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: the C++ unit tests (ctest), the Python tests and
# the real-server tier (pytest marker real_server: vLLM CPU, llama.cpp's llama-server, transformers
# serve, installed once by scripts/servers/ into ~/.cache/agentperf-servers, outside the clone).
#   scripts/test.sh [--quick] [PYTEST ARGS...]     --quick: leave the real-server tier out
# The tier's first run installs the servers (llama.cpp builds from source: ~15 min on 2 cores);
# later runs reuse them.
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
if [ "$quick" = 1 ]; then
  echo "test: Python tests (--quick: without the real-server tier)"
  py -q -m "not real_server" "$@"
else
  echo "test: Python tests"
  py -q -m "not real_server" "$@"
  # after the others, so that installs and servers do not load the machine under timing-sensitive tests
  echo "test: the real-server tier (installs each server once into ~/.cache/agentperf-servers)"
  py -q -m real_server "$@"
fi
