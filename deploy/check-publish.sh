#!/usr/bin/env bash
# Checks what the Dockerfile and the systemd install produce, without Docker or root:
#  - `dotnet publish -r <rid> --self-contained` for linux-x64 and linux-arm64 gives a folder whose llama.cpp
#    libraries, runtime and app host are ELF files for that architecture, and only that runtime's natives;
#  - the systemd unit passes `systemd-analyze verify` (when systemd-analyze is installed).
# Usage: deploy/check-publish.sh [output-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
fail=0
say() { printf '%s\n' "$*"; }

for rid in linux-x64 linux-arm64; do
  case $rid in
    linux-x64) machine="Advanced Micro Devices X86-64"; other=linux-arm64 ;;
    linux-arm64) machine="AArch64"; other=linux-x64 ;;
  esac
  dir="$out/$rid"
  say "== publish $rid (self-contained) -> $dir"
  dotnet publish src/EdgeServer -c Release -r "$rid" --self-contained true -o "$dir" -v quiet -nologo >/dev/null

  for required in "runtimes/$rid/native/libllama.v0.5.0.so" "runtimes/$rid/native/libggml.v0.5.0.so" \
                  "runtimes/$rid/native/libggml-base.so" EdgeServer libcoreclr.so appsettings.json; do
    [ -e "$dir/$required" ] || { say "FAIL $rid: $required is missing"; fail=1; }
  done
  if [ -d "$dir/runtimes/$other" ]; then
    say "FAIL $rid: the output also holds runtimes/$other"; fail=1
  fi

  cpu_variants=$(find "$dir/runtimes/$rid/native" -name 'libggml-cpu-*.so' | wc -l)
  [ "$cpu_variants" -gt 0 ] || { say "FAIL $rid: no CPU backend variants"; fail=1; }

  checked=0
  while IFS= read -r -d '' f; do
    if head -c 4 "$f" | grep -q $'\x7fELF'; then
      got=$(readelf -h "$f" | sed -n 's/^ *Machine: *//p')
      if [ "$got" != "$machine" ]; then
        say "FAIL $rid: $(basename "$f") is for '$got'"; fail=1
      fi
      checked=$((checked + 1))
    fi
  done < <(find "$dir" -type f -print0)
  say "ok   $rid: $checked ELF files are $machine ($cpu_variants CPU backend variants); e.g. $(file -b "$dir/runtimes/$rid/native/libllama.v0.5.0.so" | cut -d, -f1-2)"
done

if command -v systemd-analyze >/dev/null 2>&1; then
  unit=$(mktemp -d)/edge-server.service
  # verify checks that ExecStart exists: point it at the binary just published for this machine.
  here=linux-x64; [ "$(uname -m)" = aarch64 ] && here=linux-arm64
  sed "s|/opt/edgeserver/EdgeServer|$out/$here/EdgeServer|" deploy/systemd/edge-server.service > "$unit"
  if systemd-analyze verify "$unit"; then say "ok   systemd unit verifies"; else say "FAIL systemd-analyze verify"; fail=1; fi
else
  say "skip systemd-analyze is not installed"
fi

bash -n deploy/systemd/install.sh && say "ok   install.sh parses"
exit $fail
