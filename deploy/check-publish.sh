#!/usr/bin/env bash
# Checks what the Dockerfile and the systemd install produce, without Docker or root:
#  - `dotnet publish -r <rid> --self-contained` for linux-x64, linux-arm64 and linux-arm gives a folder whose
#    llama.cpp libraries, runtime and app host are ELF files for that architecture, and only that runtime's natives
#    (linux-arm only with EDGESERVER_CHECK_LINUX_ARM=1: it compiles llama.cpp, native/build-linux-arm.sh, which
#    takes long on a small machine);
#  - the ARM publishes run under qemu user-mode emulation and answer as the x86-64 one does
#    (deploy/check-emulated.sh; skipped without qemu or the model);
#  - Native AOT publishes for linux-x64 and, cross-compiled, linux-arm64 (on an x86-64 machine) answer as the JIT
#    build does;
#  - the systemd unit passes `systemd-analyze verify` (when systemd-analyze is installed).
# Usage: deploy/check-publish.sh [output-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
fail=0
say() { printf '%s\n' "$*"; }
rids=(linux-x64 linux-arm64 linux-arm)

for rid in "${rids[@]}"; do
  # The npm packages' libraries carry the release in their names; the ones built for linux-arm do not.
  case $rid in
    linux-x64) machine="Advanced Micro Devices X86-64"; libs="libllama.v0.5.0.so libggml.v0.5.0.so libggml-base.so" ;;
    linux-arm64) machine="AArch64"; libs="libllama.v0.5.0.so libggml.v0.5.0.so libggml-base.so" ;;
    linux-arm) machine="ARM"; libs="libllama.so libggml.so libggml-base.so" ;;
  esac
  if [ "$rid" = linux-arm ] && [ "${EDGESERVER_CHECK_LINUX_ARM:-0}" != 1 ]; then
    say "skip $rid: it compiles llama.cpp for 32-bit ARM first; EDGESERVER_CHECK_LINUX_ARM=1 checks it too"
    continue
  fi
  if [ "$rid" = linux-arm ] && [ ! -e native/bins/linux-arm/libllama.so ] \
     && ! command -v arm-linux-gnueabihf-g++ >/dev/null 2>&1 && [ "$(uname -m)" != armv7l ]; then
    say "skip $rid: llama.cpp must be built for it and arm-linux-gnueabihf-g++ is not installed (Debian package g++-arm-linux-gnueabihf)"
    continue
  fi
  dir="$out/$rid"
  say "== publish $rid (self-contained) -> $dir"
  started=$SECONDS
  if ! log=$(dotnet publish src/EdgeServer -c Release -r "$rid" --self-contained true -o "$dir" -v quiet -nologo 2>&1); then
    if [ "$rid" = linux-arm ] && grep -q 'NU1101.*App.Runtime.linux-arm' <<<"$log"; then
      say "skip $rid: the NuGet source has no .NET runtime pack for linux-arm (Microsoft.NETCore.App.Runtime.linux-arm)"
      continue
    fi
    printf '%s\n' "$log"; say "FAIL $rid: dotnet publish failed"; exit 1
  fi
  say "     took $((SECONDS - started)) s"

  for required in $(printf "runtimes/$rid/native/%s " $libs) EdgeServer libcoreclr.so appsettings.json; do
    [ -e "$dir/$required" ] || { say "FAIL $rid: $required is missing"; fail=1; }
  done
  for other in "${rids[@]}"; do
    if [ "$other" != "$rid" ] && [ -d "$dir/runtimes/$other" ]; then
      say "FAIL $rid: the output also holds runtimes/$other"; fail=1
    fi
  done

  cpu_variants=$(find "$dir/runtimes/$rid/native" -name 'libggml-cpu*.so' | wc -l)
  [ "$cpu_variants" -gt 0 ] || { say "FAIL $rid: no CPU backend"; fail=1; }

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
  say "ok   $rid: $checked ELF files are $machine ($cpu_variants CPU backend variants); e.g. $(file -b "$dir/runtimes/$rid/native/${libs%% *}" | cut -d, -f1-2)"
