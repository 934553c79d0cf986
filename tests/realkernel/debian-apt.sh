#!/usr/bin/env bash
# apt-get / apt-cache for one Debian suite that the machine's apt does not list (bullseye, sid),
# through a private sources list, lists directory and package cache under
#   $PINSPECT_CACHE/apt/<suite>/{sources.list,lists/,cache/}
# The machine's apt configuration (sources.list, sources.list.d, its lists and pkgcache) is
# neither read for sources nor changed. One suite per directory, so that a metapackage that
# exists in several suites (linux-image-cloud-amd64) resolves within the suite asked for.
#
#   debian-apt.sh SUITE update                 fetch the suite's package lists
#   debian-apt.sh SUITE apt-cache ARGS...      e.g. depends linux-image-cloud-amd64
#   debian-apt.sh SUITE apt-get ARGS...        e.g. download linux-source-7.2 (into the cwd)
#   debian-apt.sh SUITE ensure                 update only if the lists were never fetched
#
# Signatures are verified as usual (never disabled) against $PINSPECT_DEBIAN_KEYRING, by default
# Debian's archive keyring as installed by debian-archive-keyring. Checked on bookworm's
# keyring (2023.3+deb12u2): bullseye's InRelease is signed by the 11/bullseye and 12/bookworm
# keys, sid's by the 12/bookworm and 13/trixie automatic keys, all in that keyring. When sid
# moves to keys a machine's keyring lacks, `update` fails with NO_PUBKEY; then install a newer
# debian-archive-keyring from the machine's own (verified) suites, or point
# PINSPECT_DEBIAN_KEYRING at a keyring extracted from that package.
set -euo pipefail
suite=${1:?usage: debian-apt.sh SUITE update|ensure|apt-get ARGS|apt-cache ARGS}
shift
action=${1:?usage: debian-apt.sh SUITE update|ensure|apt-get ARGS|apt-cache ARGS}
shift
cache=${PINSPECT_CACHE:-$HOME/.cache/pinspect}
mirror=${PINSPECT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=${PINSPECT_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
d=$cache/apt/$suite
mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
[ -f "$keyring" ] || { echo "debian-apt.sh: no keyring $keyring (install debian-archive-keyring)" >&2; exit 1; }
printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$suite" >"$d/sources.list.new"
mv "$d/sources.list.new" "$d/sources.list"

opts=(
    -o "Dir::Etc::sourcelist=$d/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$d/lists"
    -o "Dir::Cache=$d/cache"
    -o "APT::Sandbox::User=root"  # downloads land in the cache owned by root, not by _apt
)

update() {
    # apt-get update exits 0 on some fetch errors; a missing key or a bad signature is
    # reported as W:/E: lines: treat them as failures instead of using unverified lists.
    local out
    out=$(apt-get "${opts[@]}" -q update 2>&1) || { echo "$out" >&2; exit 1; }
    if grep -qE 'NO_PUBKEY|not signed|BADSIG|EXPKEYSIG|^E:' <<<"$out"; then
        echo "$out" >&2
        echo "debian-apt.sh: $suite's lists could not be verified with $keyring" >&2
        exit 1
    fi
}

case $action in
    update) update ;;
    ensure) ls "$d"/lists/*_InRelease >/dev/null 2>&1 || update ;;
    apt-get|apt-cache) exec "$action" "${opts[@]}" "$@" ;;
    *) echo "debian-apt.sh: unknown action $action" >&2; exit 2 ;;
esac
