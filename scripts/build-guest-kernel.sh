#!/usr/bin/env bash
# Build (or reuse) the tiny guest kernel that crates/virq-kvm boots.
#
#   scripts/build-guest-kernel.sh          prints the path of the cached vmlinux on stdout
#   scripts/build-guest-kernel.sh --path   prints where it would be, without building
#
# The kernel is Debian's linux-source-6.1 configured as `make tinyconfig` plus the fragment
# guest/kernel.config. The result is cached outside the work tree, keyed by the fragment's
# SHA-256:  ${XDG_CACHE_HOME:-~/.cache}/virq/kernel-<sha256>/vmlinux
# Progress goes to stderr; the only line on stdout is the path.
#
# Environment: VIRQ_KERNEL_CACHE overrides the cache root; VIRQ_LINUX_SOURCE points at a
# linux-source tarball (default /usr/src/linux-source-6.1.tar.xz, installed with apt-get if
# missing); JOBS sets make's parallelism (default: nproc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fragment="$here/guest/kernel.config"
cache_root="${VIRQ_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/virq}"
tarball="${VIRQ_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}"
jobs="${JOBS:-$(nproc)}"

log() { echo "build-guest-kernel: $*" >&2; }

[ -f "$fragment" ] || { log "missing $fragment"; exit 2; }
hash="$(sha256sum "$fragment" | cut -d' ' -f1)"
out_dir="$cache_root/kernel-$hash"
vmlinux="$out_dir/vmlinux"

if [ "${1:-}" = "--path" ]; then
    echo "$vmlinux"
    exit 0
fi
if [ -s "$vmlinux" ]; then
    log "cached: $vmlinux"
    echo "$vmlinux"
    exit 0
fi

# One build at a time (parallel test binaries may all ask); re-check once the lock is held.
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9
if [ -s "$vmlinux" ]; then
    log "cached (built meanwhile): $vmlinux"
    echo "$vmlinux"
    exit 0
fi

# Build tools and the sources, from Debian's archive when they are missing.
need=()
for tool in make gcc flex bison bc cpio; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f "$tarball" ] || need+=(linux-source-6.1)
if [ "${#need[@]}" -gt 0 ]; then
    pkgs=()
    for n in "${need[@]}"; do
        case "$n" in
            make|gcc) pkgs+=(build-essential) ;;
            *) pkgs+=("$n") ;;
        esac
    done
    log "installing: ${pkgs[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >&2
fi
[ -f "$tarball" ] || { log "no kernel source at $tarball"; exit 2; }

# Unpack the sources once (keyed by the tarball's name and size) and build out of tree.
src_key="$(basename "$tarball" .tar.xz)-$(stat -c %s "$tarball")"
src_dir="$cache_root/src/$src_key"
if [ ! -f "$src_dir/.unpacked" ]; then
    log "unpacking $tarball"
    rm -rf "$src_dir"
    mkdir -p "$src_dir"
    tar -xJf "$tarball" -C "$src_dir" --strip-components=1
    touch "$src_dir/.unpacked"
fi

build_dir="$cache_root/build-$hash.$$"
trap 'rm -rf "$build_dir"' EXIT
mkdir -p "$build_dir"
mk() { make -C "$src_dir" O="$build_dir" ARCH=x86_64 "$@" >&2; }

log "configuring (tinyconfig + $(basename "$fragment"))"
mk tinyconfig
"$src_dir/scripts/kconfig/merge_config.sh" -m -O "$build_dir" "$build_dir/.config" "$fragment" >&2
mk olddefconfig

# Every option of the fragment must have survived olddefconfig (a dependency can drop one).
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) want="$line" ;;
        "# CONFIG_"*" is not set") want="$line" ;;
        *) continue ;;
    esac
    if ! grep -qxF "$want" "$build_dir/.config"; then
        opt="${want#\# }"; opt="${opt%% *}"; opt="${opt%%=*}"
        # An option that is off may also be absent altogether.
        if [[ "$want" == "# "* ]] && ! grep -q "^$opt=" "$build_dir/.config"; then
            continue
        fi
        log "config: wanted '$want', got '$(grep -E "^(# )?$opt[= ]" "$build_dir/.config" || echo absent)'"
        missing=1
    fi
done < "$fragment"
[ "$missing" -eq 0 ] || { log "the fragment does not apply cleanly"; exit 1; }

log "building vmlinux with $jobs jobs"
mk -j"$jobs" vmlinux

mkdir -p "$out_dir"
cp "$build_dir/vmlinux" "$out_dir/vmlinux.tmp"
cp "$build_dir/.config" "$out_dir/config"
cp "$fragment" "$out_dir/kernel.config"
mv "$out_dir/vmlinux.tmp" "$vmlinux"
log "built: $vmlinux"
echo "$vmlinux"