done

# The Native AOT build for the smallest boxes (docs/edge.md): one executable, compiled ahead of time. It is run
# beside the JIT build below and must answer the same. EDGESERVER_CHECK_AOT=0 leaves it out.
if [ "${EDGESERVER_CHECK_AOT:-1}" = 1 ] && [ "$(uname -m)" = x86_64 ] && [ "$fail" -eq 0 ]; then
  if ! command -v gcc >/dev/null 2>&1 && ! command -v clang >/dev/null 2>&1; then
    say "skip linux-x64 Native AOT: it links with clang or gcc and neither is installed"
  else
    dir="$out/linux-x64-aot"
    say "== publish linux-x64 (Native AOT) -> $dir"
    started=$SECONDS
    if ! log=$(dotnet publish src/EdgeServer -c Release -r linux-x64 -p:PublishAot=true -o "$dir" -v quiet -nologo 2>&1); then
      printf '%s\n' "$log"; say "FAIL linux-x64 Native AOT: dotnet publish failed"; fail=1
    else
      say "     took $((SECONDS - started)) s"
      for required in runtimes/linux-x64/native/libllama.v0.5.0.so EdgeServer appsettings.json; do
        [ -e "$dir/$required" ] || { say "FAIL linux-x64 Native AOT: $required is missing"; fail=1; }
      done
      if [ -e "$dir/libcoreclr.so" ] || [ -e "$dir/EdgeServer.dll" ]; then
        say "FAIL linux-x64 Native AOT: the output holds the JIT runtime or assemblies"; fail=1
      fi
      say "ok   linux-x64 Native AOT: $(du -m "$dir/EdgeServer" | cut -f1) MiB executable"
    fi
  fi
  # linux-arm64 with Debian's cross gcc (.ci/run installs it), run under emulation below as a Pi 5.
  if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    say "skip linux-arm64 Native AOT: aarch64-linux-gnu-gcc is not installed (Debian packages gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)"
  else
    dir="$out/linux-arm64-aot"
    say "== publish linux-arm64 (Native AOT, cross-compiled) -> $dir"
    started=$SECONDS
    if ! log=$(dotnet publish src/EdgeServer -c Release -r linux-arm64 -p:PublishAot=true -p:CppCompilerAndLinker="$PWD/deploy/aarch64-linux-gnu-gcc.sh" \
        -p:ObjCopyName=aarch64-linux-gnu-objcopy -o "$dir" -v quiet -nologo 2>&1); then
      printf '%s\n' "$log"; say "FAIL linux-arm64 Native AOT: dotnet publish failed"; fail=1
    else
      got=$(readelf -h "$dir/EdgeServer" | sed -n 's/^ *Machine: *//p')
      if [ "$got" != AArch64 ]; then say "FAIL linux-arm64 Native AOT: the executable is for '$got'"; fail=1; fi
      say "ok   linux-arm64 Native AOT: $(du -m "$dir/EdgeServer" | cut -f1) MiB executable for $got, in $((SECONDS - started)) s"
    fi
  fi
fi

# Running them is what shows the binaries work: the ARM ones under emulation, against the x86-64 one's answers.
if [ "$fail" -eq 0 ]; then
  bash deploy/check-emulated.sh "$out" || fail=1
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  unit=$(mktemp -d)/edge-server.service
  # verify checks that ExecStart exists: point it at the binary just published for this machine.
  here=linux-x64; [ "$(uname -m)" = aarch64 ] && here=linux-arm64; [ "$(uname -m)" = armv7l ] && here=linux-arm
  sed "s|/opt/edgeserver/EdgeServer|$out/$here/EdgeServer|" deploy/systemd/edge-server.service > "$unit"
  if systemd-analyze verify "$unit"; then say "ok   systemd unit verifies"; else say "FAIL systemd-analyze verify"; fail=1; fi
else
  say "skip systemd-analyze is not installed"
fi

bash -n deploy/systemd/install.sh && say "ok   install.sh parses"
exit $fail
