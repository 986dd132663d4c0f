#!/bin/sh
# The linker for a Native AOT publish for linux-arm64 on an x86-64 machine with Debian's cross gcc
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross), as deploy/check-publish.sh does it:
#   dotnet publish src/EdgeServer -r linux-arm64 -p:PublishAot=true \
#     -p:CppCompilerAndLinker=$PWD/deploy/aarch64-linux-gnu-gcc.sh -p:ObjCopyName=aarch64-linux-gnu-objcopy
# .NET's build passes clang's --target=, which gcc does not know (the cross compiler's name says the target).
for arg in "$@"; do
  shift
  case $arg in --target=*) ;; *) set -- "$@" "$arg" ;; esac
done
exec aarch64-linux-gnu-gcc "$@"
