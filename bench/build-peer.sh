#!/usr/bin/env bash
# Builds the peer, llama.cpp's llama-server, llama-bench and llama-quantize (CPU, Release), from the llama.cpp
# source inside the npm package node-llama-cpp@3.22.1: the same release (v0.5.0) as EdgeServer's libraries.
# The build is cached outside the repository and made only when missing. Prints the bin directory.
set -euo pipefail
cache=${EDGESERVER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeserver-bench}
src="$cache/llama.cpp-v0.5.0"
bin="$src/build/bin"
if [ -x "$bin/llama-server" ] && [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-quantize" ]; then
  echo "$bin"; exit 0
fi

mkdir -p "$cache"
if [ ! -d "$src/.git" ]; then
  work=$(mktemp -d)
  (cd "$work" && npm pack node-llama-cpp@3.22.1 --silent >/dev/null && tar xzf node-llama-cpp-3.22.1.tgz)
  rm -rf "$src"
  git clone -q "$work/package/llama/gitRelease.bundle" "$src" 2>/dev/null
  rm -rf "$work"
fi

# LLAMA_USE_PREBUILT_UI would download the web UI at build time; there is no network for that here.
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >&2
cmake --build "$src/build" -j "$(nproc)" --target llama-server llama-bench llama-quantize >&2
echo "$bin"
