#!/usr/bin/env bash
# Fetch a Debian cloud kernel and its debug symbols by following a metapackage, e.g.
#   fetch-debian-kernel.sh linux-image-cloud-amd64                 (bookworm's 6.1)
#   fetch-debian-kernel.sh linux-image-6.12-cloud-amd64            (bookworm's 6.12)
#   fetch-debian-kernel.sh --suite bullseye linux-image-cloud-amd64  (5.10)
#   fetch-debian-kernel.sh --suite sid linux-image-cloud-amd64       (7.x)
# Without --suite the machine's apt (bookworm) is used; with it, the suite's private lists of
# debian-apt.sh (the machine's apt configuration is never changed).
# Debian removes old ABI packages, so the concrete package name is resolved with apt-cache every
# time the cache is cold. When the package the metapackage names has no -dbg package (some ABI
# versions lost theirs), the newest ABI of the same version and flavour that has both is used.
# Since 7.x Debian splits linux-image-<abi>-<flavour> into linux-binary[-unsigned]-* (vmlinuz),
# linux-base-* (config, System.map) and linux-modules-*, and the -dbg vmlinux moved from
# /usr/lib/debug/boot/vmlinux-<release> to /usr/lib/debug/lib/modules/<release>/vmlinux.
# Output (cached): $PINSPECT_CACHE/kernels/<concrete>/
#   vmlinuz, vmlinux (with DWARF), modules/ (lib/modules/<release>), release, package
#   (config and System.map where the packages have them)
# Prints the output directory on the last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=
if [ "${1:-}" = "--suite" ]; then
    suite=${2:?--suite needs a suite name}
    shift 2
fi
meta=${1:?usage: fetch-debian-kernel.sh [--suite SUITE] METAPACKAGE}
cache=${PINSPECT_CACHE:-$HOME/.cache/pinspect}
debs=$cache/debs
mkdir -p "$debs" "$cache/kernels"

if [ -n "$suite" ]; then
    apt_cache() { bash "$here/debian-apt.sh" "$suite" apt-cache "$@"; }
    apt_get() { bash "$here/debian-apt.sh" "$suite" apt-get "$@"; }
    apt_update() { bash "$here/debian-apt.sh" "$suite" update >&2; }
    bash "$here/debian-apt.sh" "$suite" ensure >&2
else
    apt_cache() { apt-cache "$@"; }
    apt_get() { apt-get "$@"; }
    apt_update() { apt-get update -qq; }
fi

resolve() {  # metapackage -> the package it depends on (first linux-image-* dependency)
    # (no early exit in the filters below: with pipefail, apt-cache killed by SIGPIPE would count
    # as a failure)
    apt_cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-/ && !n {print $2; n = 1}'
}
available() {  # the package exists in the lists with a file to download
    apt_cache show "$1" 2>/dev/null | grep '^Filename:' >/dev/null
}
concrete=$(resolve "$meta")
if [ -z "$concrete" ]; then
    apt_update
    concrete=$(resolve "$meta")
fi
[ -n "$concrete" ] || { echo "cannot resolve $meta with apt-cache depends" >&2; exit 1; }

