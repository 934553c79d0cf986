#!/usr/bin/env bash
# Build a custom test kernel (CMA, page_owner, full DWARF, 9p root for in-guest runs) from
# Debian's linux-source-<version> package:
#   build-kernel.sh [6.1]   cma61: linux-source-6.1 from the machine's apt (bookworm), config
#                           shared/kernels/linux-6.1-cma-page_owner.config + kernel-extra.config
#                           + kernel-6.1-cma.config (modules, BTF, CMA debugfs/sysfs, page_ref
#                           tracepoints), and the test module pinmod.ko (pinmod.c) built against it
#   build-kernel.sh 7.2     cma72: linux-source-7.2 from sid's private lists (debian-apt.sh),
#                           config x86_64_defconfig + kvm_guest.config + kernel-7.2-cma.config
#                           + kernel-extra.config (with CMA_DEBUGFS and BTF)
#   build-kernel.sh 6.1-pp  pp61: cma61's source and configuration + linux-6.1-page_pinner.patch
#                           + linux-6.1-pp.config (PAGE_PINNER, DEBUG_PAGE_REF, CMA_DEBUGFS), built
#                           in its own tree (a copy of cma61's, objects included, when there is
#                           one) so that cma61's tree and output stay as they are
# Output is cached outside the repo:
#   $PINSPECT_CACHE/kernels/linux-<version>-cma/{bzImage,vmlinux,config,stamp}
#   (6.1 also pinmod.ko and pinmod.stamp; the module is rebuilt alone when only pinmod.c changed)
#   ($PINSPECT_CACHE/kernels/linux-6.1-pp/ for pp61)
# A second run with the same inputs does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PINSPECT_CACHE:-$HOME/.cache/pinspect}
version=${1:-6.1}
fragment=$here/kernel-extra.config
out=$cache/kernels/linux-$version-cma
src=$cache/build/linux-source-$version
pkg=linux-source-$version
patchfile=
stamp=
case $version in
    6.1)
        base_config=${PINSPECT_BASE_CONFIG:-$here/../../../shared/kernels/linux-6.1-cma-page_owner.config}
        [ -f "$base_config" ] || base_config=$here/linux-6.1-cma-page_owner.config
        fragments=("$fragment" "$here/kernel-6.1-cma.config")
        checked=("$here/kernel-6.1-cma.config")
        module=pinmod
        apt_get() { apt-get "$@"; }
        log=$cache/build/kernel-build.log
        ;;
    6.1-pp)
        base_config=${PINSPECT_BASE_CONFIG:-$here/../../../shared/kernels/linux-6.1-cma-page_owner.config}
        [ -f "$base_config" ] || base_config=$here/linux-6.1-cma-page_owner.config
        fragments=("$fragment" "$here/linux-6.1-pp.config")
        checked=("${fragments[@]}")
        module=
        patchfile=$here/linux-6.1-page_pinner.patch
        pkg=linux-source-6.1
        out=$cache/kernels/linux-6.1-pp
        src=$cache/build/linux-source-6.1-pp
        apt_get() { apt-get "$@"; }
        stamp=$(cat "$base_config" "${fragments[@]}" "$patchfile" | sha256sum | cut -c1-16)
        log=$cache/build/kernel-build-6.1-pp.log
        ;;
    7.2)
        base_config=  # x86_64_defconfig + kvm_guest.config of the source itself
        fragments=("$here/kernel-7.2-cma.config" "$fragment")
        checked=("${fragments[@]}")
        module=
        apt_get() { bash "$here/debian-apt.sh" sid ensure >&2 && bash "$here/debian-apt.sh" sid apt-get "$@"; }
        log=$cache/build/kernel-build-$version.log
        ;;
    *) echo "build-kernel.sh: no custom kernel for version $version (6.1, 6.1-pp or 7.2)" >&2; exit 2 ;;
esac

newest_deb() { find "$cache/debs" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n1; }
mkdir -p "$cache/debs" "$cache/build"
if [ -z "$(newest_deb)" ]; then
    (cd "$cache/debs" && apt_get download "$pkg")
fi
deb=$(newest_deb)
# the configuration, the source package's version and pahole's (which writes the BTF) are the
# inputs (7.2's stamp never had a base config: x86_64_defconfig comes with the source)
# (pp61 keeps the stamp it was built with: its base config, fragments and patch)
[ -n "$stamp" ] || stamp=$( { [ -z "$base_config" ] || cat "$base_config"; cat "${fragments[@]}"
                              basename "$deb"; pahole --version 2>/dev/null || true; } \
                            | sha256sum | cut -c1-16)

