#!/usr/bin/env bash
# Makes F16, Q8_0, Q4_0 and Q4_K_M of one model with `EdgeServer quantize` and, for each, reports the file size,
# the server's resident memory once the model is loaded, and the decode speed of one greedy 128-token reply
# (Ollama's eval_count / eval_duration, the first token left out as in the request log). Run it on a quiet box:
# the numbers are of the box it runs on.
#   bench/quantize.sh MODEL-F16.gguf [--tokens 128] [--threads N] [--keep]
# The F16 source of docs/benchmarks.md (the 1B shape): `dotnet bench/EdgeServer.Bench/bin/Release/net10.0/EdgeServer.Bench.dll
# quantize-source --models-dir DIR` writes it (about 2.8 GiB) and prints its path.
# The quantized files go to $EDGESERVER_BENCH_CACHE/quantize (removed at the end unless --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: bench/quantize.sh MODEL-F16.gguf [--tokens 128] [--threads N] [--keep]" >&2
  exit 1
fi
source_model=$(realpath "$1")
shift
tokens=128
threads=0
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tokens) tokens=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "bench/quantize.sh: unknown switch '$1'" >&2; exit 1 ;;
  esac
done

cache=${EDGESERVER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeserver-bench}
work="$cache/quantize"
mkdir -p "$work"
dotnet build -c Release src/EdgeServer -v quiet -nologo >&2
edge=src/EdgeServer/bin/Release/net10.0/EdgeServer.dll
name=$(basename "$source_model" .gguf)

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
cleanup() {
  stop_server
  if [ "$keep" = 0 ]; then
    rm -f "$work/$name"-*.gguf
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The number after "key": in a one-line JSON object.
json_number() {
  sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"
}

printf '%-8s %12s %14s %12s\n' type "file MiB" "RSS MiB" "tokens/s"
for type in F16 Q8_0 Q4_0 Q4_K_M; do
  model="$work/$name-$type.gguf"
  dotnet "$edge" quantize "$source_model" "$model" "$type" --threads "$threads" --force >/dev/null
  size=$(( $(stat -c %s "$model") / 1048576 ))

  port=$(free_port)
  dotnet "$edge" --model "$model" --models-dir "$work/none" --urls "http://127.0.0.1:$port" --slots 1 \
    --ctx-size 1024 --threads "$threads" --EdgeServer:Preload=true --EdgeServer:Energy:Enabled=false \
    --Logging:LogLevel:Default=Warning >"$work/server-$type.log" 2>&1 &
  server_pid=$!
  ready=0
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then
      ready=1
      break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  if [ "$ready" = 0 ]; then
    echo "bench/quantize.sh: the server did not get ready with $model; see $work/server-$type.log" >&2
    exit 1
  fi

  rss=$(( $(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status") / 1024 ))
  reply=$(curl -sf "http://127.0.0.1:$port/api/generate" -H 'content-type: application/json' \
    -d "{\"model\":\"$name-$type\",\"prompt\":\"Write a long story about a small computer.\",\"stream\":false,\"options\":{\"temperature\":0,\"num_predict\":$tokens}}")
  count=$(printf '%s' "$reply" | json_number eval_count)
  duration=$(printf '%s' "$reply" | json_number eval_duration)
  speed=$(awk -v c="$count" -v d="$duration" 'BEGIN { if (c > 1 && d > 0) printf "%.1f", (c - 1) / (d / 1e9); else print "n/a" }')
  printf '%-8s %12d %14d %12s\n' "$type" "$size" "$rss" "$speed"
  stop_server
done
