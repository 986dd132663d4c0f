#!/usr/bin/env bash
# Publishes EdgeServer for this machine, installs it in /opt/edgeserver as a systemd service running as the
# dedicated user "edgeserver", and starts it. Run from the repository as root: sudo deploy/systemd/install.sh
# With --aot it publishes with Native AOT instead: one executable compiled ahead of time, less memory and a faster
# start (docs/edge.md, "The smallest build"); the compile needs clang or gcc on this machine and takes minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
aot=()
for arg in "$@"; do
  case $arg in
    --aot) aot=(-p:PublishAot=true) ;;
    *) echo "Unknown option $arg (the only one is --aot)." >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "Run as root (sudo $0)." >&2
  exit 1
fi

case "$(uname -m)" in
  x86_64) rid=linux-x64 ;;
  # A 32-bit userland on a 64-bit kernel (Raspberry Pi OS 32-bit on a Pi 4 or 5) says aarch64 too: it runs the
  # arm64 build once the arm64 C libraries are installed (docs/edge.md), else the 32-bit one.
  aarch64 | arm64)
    if [ "$(getconf LONG_BIT)" = 64 ] || [ -e /lib/ld-linux-aarch64.so.1 ]; then rid=linux-arm64; else rid=linux-arm; fi ;;
  # 32-bit ARM: the publish builds llama.cpp from source first (native/build-linux-arm.sh).
  armv7l | armv8l) rid=linux-arm ;;
  *) echo "Unsupported architecture $(uname -m); EdgeServer runs on x86-64, arm64 and 32-bit ARMv7." >&2; exit 1 ;;
esac

prefix=/opt/edgeserver
if [ ${#aot[@]} -gt 0 ] && [ "$rid" = linux-arm ]; then
  echo "Native AOT is not available for 32-bit ARM; run without --aot." >&2; exit 1
fi
echo "Publishing for $rid into $prefix${aot[*]:+ (Native AOT)}"
# A Native AOT publish over an earlier JIT one must not leave the JIT runtime's files beside it.
[ ${#aot[@]} -eq 0 ] || rm -f "$prefix"/*.dll "$prefix"/libcoreclr.so "$prefix"/libclrjit.so
dotnet publish src/EdgeServer -c Release -r "$rid" --self-contained true -o "$prefix" ${aot[@]+"${aot[@]}"}
cp README.md "$prefix/"

id edgeserver >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edgeserver --shell /usr/sbin/nologin edgeserver
install -d -o edgeserver -g edgeserver -m 0755 /var/lib/edgeserver
install -d -o root -g edgeserver -m 0755 /var/lib/edgeserver/models
install -d -m 0750 -o root -g edgeserver /etc/edgeserver
if [ ! -f /etc/edgeserver/edgeserver.env ]; then
  key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat > /etc/edgeserver/edgeserver.env <<ENV
# EdgeServer settings (docs/configuration.md). With a key it listens on the network (port 8080).
EdgeServer__Security__ApiKeys__0=$key
ENV
  chmod 0640 /etc/edgeserver/edgeserver.env
  chgrp edgeserver /etc/edgeserver/edgeserver.env
  echo "An API key was generated in /etc/edgeserver/edgeserver.env"
fi

# The server announces itself on the local network (mDNS, docs/gateway.md "Finding the boxes"), through the Avahi
# daemon where it runs; an announcement file an earlier install put there would announce it twice.
rm -f /etc/avahi/services/edgeserver.service

install -m 0644 deploy/systemd/edge-server.service /etc/systemd/system/edge-server.service
systemctl daemon-reload
systemctl enable --now edge-server.service
echo "Installed. Put .gguf models in /var/lib/edgeserver/models and 'systemctl restart edge-server'."
echo "Status: systemctl status edge-server; logs: journalctl -u edge-server -f"
