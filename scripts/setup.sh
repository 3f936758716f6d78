#!/usr/bin/env bash
# Sets up agentperf-native on a fresh Debian/Ubuntu machine: system packages, a virtual environment
# in .venv, and the package built from this checkout (the native core compiles here).
# Idempotent: a second run only rebuilds the package.
set -euo pipefail
cd "$(dirname "$0")/.."

# clang: the libFuzzer targets (scripts/fuzz.sh, run by scripts/test.sh)
SYSTEM_PACKAGES=(build-essential cmake pkg-config libnghttp2-dev libssl-dev openssl nginx-light nghttp2-client curl clang)
missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: building and installing agentperf-native (native core: a minute or two)"
.venv/bin/python -m pip install -q ".[test]"
echo "setup: done. The command is .venv/bin/agentperf-native (or: source .venv/bin/activate)"
