#!/usr/bin/env bash
# Starts the ARM publishes under qemu user-mode emulation and checks that they serve what the x86-64 publish
# serves: the same greedy completion and streamed chat reply, and the same embedding (to float rounding).
#  - linux-arm64 as on a Raspberry Pi 4 (-cpu cortex-a72) and a Pi 5 (-cpu cortex-a76): each loads the ggml CPU
#    variant that suits that core, and the log line naming it is printed;
#  - linux-arm (32-bit) when its publish holds llama.cpp libraries (see docs/edge.md).
# Emulation shows that the binaries load, run and compute the same tokens; it says nothing of speed on a board.
# Usage: deploy/check-emulated.sh PUBLISH_ROOT   (linux-x64/, linux-arm64/ and linux-arm/ from check-publish.sh)
# Needs qemu-user and Debian's cross C libraries (.ci/run installs them) and ../shared/models/stories260K.gguf;
# skips, naming what is missing, without them. Exit 1 when a run fails or answers differently.
set -uo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: deploy/check-emulated.sh PUBLISH_ROOT}
model=$(realpath -m "${EDGESERVER_EMULATED_MODEL:-../shared/models/stories260K.gguf}")
work=$(mktemp -d)
fail=0
say() { printf '%s\n' "$*"; }

if [ ! -f "$model" ]; then
  say "skip emulated runs: $model is missing (it comes with ../shared beside the repository, as in CI)"
  exit 0
fi
for tool in curl jq python3; do
  command -v "$tool" >/dev/null 2>&1 || { say "skip emulated runs: $tool is not installed"; exit 0; }
done

# The completion and chat are greedy with a fixed length, so every build must produce the same text.
completion='{"model":"M","prompt":"Once upon a time","max_tokens":48,"temperature":0}'
chat='{"model":"M","messages":[{"role":"user","content":"Tell me a story about a cat."}],"max_tokens":24,"temperature":0,"stream":true}'
embedding='{"model":"M","input":"The cat sat on the mat."}'

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pid=
stop_server() {
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
}
trap stop_server EXIT

# run LABEL OUT-DIR COMMAND...: starts the server, asks the three requests, writes the answers to OUT-DIR.
run() {
  local label=$1 out=$2; shift 2
  local log="$out/server.log" port base id started=$SECONDS
  mkdir -p "$out"
  port=$(free_port)
  base="http://127.0.0.1:$port"
  # W^X maps code twice, which qemu-user does not follow; llama.cpp's Debug log names the CPU backend loaded.
  DOTNET_EnableWriteXorExecute=0 "$@" --model "$model" --urls "$base" --EdgeServer:Runtime:ProbeCache=none \
    --Logging:LogLevel:EdgeServer.Inference.LlamaCpp=Debug >"$log" 2>&1 &
  pid=$!
  # Emulated .NET starts slowly (JIT compiling under qemu), slower still on a busy machine: a server still starting
  # after the limit is reported and skipped, one that exits (a crash, SIGILL) fails.
  local up= limit=$((SECONDS + ${EDGESERVER_EMULATED_START_LIMIT:-900}))
  while [ "$SECONDS" -lt "$limit" ]; do
    if curl -fsS -m 2 "$base/health" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if [ -z "$up" ] && kill -0 "$pid" 2>/dev/null; then
    say "skip $label: still starting after $((SECONDS - started)) s (is the machine busy?); the end of its log:"
    tail -n 5 "$log" | sed 's/^/       /'
    stop_server; return 1
  fi
  if [ -z "$up" ]; then
    wait "$pid" 2>/dev/null; local code=$?
    say "FAIL $label: the server exited while starting (exit code $code); the end of its log:"
    tail -n 15 "$log" | sed 's/^/       /'
    pid=; fail=1; return 1
  fi
  local ready=$((SECONDS - started))

  id=$(curl -fsS -m 60 "$base/v1/models" | jq -r '.data[0].id')
  post() { curl -fsS -m 600 -H 'content-type: application/json' -d "${2//\"M\"/\"$id\"}" "$base$1"; }
  if ! post /v1/completions "$completion" > "$out/completion.json" \
    || ! post /v1/chat/completions "$chat" > "$out/chat.sse" \
    || ! post /v1/embeddings "$embedding" > "$out/embedding.json"; then
    say "FAIL $label: a request failed; the end of the server's log:"
    tail -n 15 "$log" | sed 's/^/       /'
    stop_server; fail=1; return 1
  fi
  [ -z "${surface:-}" ] || ask_surface "$base" "$id" "$out/surface"
  stop_server

  jq -r '.choices[0].text' "$out/completion.json" > "$out/completion.txt"
  sed -n 's/^data: //p' "$out/chat.sse" | grep -v '^\[DONE\]$' | jq -j '.choices[0].delta.content // empty' > "$out/chat.txt"
  if [ "$(sed -n 's/^data: //p' "$out/chat.sse" | tail -n 1)" != "[DONE]" ]; then
    say "FAIL $label: the chat stream did not end with [DONE]"; fail=1
  fi
  local backend
  backend=$(grep -o 'loaded CPU backend from [^ ]*' "$log" | head -n 1 | sed 's|.*/||')
  say "ok   $label: up in ${ready} s, answered in $((SECONDS - started)) s in all; CPU backend ${backend:-(not logged)}"
}

