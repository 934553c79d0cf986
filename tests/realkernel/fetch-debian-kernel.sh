#!/usr/bin/env bash
# Fetch a Debian cloud kernel and its debug symbols by following a metapackage, e.g.
#   fetch-debian-kernel.sh linux-image-cloud-amd64        (bookworm's 6.1)
#   fetch-debian-kernel.sh linux-image-6.12-cloud-amd64   (bookworm's 6.12)
# Debian removes old ABI packages, so the concrete package name is resolved with apt-cache every
# time the cache is cold. Output (cached): $PINSPECT_CACHE/kernels/<concrete>/
#   vmlinuz, vmlinux (with DWARF), modules/ (lib/modules/<release>), release
# Prints the output directory on the last line of stdout.
set -euo pipefail
meta=${1:?usage: fetch-debian-kernel.sh METAPACKAGE}
cache=${PINSPECT_CACHE:-$HOME/.cache/pinspect}
debs=$cache/debs
mkdir -p "$debs" "$cache/kernels"

resolve() {  # metapackage -> the package it depends on (first linux-image-* dependency)
    apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'
}
concrete=$(resolve "$meta")
if [ -z "$concrete" ]; then
    apt-get update -qq
    concrete=$(resolve "$meta")
fi
[ -n "$concrete" ] || { echo "cannot resolve $meta with apt-cache depends" >&2; exit 1; }
dbg=$(resolve "$meta-dbg")
[ -n "$dbg" ] || dbg=$concrete-dbg
out=$cache/kernels/$concrete
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi

# The signed image package has the same kernel; the -unsigned one needs no shim/sbsign tools.
image=$concrete-unsigned
apt-cache show "$image" >/dev/null 2>&1 || image=$concrete
for p in "$image" "$dbg"; do
    if ! ls "$debs/${p}_"*.deb >/dev/null 2>&1; then
        # a stale package list may name a version the archive no longer has: update, retry
        (cd "$debs" && { apt-get download "$p" >&2 || { apt-get update -qq && apt-get download "$p" >&2; }; })
    fi
done
rm -rf "$out.tmp" && mkdir -p "$out.tmp/x"
dpkg -x "$(ls "$debs/${image}_"*.deb | tail -n1)" "$out.tmp/x"
release=$(ls "$out.tmp/x/lib/modules" | head -n1)
mv "$out.tmp/x/boot/vmlinuz-$release" "$out.tmp/vmlinuz"
mv "$out.tmp/x/lib/modules/$release" "$out.tmp/modules"
# Only vmlinux from the (large) debug package; module debug info is not needed.
dpkg-deb --fsys-tarfile "$(ls "$debs/${dbg}_"*.deb | tail -n1)" \
    | tar -x -C "$out.tmp/x" --wildcards "./usr/lib/debug/boot/vmlinux-*"
mv "$out.tmp/x/usr/lib/debug/boot/vmlinux-$release" "$out.tmp/vmlinux"
rm -rf "$out.tmp/x"
echo "$release" > "$out.tmp/release"
touch "$out.tmp/done"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