# linux-image-<abi>-<flavour>: the flavour is the metapackage's name without linux-image- and
# an optional <major>.<minor>- (linux-image-6.12-cloud-amd64); the ABI is what remains.
flavour=$(sed -E 's/^linux-image-([0-9]+\.[0-9]+-)?//' <<<"$meta")
abi=${concrete#linux-image-}
abi=${abi%-"$flavour"}
if ! available "$concrete-dbg"; then
    # The newest ABI of the same major.minor whose image and -dbg packages both exist:
    # 5.10.0-<n> (Debian's ABI numbers up to 6.x) or 7.2.<patch>+deb<n> (since 6.12 in trixie).
    mm=$(sed -E 's/^([0-9]+)\.([0-9]+).*/\1\\.\2/' <<<"$abi")
    pattern="^linux-image-$mm\\.[0-9]+(-[0-9]+|\\+deb[0-9]+)-$flavour-dbg\$"
    found=
    for d in $(apt_cache pkgnames "linux-image-" | grep -E "$pattern" | sort -rV); do
        if available "$d" && available "${d%-dbg}"; then
            found=${d%-dbg}
            break
        fi
    done
    [ -n "$found" ] || { echo "no $flavour kernel of $abi's version with a -dbg package" >&2; exit 1; }
    echo "fetch-debian-kernel.sh: $concrete has no -dbg package; using $found" >&2
    concrete=$found
    abi=${concrete#linux-image-}
    abi=${abi%-"$flavour"}
fi
dbg=$concrete-dbg
out=$cache/kernels/$concrete
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi

# The packages that hold vmlinuz and the modules. The signed image/binary package has the same
# kernel; the -unsigned one needs no shim/sbsign tools.
if apt_cache depends "$concrete" 2>/dev/null | grep "Depends: linux-binary-$abi-$flavour\$" >/dev/null; then
    binary=linux-binary-unsigned-$abi-$flavour
    available "$binary" || binary=linux-binary-$abi-$flavour
    packages=("$binary" "linux-modules-$abi-$flavour" "linux-base-$abi-$flavour")
else
    image=$concrete-unsigned
    available "$image" || image=$concrete
    packages=("$image")
fi
newest() {  # the newest cached .deb of a package
    find "$debs" -maxdepth 1 -name "${1}_*.deb" | sort -V | tail -n1
}
for p in "${packages[@]}" "$dbg"; do
    if [ -z "$(newest "$p")" ]; then
        # a stale package list may name a version the archive no longer has: update, retry
        (cd "$debs" && { apt_get download "$p" >&2 || { apt_update && apt_get download "$p" >&2; }; })
    fi
done
rm -rf "$out.tmp" && mkdir -p "$out.tmp/x"
for p in "${packages[@]}"; do
    dpkg -x "$(newest "$p")" "$out.tmp/x"
done
moddir=$out.tmp/x/lib/modules
[ -d "$moddir" ] || moddir=$out.tmp/x/usr/lib/modules
release=$(ls "$moddir" | head -n1)
if [ -f "$out.tmp/x/boot/vmlinuz-$release" ]; then
    mv "$out.tmp/x/boot/vmlinuz-$release" "$out.tmp/vmlinuz"
    for f in config System.map; do
        [ -f "$out.tmp/x/boot/$f-$release" ] && mv "$out.tmp/x/boot/$f-$release" "$out.tmp/$f"
    done
else  # 7.x: linux-binary-unsigned ships vmlinuz.unsigned, linux-binary vmlinuz
    for f in vmlinuz vmlinuz.unsigned; do
        [ -f "$moddir/$release/$f" ] && mv "$moddir/$release/$f" "$out.tmp/vmlinuz"
    done
    for f in config System.map; do
        [ -f "$moddir/$release/$f" ] && mv "$moddir/$release/$f" "$out.tmp/$f"
    done
fi
[ -f "$out.tmp/vmlinuz" ] || { echo "no vmlinuz for $release in ${packages[*]}" >&2; exit 1; }
mv "$moddir/$release" "$out.tmp/modules"
# Only vmlinux from the (large) debug package; module debug info is not needed.
dpkg-deb --fsys-tarfile "$(newest "$dbg")" \
    | tar -x -C "$out.tmp/x" --wildcards --exclude='*.ko*' \
        "./usr/lib/debug/boot/vmlinux-$release" "./usr/lib/debug/lib/modules/$release/vmlinux" \
        2>/dev/null || true  # tar complains about the one of the two paths that is absent
for f in "usr/lib/debug/boot/vmlinux-$release" "usr/lib/debug/lib/modules/$release/vmlinux"; do
    [ -f "$out.tmp/x/$f" ] && mv "$out.tmp/x/$f" "$out.tmp/vmlinux"
done
[ -f "$out.tmp/vmlinux" ] || { echo "no vmlinux for $release in $dbg" >&2; exit 1; }
rm -rf "$out.tmp/x"
echo "$release" > "$out.tmp/release"
printf '%s\n' "${packages[@]}" "$dbg" > "$out.tmp/package"
touch "$out.tmp/done"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