# ask_surface BASE MODEL-ID DIR: more of the API, for builds that run natively (the Native AOT one against the JIT
# one): structured output, tools, the Responses, Ollama and Anthropic APIs, errors, the model list, the OpenAPI
# document, the metric names and the chat page. Each answer is kept as its status and its body without what differs
# from run to run (ids, times, durations), so two builds of the same code must give the same files.
ask_surface() {
  local base=$1 id=$2 dir=$3 name path body code
  mkdir -p "$dir"
  local -a requests=(
    "chat-schema|/v1/chat/completions|{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"Name a cat.\"}],\"max_tokens\":32,\"temperature\":0,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"cat\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},\"age\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}}"
    "chat-tools|/v1/chat/completions|{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Oslo?\"}],\"max_tokens\":48,\"temperature\":0,\"tool_choice\":\"required\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"strict\":true,\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":10}},\"required\":[\"city\"],\"additionalProperties\":false}}}]}"
    "responses|/v1/responses|{\"model\":\"M\",\"input\":\"Once upon a time\",\"max_output_tokens\":16,\"temperature\":0}"
    "ollama-chat|/api/chat|{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"stream\":false,\"options\":{\"temperature\":0,\"num_predict\":16}}"
    "anthropic|/v1/messages|{\"model\":\"M\",\"max_tokens\":16,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"
    "bad-json|/v1/chat/completions|{\"model\":"
    "bad-field|/v1/chat/completions|{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"temperature\":\"hot\"}"
    "unknown-model|/v1/chat/completions|{\"model\":\"no-such-model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}"
    "models|/v1/models|"
    "openapi|/swagger/v1/swagger.json|"
    "chat-page|/|"
  )
  local normalize='walk(if type == "object" then with_entries(select(.key | test("^(id|created|created_at|completed_at|system_fingerprint|modified_at|expires_at|loaded_at|last_used|budget_bytes|available_bytes|free_bytes)$|duration|_ms$|seconds") | not)) else . end)'
  for request in "${requests[@]}"; do
    IFS='|' read -r name path body <<<"$request"
    if [ -n "$body" ]; then
      code=$(curl -sS -m 600 -o "$dir/$name.body" -w '%{http_code}' -H 'content-type: application/json' -d "${body//\"M\"/\"$id\"}" "$base$path")
    else
      code=$(curl -sS -m 60 -o "$dir/$name.body" -w '%{http_code}' "$base$path")
    fi
    { echo "status $code"; jq -S "$normalize" "$dir/$name.body" 2>/dev/null || echo "(not JSON, $(wc -c < "$dir/$name.body") bytes)"; } > "$dir/$name.txt"
    rm -f "$dir/$name.body"
  done
  curl -sS -m 60 "$base/metrics" | sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p' | grep '^edgeserver_' | sort > "$dir/metric-names.txt"
}

# same LABEL OUT-DIR: compares OUT-DIR's answers with the x86-64 ones.
same() {
  local label=$1 out=$2 what
  for what in completion chat; do
    if cmp -s "$work/x64/$what.txt" "$out/$what.txt"; then
      say "ok   $label: $what text equals x86-64's ($(wc -c < "$out/$what.txt") bytes)"
    else
      say "FAIL $label: $what text differs from x86-64's:"
      say "       x86-64: $(head -c 200 "$work/x64/$what.txt")"
      say "       $label: $(head -c 200 "$out/$what.txt")"
      fail=1
    fi
  done
  if python3 - "$work/x64/embedding.json" "$out/embedding.json" <<'PY'
import json, math, sys
a, b = (json.load(open(p))["data"][0]["embedding"] for p in sys.argv[1:3])
cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
print(f"       embedding: {len(b)} dimensions, cosine with x86-64's {cos:.6f}")
sys.exit(0 if len(a) == len(b) and cos > 0.9999 else 1)
PY
  then say "ok   $label: embedding equals x86-64's"; else say "FAIL $label: embedding differs from x86-64's"; fail=1; fi
}

say "== emulated runs with $model"
surface=1 run "linux-x64 (native)" "$work/x64" "$root/linux-x64/EdgeServer" || { say "FAIL the x86-64 reference run failed"; exit 1; }
say "       x86-64 completion: $(tr '\n' ' ' < "$work/x64/completion.txt")"

