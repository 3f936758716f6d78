#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: the C++ unit tests (ctest) and the Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "test: building the C++ unit tests"
cmake -S . -B build/cpp-tests -DAGENTPERF_BUILD_TESTS=ON -DAGENTPERF_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp-tests -j "$(nproc)" >/dev/null
(cd build/cpp-tests && ctest --output-on-failure)

echo "test: Python tests"
.venv/bin/python -m pytest -q "$@"
