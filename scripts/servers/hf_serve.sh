#!/usr/bin/env bash
# `transformers serve` (CPU torch, continuous batching) serving a tiny random-weight Llama with a
# locally trained tokenizer.
#   scripts/servers/hf_serve.sh install | start [PORT] | stop
# Env: TRANSFORMERS_VERSION (5.23.0), TORCH_VERSION (2.13.0). Install ~2 min.
# Facts: no [DONE]; usage always (stream_options ignored); ignore_eos/min_tokens -> HTTP 422; exact
# lengths via "generation_config": "{\"min_new_tokens\":N}" (a JSON string); the request's "model"
# must be the served path exactly; without --cb-num-blocks/--cb-max-batch-tokens CB takes 7 GB.
NAME=transformers-serve
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VERSION="${TRANSFORMERS_VERSION:-5.23.0}"; TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
W="$CACHE_ROOT/transformers-serve-$VERSION"
MODEL="$W/model"

install() {
  with_lock
  [ -x "$W/venv/bin/python" ] || "$PY" -m venv "$W/venv"
  if ! "$W/venv/bin/python" -c "import transformers.cli, torch, fastapi" 2>/dev/null; then
    log "installing transformers[serving]==$VERSION (CPU torch) into $W (first time only: ~2 min)"
    "$W/venv/bin/pip" install -q "torch==$TORCH_VERSION" "transformers[serving]==$VERSION" >"$W/pip.log" 2>&1 \
      || { tail -20 "$W/pip.log" >&2; die "pip install failed; log: $W/pip.log"; }
  fi
  "$W/venv/bin/python" -c "import torch,sys; sys.exit('a CUDA torch was installed; want the +cpu build' if torch.version.cuda else 0)" \
    || die "wrong torch build in $W/venv"
  if [ ! -f "$MODEL/config.json" ]; then
    HF_HUB_OFFLINE=1 "$W/venv/bin/python" "$SERVERS_DIR/make_tiny_hf.py" "$MODEL.tmp" --ctx 131072 >"$W/model.log" 2>&1 \
      || die "making the model failed; log: $W/model.log"
    rm -rf "$MODEL"; mv "$MODEL.tmp" "$MODEL"
  fi
  unlock
  echo "$W"
}

start() {
  install >/dev/null
  local port="${1:-$(free_port)}"
  local run="$W/run-$port"; mkdir -p "$run"
  mkdir -p "${HF_HUB_CACHE:-$HOME/.cache/huggingface/hub}"   # /v1/models answers 500 without it
  HF_HUB_OFFLINE=1 nohup "$W/venv/bin/transformers" serve --host 127.0.0.1 --port "$port" --continuous-batching \
    --cb-num-blocks 64 --cb-max-batch-tokens 2048 "$MODEL" >"$run/server.log" 2>&1 9>&- &
  echo $! >"$run/pid"
  wait_http "http://127.0.0.1:$port/health" "$run/pid" "$run/server.log" 120
  echo "url=http://127.0.0.1:$port/v1 model=$MODEL pid=$(cat "$run/pid") log=$run/server.log"
}

dispatch "$@"