# The Native AOT publish (check-publish.sh makes it on an x86-64 machine) must serve what the JIT build serves.
if [ -x "$root/linux-x64-aot/EdgeServer" ]; then
  if surface=1 run "linux-x64 Native AOT" "$work/aot" "$root/linux-x64-aot/EdgeServer" && same "linux-x64 Native AOT" "$work/aot"; then
    for f in "$work/x64/surface"/*.txt; do
      name=$(basename "$f" .txt)
      if cmp -s "$f" "$work/aot/surface/$name.txt"; then
        say "ok   linux-x64 Native AOT: $name equals the JIT build's ($(head -n 1 "$f"))"
      else
        say "FAIL linux-x64 Native AOT: $name differs from the JIT build's:"
        diff "$f" "$work/aot/surface/$name.txt" | head -n 20 | sed 's/^/       /'
        fail=1
      fi
    done
  fi
else
  say "skip linux-x64 Native AOT: no publish in $root/linux-x64-aot"
fi

# .NET loads libssl at start-up and Debian has no cross package of it: apt downloads the distribution's libssl3 for
# that architecture with a private package list (nothing is installed; the host's apt setup is left alone), and
# the emulated process finds it through LD_LIBRARY_PATH. Kept in the user's cache for the next run.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/edgeserver/emulation
libssl() { # DEBIAN-ARCH: prints the folder holding libssl.so.3 for it
  local arch=$1 dir="$cache/$1" apt
  if [ ! -e "$dir/usr/lib/$2/libssl.so.3" ]; then
    mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$dir"
    apt=(apt-get -qq -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o "Dir::State::Lists=$cache/apt/lists"
         -o "Dir::Cache=$cache/apt" -o "Dir::Cache::archives=$cache/apt/archives" -o APT::Sandbox::User=root)
    "${apt[@]}" update >/dev/null 2>&1
    (cd "$cache/apt" && rm -f libssl3_*"_$arch.deb" && "${apt[@]}" download "libssl3:$arch" >/dev/null 2>&1) || return 1
    dpkg-deb -x "$cache"/apt/libssl3_*"_$arch.deb" "$dir" || return 1
  fi
  echo "$dir/usr/lib/$2"
}

# Debian's cross libraries are the emulated processes' root (-L): their ld.so, libc, libstdc++ and libgcc_s.
emulate() { # LABEL RID QEMU SYSROOT CPU DEBIAN-ARCH MULTIARCH-TRIPLET
  local label=$1 rid=$2 qemu=$3 sysroot=$4 cpu=$5 arch=$6 triplet=$7 ssl
  if ! command -v "$qemu" >/dev/null 2>&1; then
    say "skip $label: $qemu is not installed (Debian package qemu-user)"; return
  fi
  if [ ! -d "$sysroot/lib" ]; then
    say "skip $label: no cross C library in $sysroot (Debian packages libc6-, libstdc++6- and libgcc-s1-<arch>-cross)"; return
  fi
  if [ ! -x "$root/$rid/EdgeServer" ]; then
    say "skip $label: no $rid publish in $root"; return
  fi
  if ! ssl=$(libssl "$arch" "$triplet"); then
    say "skip $label: could not download Debian's libssl3:$arch with apt-get"; return
  fi
  local out="$work/$rid-$cpu"
  # QEMU_LD_PREFIX and QEMU_CPU are what qemu reads when it starts a child through binfmt_misc, where that is set up.
  QEMU_LD_PREFIX=$sysroot QEMU_CPU=$cpu LD_LIBRARY_PATH=$ssl \
    run "$label" "$out" "$qemu" -L "$sysroot" -cpu "$cpu" "$root/$rid/EdgeServer" && same "$label" "$out"
}

started=$SECONDS
a64=(linux-arm64 qemu-aarch64 /usr/aarch64-linux-gnu)
emulate "linux-arm64 on cortex-a72 (Pi 4)" "${a64[@]}" cortex-a72 arm64 aarch64-linux-gnu
emulate "linux-arm64 on cortex-a76 (Pi 5)" "${a64[@]}" cortex-a76 arm64 aarch64-linux-gnu
emulate "linux-arm64 Native AOT on cortex-a76 (Pi 5)" linux-arm64-aot qemu-aarch64 /usr/aarch64-linux-gnu cortex-a76 arm64 aarch64-linux-gnu
# qemu-arm has no Cortex-A72 (an AArch64 core in qemu); the Pi 2's Cortex-A7 is the oldest core the build targets.
if compgen -G "$root/linux-arm/runtimes/linux-arm/native/libllama*.so*" >/dev/null; then
  emulate "linux-arm (32-bit) on cortex-a7 (Pi 2)" linux-arm qemu-arm /usr/arm-linux-gnueabihf cortex-a7 armhf arm-linux-gnueabihf
else
  say "skip linux-arm: its publish holds no llama.cpp libraries"
fi
times > "$work/times" # in this shell: a command substitution would count only its own children
say "emulated runs took $((SECONDS - started)) s ($(tail -n 1 "$work/times" | sed 's/ / user, /') system CPU in all, the x86-64 run included)"
rm -rf "$work"
exit $fail
