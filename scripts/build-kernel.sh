#!/usr/bin/env bash
#
# Build (or fetch from the local cache) a swiftvm guest kernel.
# Run with --help for usage.
#
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
readonly RECIPE="$SCRIPT_DIR/lib/kernel-recipe.sh"
readonly PROG=build-kernel

readonly DEFAULT_SOURCE=/usr/src/linux-source-6.1.tar.xz
readonly SOURCE_PACKAGE=linux-source-6.1
readonly BUILD_PACKAGES="build-essential flex bison bc libelf-dev libssl-dev"

# Exit statuses.
readonly E_NOT_CACHED=1 E_USAGE=2 E_MISSING=3 E_CONFIG=4 E_BUILD=5

# shellcheck source=scripts/lib/kernel-recipe.sh
source "$RECIPE"

usage() {
    cat <<EOF
Usage: scripts/build-kernel.sh [OPTIONS]

Build a guest kernel for swiftvm from a Kconfig fragment, or return the
cached one. All progress goes to stderr; the last line on stdout is the
absolute path of the kernel image, so callers can do:

    vmlinux=\$(scripts/build-kernel.sh | tail -n1)

Options:
  --config FILE      Kconfig fragment applied on top of allnoconfig
                     (default: GuestConfigs/microvm-<arch>-6.1.config)
  --overlay FILE     another fragment applied after --config, e.g.
                     GuestConfigs/debug.config; repeatable, later ones win
                     where they set the same option
  --source PATH      kernel source: a tarball, or an unpacked tree that is
                     clean ("make mrproper"), since the build is out of tree
                     (default: $DEFAULT_SOURCE, from the
                     Debian package $SOURCE_PACKAGE)
  --patch FILE       apply FILE (patch -p1) to a private copy of the tarball's
                     source before building; repeatable, applied in order.
                     A patched kernel has a cache key of its own
  --test-kernel      the TEST KERNEL for hosts whose KVM only emulates guests
                     (kvm_pvm): applies every GuestConfigs/test-kernel/*.patch.
                     Those patches work around the emulator and weaken the
                     kernel; never use such a kernel outside a test host
  --arch ARCH        target architecture: x86_64 (default; artifact vmlinux)
                     or aarch64 (cross-compiled with ARCH=arm64
                     CROSS_COMPILE=aarch64-linux-gnu-; artifact Image, from
                     arch/arm64/boot/Image)
  --jobs N           parallel make jobs (default: nproc, here $(nproc))
  --cache DIR        cache directory
                     (default: \${SWIFTVM_CACHE:-\$HOME/.cache/swiftvm})
  --print-path       print where the cached kernel is (or would be) and exit:
                     0 if it exists, $E_NOT_CACHED if not; never builds or installs
  --configure-only   stop after step 3 (configure and check the options);
                     prints the path of the resulting .config and keeps the
                     build directory
  --keep-build       keep the object directory after a successful build
                     (default: delete it; a failed build's is always kept
                     and reused by the next run)
  --install-deps     if prerequisites are missing and this runs as root,
                     install them with apt-get; without it, only report them
  -h, --help         show this help

What it does:
  1. Merges the fragment and its overlays into one (an option set again
     by an overlay replaces the earlier line). Computes a cache key from
     the kernel source version, the compiler, and a hash of the merged
     option lines and of the build recipe (scripts/lib/kernel-recipe.sh);
     comments do not count. If \$CACHE/kernels/<arch>-<version>-<hash>/
     holds the artifact (vmlinux, or Image for aarch64), prints it and stops.
  2. Unpacks a source tarball once under \$CACHE/src/ (reused afterwards).
  3. In \$CACHE/build/<key>/: make allnoconfig KCONFIG_ALLCONFIG=<merged>,
     make olddefconfig, then checks that every "CONFIG_X=..." and
     "# CONFIG_X is not set" line of the fragment holds in the resulting
     .config. Any option that did not stick is listed and the build stops.
  4. make vmlinux (or Image) -j<jobs>; the full log goes to build.log next
     to the result, and its tail is shown if the build fails.
  5. Publishes the artifact, its final .config (as "config"), the merged
     fragment (as "fragment.config"), build.log and a short "info" file
     (inputs, compiler, build time) in
     \$CACHE/kernels/<key>/.

Exit status: 0 success, $E_NOT_CACHED not cached (--print-path), $E_USAGE usage error,
$E_MISSING missing prerequisites, $E_CONFIG config check failed, $E_BUILD build failed.
EOF
}

# --- messages (stderr only; stdout is reserved for the result path) ---------

log() { printf '[%s %4ds] %s\n' "$PROG" "$SECONDS" "$*" >&2; }
warn() { printf '[%s] warning: %s\n' "$PROG" "$*" >&2; }
die() {
    local status=$1
    shift
    printf '[%s] error: %s\n' "$PROG" "$*" >&2
    exit "$status"
}
fmt_duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# --- options --------------------------------------------------------------

config=
overlays=()
source_path=$DEFAULT_SOURCE
patches=()
arch=x86_64
jobs=$(nproc)
cache=${SWIFTVM_CACHE:-$HOME/.cache/swiftvm}
print_path=0
configure_only=0
keep_build=0
install_deps=0

need_arg() { [[ $# -ge 2 && -n $2 ]] || die $E_USAGE "$1 needs an argument (see --help)"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --config) need_arg "$@"; config=$2; shift 2 ;;
        --config=*) config=${1#*=}; shift ;;
        --overlay) need_arg "$@"; overlays+=("$2"); shift 2 ;;
        --overlay=*) overlays+=("${1#*=}"); shift ;;
        --source) need_arg "$@"; source_path=$2; shift 2 ;;
        --source=*) source_path=${1#*=}; shift ;;
        --patch) need_arg "$@"; patches+=("$2"); shift 2 ;;
        --patch=*) patches+=("${1#*=}"); shift ;;
        --test-kernel)
            for p in "$REPO_ROOT"/GuestConfigs/test-kernel/*.patch; do patches+=("$p"); done
            shift
            ;;
        --arch) need_arg "$@"; arch=$2; shift 2 ;;
        --arch=*) arch=${1#*=}; shift ;;
        --jobs | -j) need_arg "$@"; jobs=$2; shift 2 ;;
        --jobs=*) jobs=${1#*=}; shift ;;
        --cache) need_arg "$@"; cache=$2; shift 2 ;;
        --cache=*) cache=${1#*=}; shift ;;
        --print-path) print_path=1; shift ;;
        --configure-only) configure_only=1; keep_build=1; shift ;;
        --keep-build) keep_build=1; shift ;;
        --install-deps) install_deps=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die $E_USAGE "unknown argument: $1 (see --help)" ;;
    esac
done

[[ $jobs =~ ^[1-9][0-9]*$ ]] || die $E_USAGE "--jobs wants a positive integer, got '$jobs'"

kb_arch_setup "$arch" || die $E_USAGE "unknown --arch '$arch' (x86_64 or aarch64)"
[[ -n $config ]] || config="$REPO_ROOT/GuestConfigs/microvm-$arch-6.1.config"

# Applies each PATCH (unified diff, paths a/... b/...) in order to the
# unpacked tarball under TREE, whose kernel tree is its one top-level
# directory or TREE itself. The patches' content is part of the cache key.
apply_patches() {
    local tree=$1 dir patch
    shift
    for dir in "$tree"/*/ "$tree/"; do
        [[ -f $dir/Makefile && -d $dir/kernel ]] && break
    done
    for patch in "$@"; do
        patch -d "$dir" -p1 --forward --batch --no-backup-if-mismatch <"$patch" || return 1
    done
}

