#!/usr/bin/env bash
# Build the custom 6.1 test kernel (CMA, page_owner, full DWARF, 9p root for in-guest runs)
# from Debian's linux-source-6.1 package. Output is cached outside the repo:
#   $PINSPECT_CACHE/kernels/linux-6.1-cma/{bzImage,vmlinux,config}
# A second run with the same inputs does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PINSPECT_CACHE:-$HOME/.cache/pinspect}
base_config=${PINSPECT_BASE_CONFIG:-$here/../../../shared/kernels/linux-6.1-cma-page_owner.config}
[ -f "$base_config" ] || base_config=$here/linux-6.1-cma-page_owner.config
fragment=$here/kernel-extra.config
out=$cache/kernels/linux-6.1-cma
stamp=$(cat "$base_config" "$fragment" | sha256sum | cut -c1-16)

if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
    echo "cached: $out"
    exit 0
fi

mkdir -p "$cache/debs" "$cache/build"
if ! ls "$cache"/debs/linux-source-6.1_*.deb >/dev/null 2>&1; then
    (cd "$cache/debs" && apt-get download linux-source-6.1)
fi
src=$cache/build/linux-source-6.1
if [ ! -f "$src/Makefile" ]; then
    rm -rf "$cache/build/extract" && mkdir -p "$cache/build/extract"
    dpkg -x "$(ls "$cache"/debs/linux-source-6.1_*.deb | tail -n1)" "$cache/build/extract"
    tar -C "$cache/build" -xaf "$cache"/build/extract/usr/src/linux-source-6.1.tar.xz
    rm -rf "$cache/build/extract"
fi
cp "$base_config" "$src/.config"
cat "$fragment" >> "$src/.config"
make -C "$src" olddefconfig >/dev/null
make -C "$src" -j"$(nproc)" bzImage >"$cache/build/kernel-build.log" 2>&1 || {
    tail -n 40 "$cache/build/kernel-build.log"; exit 1; }
mkdir -p "$out"
cp "$src/arch/x86/boot/bzImage" "$src/vmlinux" "$out/"
cp "$src/.config" "$out/config"
echo "$stamp" > "$out/stamp"
echo "built: $out"
