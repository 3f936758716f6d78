# Shared helpers for the real-server scripts (sourced, not run).
# Every build and install lives outside the clone, keyed by name and version:
#   ${AGENTPERF_SERVERS_CACHE:-~/.cache/agentperf-servers}/<name>-<version>/
# so a second run (or a second clone) reuses it. Each script:
#   <script> install          build/install once (idempotent), print the directory
#   <script> start [PORT]     start on 127.0.0.1 (installs first if needed); prints "url=... model=... pid=..."
#   <script> stop             stop the server this directory started
set -euo pipefail
SERVERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${AGENTPERF_SERVERS_CACHE:-$HOME/.cache/agentperf-servers}"
PY="${PYTHON:-python3}"

log() { echo "[$NAME] $*" >&2; }
die() { echo "[$NAME] error: $*" >&2; exit 1; }

# one install at a time per directory (two test files may ask at once); the lock is released when
# the install ends (unlock), and a started server never inherits it (it is started with 9>&-)
with_lock() {
  mkdir -p "$W"
  exec 9>"$W/.lock"
  flock 9
}
unlock() { flock -u 9 2>/dev/null || true; exec 9>&-; }

wait_http() {  # URL PIDFILE LOGFILE SECONDS
  local url="$1" pidf="$2" logf="$3" secs="$4" i
  for ((i = 0; i < secs * 2; i++)); do
    curl -sf -o /dev/null "$url" && return 0
    kill -0 "$(cat "$pidf")" 2>/dev/null || { tail -30 "$logf" >&2; die "the server exited while starting; log: $logf"; }
    sleep 0.5
  done
  tail -30 "$logf" >&2
  die "not answering $url after ${secs}s; log: $logf"
}

stop_pid() {  # PIDFILE
  local pidf="$1" pid i
  [ -f "$pidf" ] || return 0
  pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Every server script ends with `dispatch "$@"`: install | start [PORT] | stop (stop: every server
# this script's directory started).
stop() { local p; for p in "$W"/run-*/pid; do [ -f "$p" ] && stop_pid "$p"; done; return 0; }

dispatch() {
  case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    *) echo "usage: $0 install | start [PORT] | stop" >&2; exit 2 ;;
  esac
}