# Makes PATH absolute, or exits if it is not a file; WHAT names it in the error.
absolute_fragment() {
    [[ -f $1 ]] || die $E_USAGE "$2 not found: $1"
    echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

# An option given twice in one file silently takes the last value; refuse
# that up front. (Across files it is the point of an overlay.)
check_duplicates() {
    local dups
    dups=$(sed -nE 's/^(CONFIG_[A-Za-z0-9_]+)=.*/\1/p; s/^# (CONFIG_[A-Za-z0-9_]+) is not set$/\1/p' "$1" |
        sort | uniq -d | paste -sd' ')
    [[ -z $dups ]] || die $E_CONFIG "options set more than once in $1: $dups"
}

config=$(absolute_fragment "$config" "config fragment")
for i in "${!patches[@]}"; do
    patches[i]=$(absolute_fragment "${patches[i]}" "patch")
done
check_duplicates "$config"
for i in "${!overlays[@]}"; do
    overlays[i]=$(absolute_fragment "${overlays[i]}" "overlay fragment")
    check_duplicates "${overlays[i]}"
done

# Prints the fragment and its overlays as one, dropping every option line
# that a later file sets again, so that each option appears once and the
# option check tests the value that wins.
merged_fragment() {
    cat "$config" "${overlays[@]}" | tac | awk '
        { sym = "" }
        /^CONFIG_[A-Za-z0-9_]+=/ { sym = $0; sub(/=.*/, "", sym) }
        /^# CONFIG_[A-Za-z0-9_]+ is not set$/ { sym = $2 }
        sym != "" && seen[sym]++ { next }
        { print }' | tac
}
fragment_text=$(merged_fragment)
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# --- prerequisites ------------------------------------------------------------

# Prints the Debian packages needed for a build that are not installed.
missing_build_packages() {
    local pkgs=()
    command -v make >/dev/null && command -v gcc >/dev/null || pkgs+=(build-essential)
    command -v flex >/dev/null || pkgs+=(flex)
    command -v bison >/dev/null || pkgs+=(bison)
    command -v bc >/dev/null || pkgs+=(bc)
    [[ -z $KB_CROSS_COMPILE ]] || command -v "${KB_CROSS_COMPILE}gcc" >/dev/null ||
        pkgs+=("gcc-${KB_CROSS_COMPILE%-}")
    [[ -e /usr/include/libelf.h || -e /usr/include/elfutils/libelf.h ]] || pkgs+=(libelf-dev)
    [[ -e /usr/include/openssl/opensslv.h ]] || pkgs+=(libssl-dev)
    echo "${pkgs[*]}"
}

# Installs PACKAGES... with apt-get when allowed, otherwise explains and exits.
require_packages() {
    local what=$1
    shift
    local cmd="apt-get install -y $*"
    if [[ $install_deps -eq 1 && $EUID -eq 0 ]]; then
        log "installing $what: $cmd"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 ||
            die $E_MISSING "'$cmd' failed (try 'apt-get update' first)"
    elif [[ $install_deps -eq 1 ]]; then
        die $E_MISSING "$what missing; --install-deps needs root. Run as root: $cmd"
    else
        die $E_MISSING "$what missing. Install with: $cmd  (or rerun as root with --install-deps)"
    fi
}

if [[ ! -e $source_path ]]; then
    if [[ $print_path -eq 1 ]]; then
        # Without the source there is no version, hence no key and no kernel.
        die $E_NOT_CACHED "kernel source $source_path missing, so nothing can be cached for it"
    elif [[ $source_path == "$DEFAULT_SOURCE" ]]; then
        # The build tools are installed along with the source when allowed.
        # shellcheck disable=SC2086
        require_packages "kernel source $DEFAULT_SOURCE" $SOURCE_PACKAGE $BUILD_PACKAGES
    else
        die $E_USAGE "kernel source not found: $source_path"
    fi
fi
source_path=$(cd "$(dirname "$source_path")" && pwd)/$(basename "$source_path")

# --- cache key --------------------------------------------------------------

sha() { sha256sum | cut -c1-"${1:-64}"; }

# Sets src_version (a kernel version for humans) and src_id (a string that
# changes whenever the source content may have changed).
identify_source() {
    if [[ -d $source_path ]]; then
        [[ -f $source_path/Makefile && -d $source_path/kernel ]] ||
            die $E_USAGE "$source_path does not look like a kernel source tree"
        src_version=$(make -s -C "$source_path" kernelversion 2>/dev/null) ||
            die $E_USAGE "'make kernelversion' failed in $source_path"
        [[ ${#patches[@]} -eq 0 ]] ||
            die $E_USAGE "--patch works on a tarball source; apply the patches to $source_path yourself (patch -p1 < FILE)"
        # A tree can be edited in place, and its version alone cannot see
        # that: every file's name, size and modification time go into the key.
        src_id="tree:$source_path:$src_version:$(find "$source_path" -path "$source_path/.git" -prune -o -type f \
            -printf '%P %s %T@\n' | LC_ALL=C sort | sha 16)"
    else
        local pkg size mtime
        size=$(stat -c %s "$source_path")
        mtime=$(stat -c %Y "$source_path")
        pkg=$(dpkg-query -S "$source_path" 2>/dev/null | cut -d: -f1 || true)
        if [[ -n $pkg ]]; then
            src_version=$(dpkg-query -W -f='${Version}' "$pkg")
        else
            src_version=$(basename "$source_path")
            src_version=${src_version%.tar*}
            src_version=${src_version#linux-source-}
            src_version=${src_version#linux-}
        fi
        src_id="tarball:$(basename "$source_path"):$size:$mtime:$src_version"
    fi
    src_version=${src_version//[^A-Za-z0-9._+-]/_}
}

identify_source
compiler_id=$( ("${KB_CROSS_COMPILE}gcc" --version 2>/dev/null || echo no-gcc) | head -n1)
# Only what can change the kernel goes into the key: the fragment's option
# lines (Kconfig ignores its comments, and so does the key) and the recipe
# without its comment lines. Rewording a comment keeps the cached kernel.
key_hash=$(
    {
        echo "source=$src_id"
        echo "arch=$arch"
        echo "compiler=$compiler_id"
        echo "--- config"
        grep -E '^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set$)' <<<"$fragment_text" || true
        echo "--- recipe"
        grep -vE '^[[:space:]]*(#|$)' "$RECIPE"
        [[ ${#patches[@]} -eq 0 ]] || { echo "--- patches"; cat "${patches[@]}"; }
    } | sha 12
)
key="$arch-$src_version${patches[*]:+-patched}-$key_hash"
out_dir="$cache/kernels/$key"
artifact="$out_dir/$KB_ARTIFACT_NAME"

if [[ $print_path -eq 1 ]]; then
    echo "$artifact"
    [[ -f $artifact ]] && exit 0 || exit $E_NOT_CACHED
fi

if [[ -f $artifact && $configure_only -eq 0 ]]; then
    log "cache hit: $key"
    echo "$artifact"
    exit 0
fi

missing=$(missing_build_packages)
# shellcheck disable=SC2086
[[ -z $missing ]] || require_packages "build tools ($missing)" $missing

# --- build ---------------------------------------------------------------

mkdir -p "$out_dir"
exec {lock_fd}>"$out_dir/.lock"
if ! flock -n "$lock_fd"; then
    log "another build of $key is running; waiting for it"
    flock "$lock_fd"
fi
if [[ -f $artifact && $configure_only -eq 0 ]]; then # the other build finished it
    log "cache hit: $key"
    echo "$artifact"
    exit 0
fi

log "building $key"
log "  source: $source_path ($src_version)"
for patch in "${patches[@]}"; do log "  patch:  $patch"; done
log "  config: $config"
for overlay in "${overlays[@]}"; do log "  overlay: $overlay"; done
log "  jobs:   $jobs"

# Unpack a tarball once, into a directory named after its identity, via a
# temporary directory so an interrupted unpack is never mistaken for a tree.
if [[ -d $source_path ]]; then
    src_tree=$source_path
else
    # A patched source is a copy of its own, keyed by the patches as well.
    src_dir="$cache/src/$(basename "${source_path%.tar*}")-$( (echo "$src_id"; [[ ${#patches[@]} -eq 0 ]] || cat "${patches[@]}") | sha 12)"
    if [[ ! -f $src_dir/.unpacked ]]; then
        log "unpacking $(basename "$source_path") into $src_dir"
        rm -rf "$src_dir" "$src_dir.tmp"
        mkdir -p "$src_dir.tmp"
        tar -xf "$source_path" -C "$src_dir.tmp"
        if [[ ${#patches[@]} -gt 0 ]]; then
            log "applying ${#patches[@]} patch(es)"
            apply_patches "$src_dir.tmp" "${patches[@]}" >&2 ||
                die $E_BUILD "a patch did not apply to $(basename "$source_path"); see the lines above"
        fi
        mv "$src_dir.tmp" "$src_dir"
        touch "$src_dir/.unpacked"
    else
        log "reusing unpacked source in $src_dir"
    fi
    # The tree is either the tarball's single top-level directory or its root.
    src_tree=
    for d in "$src_dir"/*/ "$src_dir/"; do
        if [[ -f $d/Makefile && -d $d/kernel ]]; then
            src_tree=${d%/}
            break
        fi
    done
    [[ -n $src_tree ]] || die $E_BUILD "no kernel tree found inside $source_path"
fi

build_dir="$cache/build/$key"
build_log="$out_dir/build.log"
fragment="$build_dir/fragment.config"
mkdir -p "$build_dir"
: >"$build_log"
printf '%s\n' "$fragment_text" >"$fragment"

# Prints the last lines of the build log, then exits with STATUS.
fail_with_log() {
    local status=$1
    shift
    {
        echo "---- last 40 lines of $build_log ----"
        tail -n 40 "$build_log"
        echo "----"
    } >&2
    die "$status" "$*"
}

step_start=$SECONDS
log "configuring: allnoconfig + $(basename "$config")${overlays[*]:+ + overlays}, olddefconfig"
kb_configure "$src_tree" "$build_dir" "$fragment" >>"$build_log" 2>&1 ||
    fail_with_log $E_CONFIG "configuration failed"

log "checking that every option of the fragment holds in .config"
if ! problems=$(kb_verify_config "$src_tree" "$fragment" "$build_dir/.config"); then
    printf '%s\n' "$problems" >&2
    die $E_CONFIG "these options did not stick; fix the fragment (usually a missing dependency) and rerun"
fi
log "configured in $(fmt_duration $((SECONDS - step_start))); $(grep -c '=y$' "$build_dir/.config") options built in"
if [[ $configure_only -eq 1 ]]; then
    echo "$build_dir/.config"
    exit 0
fi

step_start=$SECONDS
log "compiling $KB_MAKE_TARGET with $jobs jobs (log: $build_log)"
# A heartbeat, so that a long quiet compile visibly makes progress. It also
# stops by itself once this script is gone, however the script ended.
(
    while sleep 60 && kill -0 $$ 2>/dev/null; do
        log "  ... $(grep -cE '^  (CC|AS|AR|LD)' "$build_log" || true) objects so far"
    done
) >/dev/null &
heartbeat=$!
trap 'kill "$heartbeat" 2>/dev/null || true' EXIT
if ! kb_compile "$src_tree" "$build_dir" "$jobs" >>"$build_log" 2>&1; then
    fail_with_log $E_BUILD "compile failed after $(fmt_duration $((SECONDS - step_start)))"
fi
kill "$heartbeat" 2>/dev/null || true
wait "$heartbeat" 2>/dev/null || true
trap - EXIT
log "compiled in $(fmt_duration $((SECONDS - step_start)))"

# Publish: the artifact last and atomically, since its presence is the
# cache-hit test.
cp "$build_dir/.config" "$out_dir/config"
cp "$fragment" "$out_dir/fragment.config"
{
    echo "key:      $key"
    echo "source:   $source_path ($src_version)"
    echo "config:   $config"
    for overlay in "${overlays[@]}"; do echo "overlay:  $overlay"; done
    for patch in "${patches[@]}"; do echo "patch:    $patch"; done
    echo "compiler: $compiler_id"
    echo "built:    $(date -u '+%Y-%m-%dT%H:%M:%SZ') in $(fmt_duration $((SECONDS - step_start)))"
} >"$out_dir/info"
cp "$build_dir/$KB_ARTIFACT" "$artifact.tmp"
mv "$artifact.tmp" "$artifact"
if [[ $keep_build -eq 0 ]]; then
    rm -rf "$build_dir"
fi
log "done in $(fmt_duration "$SECONDS"): $KB_ARTIFACT_NAME is $(($(stat -c %s "$artifact") / 1048576)) MiB"
echo "$artifact"
