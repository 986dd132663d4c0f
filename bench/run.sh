#!/usr/bin/env bash
# Runs the whole side-by-side comparison of EdgeServer and llama-server and writes docs/benchmarks.md and
# docs/benchmarks.png. From a clean clone it builds the peer first (cached outside the repository) and writes the
# benchmark models (cached too). From a clean clone with nothing cached it took 27 minutes on 2 cores (about 11
# building the peer, 1 writing the models, 16.6 measuring); later runs skip the first two.
#   bench/run.sh [--rounds 3] [--only mobilellm] [--aot]
# --aot also publishes EdgeServer with Native AOT (a few minutes more; needs a C compiler and linker, gcc or clang)
# and measures it as a third server in the side-by-side step.
# With --memory it runs only the memory scenario (three models, room for two; a few minutes) and rewrites only its
# section of docs/benchmarks.md:
#   bench/run.sh --memory [--rounds 3] [--only EdgeServer]
# With --busy it runs only the busy-box scenario (one stream idle, then beside a CPU-bound process) and rewrites only
# its section:
#   bench/run.sh --busy [--rounds 3] [--polls 0,100] [--baseline-dll PATH]
# With --gateway it runs only the two-boxes-behind-a-gateway scenario (each box pinned to one core) and rewrites only
# its section:
#   bench/run.sh --gateway [--rounds 3] [--streams 4] [--latency-requests 30]
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${EDGESERVER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeserver-bench}
export EDGESERVER_BENCH_CACHE=$cache

peer_bin=$(bash bench/build-peer.sh | tail -n 1)
dotnet build -c Release bench/EdgeServer.Bench -v quiet -nologo
bench=bench/EdgeServer.Bench/bin/Release/net10.0/EdgeServer.Bench.dll
# EdgeServer as the Dockerfile and the systemd install ship it: published for this machine's runtime, so with
# ReadyToRun code (framework-dependent here, run with `dotnet`, as the container runs it).
rid=linux-x64; [ "$(uname -m)" = aarch64 ] && rid=linux-arm64
dotnet publish src/EdgeServer -c Release -r "$rid" --self-contained false -o "$cache/edgeserver-$rid" -v quiet -nologo
edge=$cache/edgeserver-$rid/EdgeServer.dll
aot=()
for arg in "$@"; do
  if [ "$arg" = --aot ]; then
    dotnet publish src/EdgeServer -c Release -r "$rid" -p:PublishAot=true -o "$cache/edgeserver-$rid-aot" -v quiet -nologo
    aot=(--edge-aot "$cache/edgeserver-$rid-aot/EdgeServer")
  fi
done
args=()
for arg in "$@"; do [ "$arg" = --aot ] || args+=("$arg"); done
set -- ${args[@]+"${args[@]}"}
if [ "${1:-}" = "--memory" ]; then
  shift
  exec dotnet "$bench" memory --peer-bin "$peer_bin" --edge-dll "$edge" --models-dir "$cache/models" \
    --out docs/benchmarks.md --command "bench/run.sh --memory${*:+ $*}" "$@"
fi
if [ "${1:-}" = "--gateway" ]; then
  shift
  dotnet "$bench" models --models-dir "$cache/models" >&2
  exec dotnet "$bench" gateway --edge-dll "$edge" --models-dir "$cache/models" \
    --out docs/benchmarks.md --command "bench/run.sh --gateway${*:+ $*}" "$@"
fi
if [ "${1:-}" = "--busy" ]; then
  shift
  dotnet "$bench" models --models-dir "$cache/models" >&2
  exec dotnet "$bench" busy --peer-bin "$peer_bin" --edge-dll "$edge" --models-dir "$cache/models" \
    --out docs/benchmarks.md --command "bench/run.sh --busy${*:+ $*}" "$@"
fi
dotnet "$bench" models --models-dir "$cache/models" >&2
dotnet "$bench" run --peer-bin "$peer_bin" --edge-dll "$edge" ${aot[@]+"${aot[@]}"} \
  --models-dir "$cache/models" --out docs/benchmarks.md --chart docs/benchmarks.png \
  --command "bench/run.sh $*${aot[*]:+ --aot}" "$@"
dotnet "$bench" busy --peer-bin "$peer_bin" --edge-dll "$edge" \
  --models-dir "$cache/models" --out docs/benchmarks.md --command "bench/run.sh $*" "$@"