# The out-of-tree test module, built against the kernel's build tree (Module.symvers and vmlinux
# for its BTF); its own stamp covers its source and the kernel's stamp.
build_module() {
    [ -n "$module" ] || return 0
    local mstamp mdir
    mstamp=$( { echo "$stamp"; cat "$here/$module.c"; } | sha256sum | cut -c1-16)
    if [ -f "$out/$module.ko" ] && [ "$(cat "$out/$module.stamp" 2>/dev/null)" = "$mstamp" ]; then
        return 0
    fi
    if [ ! -f "$src/Module.symvers" ]; then
        echo "build-kernel.sh: $src has no Module.symvers: remove $out/stamp and rebuild" >&2
        exit 1
    fi
    mdir=$cache/build/$module-$version
    rm -rf "$mdir" && mkdir -p "$mdir"
    cp "$here/$module.c" "$mdir/"
    echo "obj-m := $module.o" > "$mdir/Kbuild"
    make -C "$src" M="$mdir" modules >"$mdir/build.log" 2>&1 || { tail -n 40 "$mdir/build.log"; exit 1; }
    cp "$mdir/$module.ko" "$out/$module.ko"
    echo "$mstamp" > "$out/$module.stamp"
    echo "built: $out/$module.ko"
}

if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
    build_module
    echo "cached: $out"
    exit 0
fi

if [ -n "$patchfile" ] && [ ! -f "$src/Makefile" ]; then
    # pp61: start from a copy of cma61's tree (its objects save most of the build) when it is
    # there and unmodified by a patch, else from a fresh extraction below
    cma_src=$cache/build/linux-source-6.1
    if [ -f "$cma_src/Makefile" ] && [ ! -f "$cma_src/.pinspect-patch" ]; then
        rm -rf "$src.tmp" && cp -a "$cma_src" "$src.tmp" && mv "$src.tmp" "$src"
        basename "$deb" > "$src/.pinspect-deb"
    fi
fi
# (re-)extract when the tree is missing or from another package version
if [ ! -f "$src/Makefile" ] || [ "$(cat "$src/.pinspect-deb" 2>/dev/null)" != "$(basename "$deb")" ]; then
    if [ -f "$src/Makefile" ] && [ ! -f "$src/.pinspect-deb" ] && [ "$version" = 6.1 ]; then
        : # a 6.1 tree extracted by an earlier version of this script: keep it
    else
        rm -rf "$src" "$cache/build/extract-$version" && mkdir -p "$cache/build/extract-$version"
        dpkg -x "$deb" "$cache/build/extract-$version"
        if [ -n "$patchfile" ]; then  # the tarball unpacks as $pkg: into a directory of its own
            mkdir -p "$cache/build/extract-$version/src"
            tar -C "$cache/build/extract-$version/src" -xaf "$cache/build/extract-$version/usr/src/$pkg.tar.xz"
            mv "$cache/build/extract-$version/src/$pkg" "$src"
        else
            tar -C "$cache/build" -xaf "$cache/build/extract-$version/usr/src/$pkg.tar.xz"
        fi
        rm -rf "$cache/build/extract-$version"
    fi
    basename "$deb" > "$src/.pinspect-deb"
fi
if [ -n "$patchfile" ] && ! cmp -s "$patchfile" "$src/.pinspect-patch"; then
    # take back the patch applied before (if any), then apply the current one
    if [ -f "$src/.pinspect-patch" ]; then
        patch -d "$src" -p1 -R -s < "$src/.pinspect-patch"
        rm -f "$src/.pinspect-patch"
    fi
    patch -d "$src" -p1 -s --no-backup-if-mismatch < "$patchfile"
    cp "$patchfile" "$src/.pinspect-patch"
fi
if [ -n "$base_config" ]; then
    cp "$base_config" "$src/.config"
else
    make -C "$src" x86_64_defconfig >/dev/null
    cat "$src/kernel/configs/kvm_guest.config" >> "$src/.config"
fi
cat "${fragments[@]}" >> "$src/.config"
make -C "$src" olddefconfig >/dev/null
# every option the checked fragments ask for must have survived olddefconfig (unmet dependencies,
# e.g. a pahole too old for DEBUG_INFO_BTF, drop options silently)
missing=$(grep -h '^CONFIG_[A-Z0-9_]*=y$' "${checked[@]}" | sort -u \
    | while read -r line; do grep -qx "$line" "$src/.config" || echo "$line"; done)
if [ -n "$missing" ]; then
    echo "build-kernel.sh: options not set after olddefconfig:" $missing >&2
    exit 1
fi
targets=(bzImage)
[ -z "$module" ] || targets+=(modules)  # modules: Module.symvers for the out-of-tree module
# one kernel build at a time on this machine (the harness also waits for a running
# build-kernel.sh before it starts one)
exec 9>"$cache/build/.build.lock"
flock 9
t0=$(date +%s)
make -C "$src" -j"$(nproc)" "${targets[@]}" >"$log" 2>&1 || {
    tail -n 40 "$log"; exit 1; }
echo "build-kernel.sh: $(basename "$out") built in $(( $(date +%s) - t0 ))s" >&2
mkdir -p "$out"
cp "$src/arch/x86/boot/bzImage" "$src/vmlinux" "$out/"
cp "$src/.config" "$out/config"
echo "$stamp" > "$out/stamp"
build_module
echo "built: $out"
