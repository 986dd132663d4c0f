#!/usr/bin/env bash
# Builds llama.cpp's libraries for 32-bit ARM Linux (armhf: ARMv7 with NEON, as 32-bit Raspberry Pi OS on a
# Pi 2 to 5) into native/bins/linux-arm/, which `dotnet publish -r linux-arm` copies into the publish.
# No npm package ships them: @node-llama-cpp/linux-armv7l@3.22.1 holds AArch64 (64-bit) files, which a 32-bit
# process cannot load. The source is the llama.cpp release that node-llama-cpp 3.22.1 bundles as a git bundle
# (v0.5.0, commit de3ff81, the release the other RIDs' libraries are built from), fetched with npm and checked
# against the integrity pinned below, with the patch node-llama-cpp applies. An armv7l machine builds with its own
# compiler; any other with Debian's cross compiler (package g++-arm-linux-gnueabihf). Needs cmake and git.
# Usage: native/build-linux-arm.sh [output-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/bins/linux-arm}
package=node-llama-cpp@3.22.1
integrity=sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw==
commit=de3ff815ea7d559ee917f063901b8986f038abc6
work=$here/obj/linux-arm
libraries=(libllama.so libggml.so libggml-base.so libggml-cpu.so)

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-linux-arm: $1 is needed ($2)" >&2; exit 1; }; }
need npm "Node.js 20+ with npm"
need cmake "Debian package cmake"
need git "Debian package git"
case "$(uname -m)" in
  armv7l | armv8l) cc=gcc; cxx=g++; cross=() ;;
  *)
    cc=arm-linux-gnueabihf-gcc; cxx=arm-linux-gnueabihf-g++
    need "$cxx" "Debian package g++-arm-linux-gnueabihf, the cross compiler for 32-bit ARM"
    cross=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=armv7l)
    ;;
esac

mkdir -p "$work"
tarball="$work/node-llama-cpp-3.22.1.tgz"
if [ ! -f "$tarball" ]; then
  echo "build-linux-arm: fetching the llama.cpp source bundled in $package"
  (cd "$work" && npm pack "$package" --silent >/dev/null)
fi
got=$(node -e 'const c = require("crypto"), fs = require("fs");
  process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tarball")
if [ "$got" != "$integrity" ]; then
  rm -f "$tarball"
  echo "build-linux-arm: $package does not have the pinned integrity (got $got)" >&2
  exit 1
fi

src="$work/llama.cpp"
if [ "$(cat "$work/prepared" 2>/dev/null)" != "$commit" ]; then
  rm -rf "$src" "$work/package" "$work/build" "$work/prepared"
  tar -xzf "$tarball" -C "$work" package/llama/gitRelease.bundle package/llama/patches
  git -c advice.detachedHead=false clone --quiet "$work/package/llama/gitRelease.bundle" "$src"
  git -C "$src" -c advice.detachedHead=false checkout --quiet "$commit"
  for patch in "$work"/package/llama/patches/*.diff; do
    git -C "$src" apply "$patch"
  done
  echo "$commit" > "$work/prepared"
fi

# NEON with VFPv4 is in every Pi from the Pi 2 on (Cortex-A7, A53, A72, A76); GGML_NATIVE would tune to the build
# machine. One CPU backend (libggml-cpu.so), loaded as the x86-64 and arm64 variants are; no OpenMP, as theirs.
# Unversioned sonames: the files are the names EdgeServer loads and the names they link each other by.
echo "build-linux-arm: building llama.cpp v0.5.0 (${commit:0:7}) for armhf with $cxx"
cmake -S "$src" -B "$work/build" -G "Unix Makefiles" "${cross[@]}" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_C_FLAGS="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -Wno-psabi" \
  -DCMAKE_CXX_FLAGS="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -Wno-psabi" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DCMAKE_PLATFORM_NO_VERSIONED_SONAME=ON \
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN' \
  -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_OPENMP=OFF \
  -DLLAMA_BUILD_IS_DEV=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build "$work/build" --target llama ggml-cpu -j "$(nproc)" >/dev/null

mkdir -p "$out"
for lib in "${libraries[@]}"; do
  file=$(find "$work/build" -name "$lib" -type f | head -n 1)
  [ -n "$file" ] || { echo "build-linux-arm: the build made no $lib" >&2; exit 1; }
  cp "$file" "$out/$lib"
done
echo "build-linux-arm: $(ls "$out" | tr '\n' ' ')in $out"
